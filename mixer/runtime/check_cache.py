"""The check cache: precondition results keyed by the attributes their evaluation read.

As Mixer's client did: each cached answer has a "shape", the attributes (and string-map keys)
its evaluation looked at, each either present or absent. A request hits when, for one known
shape, every present-read is present, every absent-read is absent, and the values of the
present-reads equal the cached ones. Entries expire after `valid_duration` or `valid_use_count`
hits; the whole cache belongs to one runtime, so a config swap starts an empty one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mixer.attributes.tracking import References

Read = tuple[str, str | None, bool]
Shape = tuple[Read, ...]

_ABSENT = object()


@dataclass(slots=True)
class _Entry:
    value: object
    expires: float
    uses_left: int


def _lookup(bag: Mapping[str, object], name: str, key: str | None) -> object:
    value = bag.get(name, _ABSENT)
    if key is None or value is _ABSENT:
        return value
    if isinstance(value, Mapping):
        return value.get(key, _ABSENT)
    return _ABSENT


class CheckCache:
    """A bounded LRU of check results keyed by referenced-attribute values."""

    def __init__(
        self,
        max_entries: int = 100_000,
        max_shapes: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[tuple[int, tuple[object, ...]], _Entry] = OrderedDict()
        self._shapes: dict[Shape, int] = {}
        self._max_entries = max_entries
        self._max_shapes = max_shapes
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, bag: Mapping[str, object]) -> object | None:
        """The cached result for `bag`, or None."""
        if not self._entries:
            return None
        now = self._clock()
        for shape, shape_id in self._shapes.items():
            values = self._key(shape, bag)
            if values is None:
                continue
            key = (shape_id, values)
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.expires <= now or entry.uses_left <= 0:
                del self._entries[key]
                continue
            entry.uses_left -= 1
            self._entries.move_to_end(key)
            return entry.value
        return None

    @staticmethod
    def _key(shape: Shape, bag: Mapping[str, object]) -> tuple[object, ...] | None:
        values: list[object] = []
        for name, map_key, present in shape:
            value = _lookup(bag, name, map_key)
            if (value is _ABSENT) == present:
                return None
            if present:
                values.append(value)
        return tuple(values)

    def put(
        self,
        references: References,
        bag: Mapping[str, object],
        value: object,
        valid_seconds: float,
        valid_uses: int,
    ) -> None:
        """Remember `value` for requests that read the same attributes with the same values."""
        if valid_seconds <= 0 or valid_uses <= 0:
            return
        shape: Shape = tuple(
            sorted(
                ((name, key, present) for (name, key), present in references.reads.items()),
                key=lambda r: (r[0], r[1] or "", r[2]),
            )
        )
        # A whole-map read makes the map's value part of the key; per-key reads of the same map
        # are then implied by it.
        whole = {name for name, key, present in shape if key is None and present}
        shape = tuple(r for r in shape if r[1] is None or r[0] not in whole)
        shape_id = self._shapes.get(shape)
        if shape_id is None:
            if len(self._shapes) >= self._max_shapes:
                return
            shape_id = len(self._shapes)
            self._shapes[shape] = shape_id
        values = self._key(shape, bag)
        if values is None:
            return
        try:
            hash(values)
        except TypeError:
            return
        self._entries[(shape_id, values)] = _Entry(value, self._clock() + valid_seconds, valid_uses)
        self._entries.move_to_end((shape_id, values))
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
