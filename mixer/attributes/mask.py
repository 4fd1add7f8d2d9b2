"""Which attribute values are never written out (decision logs): names and map keys.

``request.api_key`` masks the attribute; ``request.headers[authorization]`` masks one key of a
string map, compared without case (HTTP header names are case-insensitive).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MASKED = "<masked>"
DEFAULT_MASK = (
    "request.headers[authorization]",
    "request.headers[proxy-authorization]",
    "request.headers[cookie]",
    "request.headers[x-api-key]",
    "response.headers[set-cookie]",
    "request.api_key",
    "request.auth.raw_claims",
)
"""What is masked unless ``--decision-log-mask`` says otherwise: credentials and sessions."""


@dataclass(frozen=True)
class Mask:
    """Attribute names and (attribute, lower-cased key) pairs whose values are never logged."""

    names: frozenset[str]
    keys: frozenset[tuple[str, str]]

    @classmethod
    def parse(cls, items: Iterable[str]) -> Mask:
        """From ``name`` and ``name[key]`` items (ValueError for an empty or malformed one)."""
        names: set[str] = set()
        keys: set[tuple[str, str]] = set()
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if item.endswith("]"):
                name, sep, key = item[:-1].partition("[")
                if not sep or not name or not key.strip("\"'"):
                    raise ValueError(f"mask entry {raw!r}: expected NAME or NAME[KEY]")
                keys.add((name, key.strip("\"'").lower()))
            elif "[" in item:
                raise ValueError(f"mask entry {raw!r}: expected NAME or NAME[KEY]")
            else:
                names.add(item)
        return cls(frozenset(names), frozenset(keys))

    def masks(self, name: str, key: str | None) -> bool:
        return name in self.names or (key is not None and (name, key.lower()) in self.keys)
