"""The two exceptions of the expression engine, and how a program's failures become the second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Python errors a dynamically typed program can hit on unexpected values (e.g. `"a" < 1`), and
# the recursion of a deeply nested one.
RUNTIME_ERRORS = (
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    OverflowError,
    ZeroDivisionError,
    RecursionError,
)
# Result types whose values may be string maps, which leave a program unwrapped (`unwrap`).
UNWRAPPED_TYPES = frozenset({"STRING_MAP", "DYNAMIC"})


class CompileError(Exception):
    """An expression is malformed or does not type-check; the message says what and where."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message if column is None else f"{message} at column {column}")
        self.column = column


class EvaluationError(Exception):
    """An expression could not be evaluated against an activation (missing attribute, bad value)."""


def evaluation_error(text: str, err: BaseException) -> EvaluationError:
    """The EvaluationError to raise for a RUNTIME_ERRORS exception evaluating `text`."""
    if isinstance(err, RecursionError):
        return EvaluationError(f"{text!r}: evaluation nests too deeply")
    return EvaluationError(f"{text!r}: {type(err).__name__}: {err}")


def unwrap(value: Any) -> Any:
    """A program's result as the caller sees it: a whole string map leaving the program counts
    as reading all of it (`TrackedStringMap.unwrap`)."""
    method = getattr(value, "unwrap", None)
    return value if method is None else method()


def guarded(fn: Callable[[Any], Any], text: str, unwraps: bool) -> Callable[[Any], Any]:
    """`fn` raising only EvaluationError, its result unwrapped when `unwraps`."""

    def evaluate(activation: Any) -> Any:
        try:
            value = fn(activation)
        except RUNTIME_ERRORS as err:
            raise evaluation_error(text, err) from None
        return unwrap(value) if unwraps else value

    return evaluate
