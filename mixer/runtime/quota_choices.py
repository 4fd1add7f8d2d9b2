"""Which quota rule answers a requested quota, remembered by the values the choice read.

Choosing costs, per quota and request: a `TrackingBag`, the quota rules' matches and the chosen
rule's instance. Requests of one client repeat the same choice, so it is kept the way the check
cache keeps answers (`mixer.attributes.shapes`): by the attributes the choice read, with their
presence and values. A later request that agrees on all of them gets the same rule and the same
(immutable) instance, and the same references, without evaluating anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable
from typing import Any

from mixer.attributes.bag import Bag
from mixer.attributes.shapes import ShapeSet
from mixer.attributes.tracking import References

# Per scope (namespace and quota name): distinct read shapes and remembered choices. Quota names
# come from requests, so scopes are bounded too; each bound clears its table when reached.
_MAX_SHAPES = 16
_MAX_ENTRIES = 4096
_MAX_SCOPES = 1024


class _Scope:
    __slots__ = ("shapes", "table")

    def __init__(self) -> None:
        self.shapes = ShapeSet(_MAX_SHAPES)
        self.table: dict[tuple[object, ...], tuple[Any, References]] = {}


class QuotaChoices:
    """Remembered quota choices of one runtime (a config swap starts empty)."""

    __slots__ = ("_scopes",)

    def __init__(self) -> None:
        self._scopes: dict[Hashable, _Scope] = {}

    def find(self, scope: Hashable, bag: Bag) -> tuple[Any, References] | None:
        """The choice remembered for `bag` in `scope` and its references, or None. The references
        are shared by every request that finds the choice: nothing changes references once an
        evaluation has recorded them."""
        remembered = self._scopes.get(scope)
        if remembered is None:
            return None
        for _, found in remembered.shapes.found(remembered.table, bag._data):
            return found
        return None

    def remember(self, scope: Hashable, bag: Bag, references: References, choice: Any) -> None:
        """Keep `choice`, made for `bag` after reading what `references` recorded."""
        remembered = self._scopes.get(scope)
        if remembered is None:
            if len(self._scopes) >= _MAX_SCOPES:
                self._scopes.clear()
            remembered = self._scopes[scope] = _Scope()
        shape = remembered.shapes.of(references)
        key = shape.key(bag._data) if shape is not None else None
        if key is None:
            return
        if len(remembered.table) >= _MAX_ENTRIES:
            remembered.table.clear()
        with contextlib.suppress(TypeError):  # an unhashable value read
            remembered.table[key] = (choice, References(dict(references.reads)))
