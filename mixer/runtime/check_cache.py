"""The check cache: precondition results keyed by the attributes their evaluation read.

As Mixer's client did: each cached answer has a "shape", the attributes (and string-map keys)
its evaluation looked at, each either present or absent. A request hits when, for one known
shape, every present-read is present, every absent-read is absent, and the values of the
present-reads equal the cached ones. Entries expire after `valid_duration` or `valid_use_count`
hits; the whole cache belongs to one runtime, so a config swap starts an empty one.

It holds at most `max_entries` entries and about `max_bytes` bytes: a key holds the values the
evaluation read, which the client chooses (a user agent of 60 KB is as cacheable as one of 60
bytes), so each entry is charged its key's estimated size plus a fixed overhead, and the least
recently used entries go first when either bound is crossed (`on_evict` is called for each
entry evicted by the byte bound).

A lookup costs a key per known shape, a miss a key more. When hits are rare (fewer than 1 in
64 lookups over the last 1,024) the cache costs more than it saves, so only 1 check in 64 uses
it, until one of those hits again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mixer.attributes.shapes import ShapeSet, estimated_size, plain
from mixer.attributes.tracking import References

# Lookups per hit-rate window, the fewest hits in a window that keep every check using the cache,
# and how many checks share one use of the cache while hits are rare.
_WINDOW = 1024
_MIN_HITS = _WINDOW // 64
_SPARSE_EVERY = 64

# What an entry costs besides its key: the _Entry, the OrderedDict link and the cached answer.
_ENTRY_OVERHEAD = 256


@dataclass(slots=True)
class _Entry:
    value: object
    expires: float
    uses_left: int
    size: int


class CheckCache:
    """A bounded LRU of check results keyed by referenced-attribute values."""

    def __init__(
        self,
        max_entries: int = 100_000,
        max_shapes: int = 256,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self._entries: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
        self._shapes = ShapeSet(max_shapes)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._on_evict = on_evict
        self._clock = clock
        self._lookups = 0
        self._hits = 0
        self._sparse = False
        self._turn = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The estimated bytes the entries hold."""
        return self._bytes

    def in_use(self) -> bool:
        """Whether this check should use the cache (`get`, then `put` on a miss): always, or
        1 check in 64 while hits are rare."""
        if not self._sparse:
            return True
        self._turn += 1
        return self._turn % _SPARSE_EVERY == 0

    def get(self, bag: Mapping[str, object]) -> object | None:
        """The cached result for `bag`, or None."""
        found = self._find(bag)
        self._lookups += 1
        if found is not None:
            self._hits += 1
            self._sparse = False
        if self._lookups >= _WINDOW:
            self._sparse = self._hits < _MIN_HITS
            self._lookups = self._hits = 0
        return found

    def _find(self, bag: Mapping[str, object]) -> object | None:
        if not self._entries:
            return None
        data = plain(bag)
        now = self._clock()
        for key, entry in self._shapes.found(self._entries, data):
            if entry.expires <= now or entry.uses_left <= 0:
                del self._entries[key]
                self._bytes -= entry.size
                continue
            entry.uses_left -= 1
            self._entries.move_to_end(key)
            return entry.value
        return None

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
        shape = self._shapes.of(references)
        if shape is None:
            return
        key = shape.key(plain(bag))
        if key is None:
            return
        size = estimated_size(key) + _ENTRY_OVERHEAD
        if size > self._max_bytes:
            if self._on_evict is not None:
                self._on_evict()
            return
        try:
            old = self._entries.get(key)
        except TypeError:
            return
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = _Entry(value, self._clock() + valid_seconds, valid_uses, size)
        self._bytes += size
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._bytes -= self._entries.popitem(last=False)[1].size
        while self._bytes > self._max_bytes:
            self._bytes -= self._entries.popitem(last=False)[1].size
            if self._on_evict is not None:
                self._on_evict()
