"""Read shapes: which attributes an evaluation looked at, as a key for remembering its result.

An evaluation reads attributes only through a `TrackingBag`, so its result is a function of
what it read. Its *shape* lists each read (a name, or a name and a string-map key) with its
presence; two bags that agree on every read of a shape (present with equal values of the same
types, or absent) give the same result. The check cache and the instance memo key their entries
this way.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from mixer.attributes.bag import StringMap
from mixer.attributes.tracking import References

Read = tuple[str, str | None, bool]
Shape = tuple[Read, ...]
ReadsKey = tuple[tuple[tuple[str, str | None], bool], ...]

_ABSENT = object()
V = TypeVar("V")


def shape_of(references: References) -> Shape:
    """The canonical shape of what `references` recorded (sorted; a map read whole implies the
    per-key reads of the same map)."""
    shape: Shape = tuple(
        sorted(
            ((name, key, present) for (name, key), present in references.reads.items()),
            key=lambda r: (r[0], r[1] or "", r[2]),
        )
    )
    whole = {name for name, key, present in shape if key is None and present}
    return tuple(r for r in shape if r[1] is None or r[0] not in whole)


_OBJECT = 32


def estimated_size(value: object) -> int:
    """An estimate of the memory `value` (a shape key, or part of one) holds, in bytes."""
    if isinstance(value, str | bytes):
        return sys.getsizeof(value)
    if isinstance(value, tuple):
        return sys.getsizeof(value) + sum(map(estimated_size, value))
    if isinstance(value, Mapping):
        return sys.getsizeof(value) + sum(
            estimated_size(k) + estimated_size(v) for k, v in value.items()
        )
    return _OBJECT


def plain(bag: Mapping[str, object]) -> Mapping[str, object]:
    """The dict behind a `Bag` (C-level `itemgetter` and `in`), or the mapping itself."""
    data = getattr(bag, "_data", None)
    return data if isinstance(data, dict) else bag


class ReadShape:
    """Reads one shape's key from a bag: whole attributes with one C-level `itemgetter` (their
    types too: 1, 1.0 and True are equal in Python but not as attributes), the absent names in
    one set test, then each string map once: its keys read present with one `itemgetter`, its
    keys read absent one by one. `key` is None when the bag has another shape."""

    __slots__ = ("absent", "id", "maps", "present", "single")

    def __init__(self, shape: Shape, shape_id: int) -> None:
        self.id = shape_id
        names = [name for name, key, present in shape if key is None and present]
        self.present: Callable[[Mapping[str, object]], object] | None = (
            operator.itemgetter(*names) if names else None
        )
        self.single = len(names) == 1
        self.absent = tuple(name for name, key, present in shape if key is None and not present)
        # The keyed reads by map, in shape order: a getter of the keys read present (one C
        # call per map; a tuple even for one key), and the keys read absent.
        maps: dict[str, tuple[list[str], list[str]]] = {}
        for name, key, present in shape:
            if key is not None:
                maps.setdefault(name, ([], []))[0 if present else 1].append(key)
        self.maps = tuple(
            (
                name,
                operator.itemgetter(*present_keys * (2 if len(present_keys) == 1 else 1))
                if present_keys
                else None,
                tuple(absent_keys),
            )
            for name, (present_keys, absent_keys) in maps.items()
        )

    def key(self, data: Mapping[str, object]) -> tuple[object, ...] | None:
        """The values of the shape's reads in `data` (see `plain`), or None if it differs."""
        whole: object = ()
        types: object = ()
        if self.present is not None:
            try:
                whole = self.present(data)
            except KeyError:
                return None
            types = whole.__class__ if self.single else tuple(map(type, whole))  # type: ignore[call-overload]
        if self.absent and not data.keys().isdisjoint(self.absent):
            return None
        if not self.maps:
            return (self.id, whole, types)
        values: list[object] = [self.id, whole, types]
        for name, present, absent in self.maps:
            found = data.get(name)
            if found.__class__ is StringMap:
                found = found._data
            elif not isinstance(found, Mapping):
                if present is not None:
                    return None  # no map: every key is absent
                continue
            if present is not None:
                try:
                    values.append(present(found))
                except KeyError:
                    return None
            for key in absent:
                if key in found:
                    return None
        return tuple(values)

    def find(
        self, table: Mapping[tuple[object, ...], V], data: Mapping[str, object]
    ) -> tuple[tuple[object, ...], V] | None:
        """The entry of `table` for this shape's key in `data`, with its key, or None."""
        key = self.key(data)
        if key is None:
            return None
        try:
            value = table.get(key)
        except TypeError:  # an unhashable value read: no entry can have it
            return None
        return None if value is None else (key, value)


class ShapeSet:
    """The shapes seen so far (at most `max_shapes`), found again by their reads in evaluation
    order (the same rules read in the same order), so that canonicalising happens once."""

    __slots__ = ("_by_reads", "_max", "shapes")

    def __init__(self, max_shapes: int) -> None:
        self.shapes: dict[Shape, ReadShape] = {}
        self._by_reads: dict[ReadsKey, ReadShape] = {}
        self._max = max_shapes

    def of(self, references: References) -> ReadShape | None:
        """The shape of `references`; None once `max_shapes` different ones are known."""
        reads = tuple(references.reads.items())
        found = self._by_reads.get(reads)
        if found is not None:
            return found
        shape = shape_of(references)
        found = self.shapes.get(shape)
        if found is None:
            if len(self.shapes) >= self._max:
                return None
            found = self.shapes[shape] = ReadShape(shape, len(self.shapes))
        if len(self._by_reads) < self._max * 4:
            self._by_reads[reads] = found
        return found

    def __iter__(self) -> Iterator[ReadShape]:
        return iter(self.shapes.values())

    def first(self, table: Mapping[tuple[object, ...], V], data: Mapping[str, object]) -> V | None:
        """The first entry `found` would give, or None (no generator: a memo asks per entry)."""
        for shape in self.shapes.values():
            hit = shape.find(table, data)
            if hit is not None:
                return hit[1]
        return None

    def found(
        self, table: Mapping[tuple[object, ...], V], data: Mapping[str, object]
    ) -> Iterator[tuple[tuple[object, ...], V]]:
        """The entries of `table` (keyed by `ReadShape.key`) that `data` (see `plain`) has, one
        per known shape at most, in shape order."""
        for shape in self.shapes.values():
            hit = shape.find(table, data)
            if hit is not None:
                yield hit
