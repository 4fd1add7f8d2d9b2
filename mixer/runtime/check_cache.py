"""The check cache: precondition results keyed by the attributes their evaluation read.

As Mixer's client did: each cached answer has a "shape", the attributes (and string-map keys)
its evaluation looked at, each either present or absent. A request hits when, for one known
shape, every present-read is present, every absent-read is absent, and the values of the
present-reads equal the cached ones. Entries expire after `valid_duration` or `valid_use_count`
hits; the whole cache belongs to one runtime, so a config swap starts an empty one.
"""

from __future__ import annotations

import operator
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


class _Shape:
    """Reads one shape's key from a bag: whole attributes with one C-level `itemgetter`, then
    the absent names and the string-map keys one by one. None when the bag has another shape."""

    __slots__ = ("absent", "id", "keyed", "present")

    def __init__(self, shape: Shape, shape_id: int) -> None:
        self.id = shape_id
        names = [name for name, key, present in shape if key is None and present]
        self.present: Callable[[Mapping[str, object]], object] | None = (
            operator.itemgetter(*names) if names else None
        )
        self.absent = tuple(name for name, key, present in shape if key is None and not present)
        self.keyed = tuple((name, key, present) for name, key, present in shape if key is not None)

    def key(self, data: Mapping[str, object]) -> tuple[object, ...] | None:
        try:
            whole = self.present(data) if self.present is not None else ()
        except KeyError:
            return None
        for name in self.absent:
            if name in data:
                return None
        if not self.keyed:
            return (whole,)
        values: list[object] = [whole]
        for name, key, present in self.keyed:
            found = data.get(name)
            value = found.get(key, _ABSENT) if isinstance(found, Mapping) else _ABSENT
            if (value is _ABSENT) == present:
                return None
            if present:
                values.append(value)
        return tuple(values)


def _plain(bag: Mapping[str, object]) -> Mapping[str, object]:
    # A Bag's dict answers `itemgetter` and `in` without Mapping's Python layers.
    data = getattr(bag, "_data", None)
    return data if isinstance(data, dict) else bag


class CheckCache:
    """A bounded LRU of check results keyed by referenced-attribute values."""

    def __init__(
        self,
        max_entries: int = 100_000,
        max_shapes: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[tuple[int, tuple[object, ...]], _Entry] = OrderedDict()
        self._shapes: dict[Shape, _Shape] = {}
        # References in evaluation order -> their shape: the same rules read in the same order.
        self._by_reads: dict[tuple[tuple[tuple[str, str | None], bool], ...], _Shape] = {}
        self._max_entries = max_entries
        self._max_shapes = max_shapes
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, bag: Mapping[str, object]) -> object | None:
        """The cached result for `bag`, or None."""
        if not self._entries:
            return None
        data = _plain(bag)
        now = self._clock()
        for shape in self._shapes.values():
            values = shape.key(data)
            if values is None:
                continue
            key = (shape.id, values)
            try:
                entry = self._entries.get(key)
            except TypeError:  # an unhashable value: this shape cannot have cached it
                continue
            if entry is None:
                continue
            if entry.expires <= now or entry.uses_left <= 0:
                del self._entries[key]
                continue
            entry.uses_left -= 1
            self._entries.move_to_end(key)
            return entry.value
        return None

    def _shape(self, references: References) -> _Shape | None:
        reads = tuple(references.reads.items())
        found = self._by_reads.get(reads)
        if found is not None:
            return found
        shape: Shape = tuple(
            sorted(
                ((name, key, present) for (name, key), present in reads),
                key=lambda r: (r[0], r[1] or "", r[2]),
            )
        )
        # A whole-map read makes the map's value part of the key; per-key reads of the same map
        # are then implied by it.
        whole = {name for name, key, present in shape if key is None and present}
        shape = tuple(r for r in shape if r[1] is None or r[0] not in whole)
        found = self._shapes.get(shape)
        if found is None:
            if len(self._shapes) >= self._max_shapes:
                return None
            found = self._shapes[shape] = _Shape(shape, len(self._shapes))
        if len(self._by_reads) < self._max_shapes * 4:
            self._by_reads[reads] = found
        return found

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
        shape = self._shape(references)
        if shape is None:
            return
        values = shape.key(_plain(bag))
        if values is None:
            return
        key = (shape.id, values)
        try:
            self._entries[key] = _Entry(value, self._clock() + valid_seconds, valid_uses)
        except TypeError:
            return
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
