"""The two exceptions of the expression engine."""

from __future__ import annotations


class CompileError(Exception):
    """An expression is malformed or does not type-check; the message says what and where."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message if column is None else f"{message} at column {column}")
        self.column = column


class EvaluationError(Exception):
    """An expression could not be evaluated against an activation (missing attribute, bad value)."""
