"""CEL timestamps and durations at nanosecond precision over CEL's whole range (years 1 to 9999).

A value that falls on a whole microsecond is a plain `datetime.datetime` (aware, UTC) or
`datetime.timedelta`, as bags and adapters hold them, so the common case costs nothing. A value
with nanoseconds beyond the microsecond is a `Timestamp` or `Duration`: a subclass carrying the
extra `nanos` (a count below a thousand, always added to the microsecond value, so never
negative, even in a negative duration). Being subclasses, they pass everywhere a datetime or
timedelta does (an adapter sees the value floored to the microsecond); equality, ordering and
hashing count the nanoseconds, and CEL arithmetic goes through `*_from_nanos` / `*_nanos` here,
never through datetime's own operators, which would drop them.
"""

from __future__ import annotations

import datetime
from typing import Any

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
ONE_MICRO = datetime.timedelta(microseconds=1)


def _nanos(value: Any) -> int:
    nanos: int = getattr(value, "nanos", 0)
    return nanos


class Timestamp(datetime.datetime):
    """A timestamp with `nanos` beyond its microsecond."""

    # The class default serves instances datetime builds without __new__ (`replace`).
    nanos: int = 0

    def __new__(cls, *args: Any, nanos: int = 0, **kwargs: Any) -> Timestamp:
        # datetime's own arithmetic on a subclass calls cls(year, ..., tzinfo): nanos is 0 then.
        self = super().__new__(cls, *args, **kwargs)
        self.nanos = nanos
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, datetime.datetime):
            return NotImplemented
        return datetime.datetime.__eq__(self, other) is True and self.nanos == _nanos(other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        base = datetime.datetime.__hash__(self)
        return base if not self.nanos else hash((base, self.nanos))

    def _cmp(self, other: datetime.date) -> int:
        if not isinstance(other, datetime.datetime):
            raise TypeError(f"cannot compare a timestamp to {type(other).__name__}")
        if datetime.datetime.__lt__(self, other):
            return -1
        if datetime.datetime.__gt__(self, other):
            return 1
        return (self.nanos > _nanos(other)) - (self.nanos < _nanos(other))

    def __lt__(self, other: datetime.date) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: datetime.date) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: datetime.date) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: datetime.date) -> bool:
        return self._cmp(other) >= 0

    def __repr__(self) -> str:
        return f"Timestamp({datetime.datetime.__repr__(self)}, nanos={self.nanos})"


class Duration(datetime.timedelta):
    """A duration with `nanos` added to its microseconds."""

    nanos: int = 0

    def __new__(cls, *args: Any, nanos: int = 0, **kwargs: Any) -> Duration:
        self = super().__new__(cls, *args, **kwargs)
        self.nanos = nanos
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, datetime.timedelta):
            return NotImplemented
        return datetime.timedelta.__eq__(self, other) is True and self.nanos == _nanos(other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        base = datetime.timedelta.__hash__(self)
        return base if not self.nanos else hash((base, self.nanos))

    def _cmp(self, other: datetime.timedelta) -> int:
        if datetime.timedelta.__lt__(self, other):
            return -1
        if datetime.timedelta.__gt__(self, other):
            return 1
        return (self.nanos > _nanos(other)) - (self.nanos < _nanos(other))

    def __lt__(self, other: datetime.timedelta) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: datetime.timedelta) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: datetime.timedelta) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: datetime.timedelta) -> bool:
        return self._cmp(other) >= 0

    def __bool__(self) -> bool:
        return True if self.nanos else datetime.timedelta.__bool__(self)

    def __repr__(self) -> str:
        return f"Duration({datetime.timedelta.__repr__(self)}, nanos={self.nanos})"


def duration_nanos(value: datetime.timedelta) -> int:
    """The duration in nanoseconds."""
    return (value // ONE_MICRO) * 1000 + _nanos(value)


def duration_from_nanos(total: int) -> datetime.timedelta:
    """The duration of `total` nanoseconds: a plain timedelta when it is whole microseconds.
    Raises OverflowError beyond timedelta's range."""
    micros, nanos = divmod(total, 1000)
    if not nanos:
        return datetime.timedelta(microseconds=micros)
    return Duration(microseconds=micros, nanos=nanos)


def timestamp_nanos(value: datetime.datetime) -> int:
    """Nanoseconds since the Unix epoch."""
    return ((value - EPOCH) // ONE_MICRO) * 1000 + _nanos(value)


def timestamp_from_nanos(total: int) -> datetime.datetime:
    """The UTC timestamp `total` nanoseconds after the epoch: a plain datetime when it is whole
    microseconds. Raises OverflowError outside years 1 to 9999."""
    micros, nanos = divmod(total, 1000)
    plain = EPOCH + datetime.timedelta(microseconds=micros)
    if not nanos:
        return plain
    return Timestamp(
        plain.year,
        plain.month,
        plain.day,
        plain.hour,
        plain.minute,
        plain.second,
        plain.microsecond,
        tzinfo=datetime.UTC,
        nanos=nanos,
    )


def with_nanos(value: datetime.datetime, nanos: int) -> datetime.datetime:
    """`value` plus `nanos` (below a thousand) nanoseconds beyond its microsecond."""
    if not nanos:
        return value
    return Timestamp(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=value.tzinfo,
        nanos=nanos,
    )


def is_plain(value: object) -> bool:
    """Whether `value` is a plain datetime or timedelta (no nanoseconds beyond the microsecond)."""
    return type(value) is datetime.datetime or type(value) is datetime.timedelta
