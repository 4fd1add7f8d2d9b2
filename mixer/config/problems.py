"""Config problems: one located message each, collected rather than raised one at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PathPart = str | int
"""One step of a path inside a YAML document: a mapping key or a sequence index."""


def format_field(path: Sequence[PathPart]) -> str:
    """``("spec", "actions", 0, "handler")`` -> ``spec.actions[0].handler``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config directory.

    `str()` gives ``path:line: kind/name: field: message``; `resource` and `field` are left out
    when empty (e.g. a YAML syntax error belongs to no resource), and the line when it is 0 (a
    problem with the directory itself).
    """

    path: str
    line: int
    resource: str
    field: str
    message: str

    def __str__(self) -> str:
        parts = [f"{self.path}:{self.line}" if self.line > 0 else self.path]
        if self.resource:
            parts.append(self.resource)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, str | int]:
        """The problem as JSON-ready data (for ``mixer validate --format json``)."""
        return {
            "path": self.path,
            "line": self.line,
            "resource": self.resource,
            "field": self.field,
            "message": self.message,
        }
