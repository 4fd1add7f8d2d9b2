"""Records which attributes an evaluation read, for `referenced_attributes` and the check cache.

Expression programs see a `TrackingBag` as an ordinary ``Mapping``. Every lookup is recorded:
a name read and found is EXACT, a name looked for and missing is ABSENCE; a string map read
through a key records that key only (with its own presence), and a map used whole records the
whole map.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mixer.attributes.bag import Bag, StringMap, Value

Read = tuple[str, str | None]


class References:
    """What one evaluation looked at. Keys: (name, map_key or None) -> present."""

    __slots__ = ("reads",)

    def __init__(self, reads: dict[tuple[str, str | None], bool] | None = None) -> None:
        self.reads = reads if reads is not None else {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, References) and other.reads == self.reads

    def __repr__(self) -> str:
        return f"References({self.reads!r})"

    def record(self, name: str, key: str | None, present: bool) -> None:
        self.reads[(name, key)] = present

    def merge(self, other: References) -> None:
        self.reads.update(other.reads)

    def names(self) -> set[str]:
        return {name for name, _ in self.reads}


class TrackedStringMap(Mapping[str, str]):
    """A string map that records per-key reads against its owning attribute."""

    __slots__ = ("_get", "_map", "_name", "_reads")

    def __init__(self, name: str, data: Mapping[str, str], reads: dict[Read, bool]) -> None:
        self._name = name
        self._map = data
        # StringMap keeps a mappingproxy: its C-level get skips Mapping's Python layers.
        self._get = data._data.get if isinstance(data, StringMap) else data.get
        self._reads = reads

    def __getitem__(self, key: str) -> str:
        value = self._get(key)
        self._reads[(self._name, key)] = value is not None
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        value = self._get(key)
        self._reads[(self._name, key)] = value is not None
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        present = key in self._map
        if isinstance(key, str):
            self._reads[(self._name, key)] = present
        return present

    def __iter__(self) -> Iterator[str]:
        self._reads[(self._name, None)] = True
        return iter(self._map)

    def __len__(self) -> int:
        self._reads[(self._name, None)] = True
        return len(self._map)

    def unwrap(self) -> Mapping[str, str]:
        """The underlying map; reading it this way counts as using the whole map."""
        self._reads[(self._name, None)] = True
        return self._map


class TrackingBag(Mapping[str, Value]):
    """A read-only view of a bag that records every lookup into `refs`."""

    __slots__ = ("_bag", "_get", "_maps", "_reads", "refs")

    def __init__(self, bag: Bag, refs: References | None = None) -> None:
        self._bag = bag
        self._get = bag._data.get
        if refs is None:
            refs = References()
        self.refs = refs
        self._reads = refs.reads
        # Tracked views of string maps, made on first read: rules read the same few maps
        # (headers, labels) again and again.
        self._maps: dict[str, TrackedStringMap] | None = None

    def __getitem__(self, name: str) -> Value:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value  # type: ignore[return-value]

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        value = self._get(name)
        if value is None:
            self._reads[(name, None)] = False
            return default
        if value.__class__ is StringMap:
            maps = self._maps
            if maps is None:
                maps = self._maps = {}
            tracked = maps.get(name)
            if tracked is None:
                tracked = maps[name] = TrackedStringMap(name, value, self._reads)
            return tracked
        self._reads[(name, None)] = True
        return value

    def value_at(self, name: str, key: str | None) -> object:
        """``get(name)``, then ``[key]`` of a string map (None when absent or not a map),
        recording what those reads would: one call for the rule index, which asks for many."""
        value = self._get(name)
        if value is None:
            self._reads[(name, None)] = False
            return None
        if key is None:
            self._reads[(name, None)] = True
            return value
        if value.__class__ is StringMap:
            found = value._data.get(key)
            self._reads[(name, key)] = found is not None
            return found
        self._reads[(name, None)] = True
        return value.get(key) if isinstance(value, Mapping) else None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        present = name in self._bag
        self._reads[(name, None)] = present
        return present

    def __iter__(self) -> Iterator[str]:
        return iter(self._bag)

    def __len__(self) -> int:
        return len(self._bag)
