"""The attribute bag: an immutable mapping from attribute name to typed value.

Values use plain Python types so that expression engines and adapters need no wrappers:

======================  =========================================
Mixer ValueType         Python type in a bag
======================  =========================================
STRING, DNS_NAME,       ``str``
EMAIL_ADDRESS, URI
INT64                   ``int``
DOUBLE                  ``float``
BOOL                    ``bool``
TIMESTAMP               ``datetime.datetime`` (timezone-aware, UTC)
DURATION                ``datetime.timedelta``
IP_ADDRESS, BYTES       ``bytes`` (IP addresses as 4 or 16 raw bytes)
STRING_MAP              ``StringMap`` (an immutable ``Mapping[str, str]``)
======================  =========================================
"""

from __future__ import annotations

import datetime
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from types import MappingProxyType
from typing import Union

Value = Union[str, int, float, bool, bytes, datetime.datetime, datetime.timedelta, "StringMap"]


class StringMap(Mapping[str, str]):
    """An immutable string-to-string map (request headers, labels, ...)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data: Mapping[str, str] = MappingProxyType(dict(data or {}))

    @classmethod
    def _adopt(cls, data: dict[str, str]) -> StringMap:
        """Wrap a dict the caller hands over (and never touches again) without copying it."""
        smap = cls.__new__(cls)
        smap._data = MappingProxyType(data)
        return smap

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        # Mapping.get would go through __getitem__ and a caught KeyError on every miss.
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def items(self) -> ItemsView[str, str]:
        return self._data.items()

    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def values(self) -> ValuesView[str]:
        return self._data.values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"StringMap({dict(self._data)!r})"


class Bag(Mapping[str, Value]):
    """An immutable set of attributes. Build one per request; never mutate it."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Value] | None = None) -> None:
        self._data: dict[str, Value] = dict(data or {})

    @classmethod
    def _adopt(cls, data: dict[str, Value]) -> Bag:
        """Wrap a dict the caller hands over (and never touches again) without copying it."""
        bag = cls.__new__(cls)
        bag._data = data
        return bag

    def __getitem__(self, name: str) -> Value:
        return self._data[name]

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        return self._data.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # The dict's own views: Mapping's would call __getitem__ per attribute, in Python.
    def items(self) -> ItemsView[str, Value]:
        return self._data.items()

    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def values(self) -> ValuesView[Value]:
        return self._data.values()

    def merged(self, overlay: Mapping[str, Value]) -> Bag:
        """A new bag with `overlay` applied on top of this one (delta encoding, derived attrs)."""
        data = dict(self._data)
        data.update(overlay)
        return Bag._adopt(data)

    def __repr__(self) -> str:
        return f"Bag({self._data!r})"
