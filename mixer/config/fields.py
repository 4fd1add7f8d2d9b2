"""Reading typed fields out of YAML data, reporting every problem with its location.

`Scope` reports problems about one resource. The ``get_*`` helpers check a field's type, report a
problem when it is wrong and return a harmless default, so parsing goes on and finds every other
problem too; `Scope.errors` tells the caller whether the resource came out clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mixer.config.names import camel, snake
from mixer.config.problems import ConfigProblem, PathPart, format_field
from mixer.config.source import Document, Path_


def describe(value: Any) -> str:
    """What a YAML value is, for messages: ``a list``, ``a number`` ..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


class Scope:
    """Collects problems about one resource of one document."""

    def __init__(self, sink: list[ConfigProblem], doc: Document, resource: str) -> None:
        self.doc = doc
        self.resource = resource
        self.errors = 0
        self._sink = sink

    def error(self, path: Sequence[PathPart], message: str, *, line: int = 0) -> None:
        """Report `message` about the field at `path` (a path inside the document).

        The line is that of `path` (or its nearest ancestor in the document) unless given.
        """
        self.errors += 1
        self._sink.append(
            ConfigProblem(
                self.doc.path,
                line or self.doc.line_of(path),
                self.resource,
                format_field(path),
                message,
            )
        )

    def check_duplicates(self) -> None:
        """Report the keys this document writes twice in one mapping, at the second one."""
        for path, key, line in self.doc.duplicates:
            self.error((*path, key), f"duplicate key {key!r}", line=line)


class Fields:
    """A mapping's entries by snake_case key: ``compiledAdapter`` and ``compiled_adapter`` match."""

    def __init__(self, path: Path_, entries: dict[str, tuple[str, Any]]) -> None:
        self.base = path
        self._entries = entries

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str) -> Any:
        """The value under `key` (snake_case), or None."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def path(self, key: str) -> Path_:
        """The path of `key` as written (camelCase when absent, for "missing" messages)."""
        entry = self._entries.get(key)
        return (*self.base, entry[0] if entry is not None else camel(key))


def fields(scope: Scope, value: Any, path: Path_, accepted: Sequence[str]) -> Fields:
    """Check that `value` is a mapping with only `accepted` keys (given in camelCase).

    Keys may be written in camelCase or snake_case. Nothing (``spec:`` with no value) reads as an
    empty mapping.
    """
    if value is None:
        return Fields(path, {})
    if not isinstance(value, dict):
        scope.error(path, f"expected a mapping, got {describe(value)}")
        return Fields(path, {})
    allowed = {snake(key): key for key in accepted}
    entries: dict[str, tuple[str, Any]] = {}
    for key, item in value.items():
        name = snake(str(key))
        if name not in allowed:
            listing = ", ".join(sorted(accepted)) or "none"
            scope.error((*path, str(key)), f"unknown key {str(key)!r} (accepted: {listing})")
        elif name in entries:
            scope.error((*path, str(key)), f"{key!r} repeats {entries[name][0]!r}")
        else:
            entries[name] = (str(key), item)
    return Fields(path, entries)


def get_str(scope: Scope, f: Fields, key: str, *, required: bool = False) -> str:
    """A string field ("" when absent). Numbers are not silently turned into strings."""
    value = f.get(key)
    if value is None:
        if required:
            scope.error(f.path(key), "missing")
        return ""
    if not isinstance(value, str):
        scope.error(f.path(key), f"expected a string, got {describe(value)}")
        return ""
    if required and not value.strip():
        scope.error(f.path(key), "must not be empty")
    return value


def get_int(scope: Scope, f: Fields, key: str, *, default: int = 0, minimum: int = 0) -> int:
    """An integer field of at least `minimum` (`default` when absent)."""
    value = f.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)  # proto JSON writes 64-bit integers as strings
    if isinstance(value, bool) or not isinstance(value, int):
        scope.error(f.path(key), f"expected an integer, got {describe(value)}")
        return default
    if value < minimum:
        scope.error(f.path(key), f"must be at least {minimum}, got {value}")
        return default
    return value


def get_bool(scope: Scope, f: Fields, key: str) -> bool:
    """A boolean field (false when absent)."""
    value = f.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        scope.error(f.path(key), f"expected true or false, got {describe(value)}")
        return False
    return value


def get_list(scope: Scope, f: Fields, key: str) -> list[Any]:
    """A list field ([] when absent)."""
    value = f.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        scope.error(f.path(key), f"expected a list, got {describe(value)}")
        return []
    return value


def get_str_map(scope: Scope, f: Fields, key: str) -> dict[str, str]:
    """A map of strings to strings ({} when absent)."""
    value = f.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        scope.error(f.path(key), f"expected a mapping, got {describe(value)}")
        return {}
    result: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(item, str):
            scope.error((*f.path(key), str(name)), f"expected a string, got {describe(item)}")
            continue
        result[str(name)] = item
    return result
