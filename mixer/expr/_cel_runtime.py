"""CEL values and operations in plain Python.

Value mapping: int, `UInt` (an int subclass), float, bool, str, bytes, None, list, dict (any
Mapping is a map), `datetime.datetime` (aware, UTC) for timestamps, `datetime.timedelta` for
durations (their `_cel_time` subclasses when they carry nanoseconds beyond the microsecond),
`CelType` for type values. Errors are `CelError` exceptions; the compiler gives `&&`,
`||` and the macros CEL's error-absorbing meaning.
"""

from __future__ import annotations

import datetime
import decimal
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mixer.expr import _externs as ext
from mixer.expr._cel_time import (
    Duration,
    Timestamp,
    duration_from_nanos,
    duration_nanos,
    timestamp_from_nanos,
    timestamp_nanos,
    with_nanos,
)
from mixer.expr._errors import EvaluationError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
# Longest string, bytes or list `+` may build: hostile expressions cannot grow values unboundedly.
MAX_VALUE_SIZE = 1 << 20
# google.protobuf.Duration's range: +-10000 years.
_MAX_DURATION_SECONDS = 315_576_000_000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_ONE_MICRO = datetime.timedelta(microseconds=1)


class CelError(EvaluationError):
    """A CEL evaluation error (no matching overload, no such key, overflow, ...)."""


class UInt(int):
    """CEL's uint: an int that stays distinct from CEL's int."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{int(self)}u"


class ExtensionValue:
    """Base of the values extension libraries add (optional, net.IP, net.CIDR): the runtime
    asks the value itself for its kind (`CEL_KIND`, also its type's name), for field selection,
    indexing, presence tests and `string()`; CEL's `==` between two values of one such kind is
    the class's `__eq__`."""

    __slots__ = ()
    CEL_KIND: ClassVar[str] = ""

    def cel_select(self, field: str) -> Any:
        """`self.field`."""
        raise CelError(f"type '{self.CEL_KIND}' does not support field selection")

    def cel_index(self, key: Any) -> Any:
        """`self[key]`."""
        raise no_overload("_[_]", self, key)

    def cel_has(self, field: str) -> bool:
        """`has(self.field)`."""
        raise CelError(f"type '{self.CEL_KIND}' does not support field selection")

    def cel_string(self) -> str:
        """`string(self)`."""
        raise no_overload("string", self)


class CelType:
    """A CEL type value (`int`, `string`, `google.protobuf.Timestamp`, ...)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelType) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return self.name


TYPES: dict[str, CelType] = {
    name: CelType(name)
    for name in (
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "null_type",
        "type",
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
    )
}

_KIND: dict[type, str] = {
    bool: "bool",
    int: "int",
    UInt: "uint",
    float: "double",
    str: "string",
    bytes: "bytes",
    type(None): "null",
    list: "list",
    tuple: "list",
    dict: "map",
    datetime.datetime: "timestamp",
    datetime.timedelta: "duration",
    Timestamp: "timestamp",
    Duration: "duration",
    CelType: "type",
}
_KIND_TYPE = {
    "bool": "bool",
    "int": "int",
    "uint": "uint",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "null": "null_type",
    "list": "list",
    "map": "map",
    "timestamp": "google.protobuf.Timestamp",
    "duration": "google.protobuf.Duration",
    "type": "type",
}
NUMERIC = frozenset({"int", "uint", "double"})
_ORDERED = frozenset({"int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"})


def kind(value: object) -> str:
    """CEL's name for the kind of `value`."""
    found = _KIND.get(type(value))
    if found is not None:
        return found
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "uint" if isinstance(value, UInt) else "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, datetime.timedelta):
        return "duration"
    if isinstance(value, ExtensionValue):
        return value.CEL_KIND
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, float):
        return "double"
    raise CelError(f"unsupported value type {type(value).__name__}")


def no_overload(op: str, *args: object) -> CelError:
    kinds = ", ".join(kind(a) for a in args)
    return CelError(f"no matching overload for '{op}' applied to ({kinds})")


def check_int(value: int) -> int:
    if INT64_MIN <= value <= INT64_MAX:
        return value
    raise CelError("int overflow: return error for overflow")


def check_uint(value: int) -> UInt:
    if 0 <= value <= UINT64_MAX:
        return UInt(value)
    raise CelError("uint overflow: return error for overflow")


def check_duration(value: datetime.timedelta) -> datetime.timedelta:
    if type(value) is datetime.timedelta:
        if abs(value.total_seconds()) > _MAX_DURATION_SECONDS:
            raise CelError("duration out of range")
    elif abs(duration_nanos(value)) > _MAX_DURATION_SECONDS * 10**9:
        raise CelError("duration out of range")
    return value


def _durations(op: Callable[[int, int], int], a: Any, b: Any) -> datetime.timedelta:
    # Plain timedeltas add exactly; a Duration's nanoseconds need integer arithmetic.
    if type(a) is datetime.timedelta and type(b) is datetime.timedelta:
        return check_duration(a + b if op is operator.add else a - b)
    try:
        return check_duration(duration_from_nanos(op(duration_nanos(a), duration_nanos(b))))
    except OverflowError:
        raise CelError("duration out of range") from None


# -- equality and ordering -----------------------------------------------------------------------


def equal(a: Any, b: Any) -> bool:
    """CEL `==`: never an error; values of different kinds are unequal, numbers compare by value."""
    ka, kb = kind(a), kind(b)
    if ka != kb:
        if ka in NUMERIC and kb in NUMERIC:
            return bool(a == b)
        # A net.IP value (a bytes subclass) equals the raw bytes of a Mixer IP_ADDRESS.
        return "net.IP" in (ka, kb) and isinstance(a, bytes) and isinstance(b, bytes) and a == b
    if ka == "list":
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "map":
        if len(a) != len(b):
            return False
        for key, value in a.items():
            found = map_get(b, key)
            if found is _MISSING or not equal(value, found):
                return False
        return True
    return bool(a == b)


def compare(op: str, a: Any, b: Any) -> int:
    """-1, 0 or 1 for ordered operands of one kind or two numeric kinds; else an error."""
    ka, kb = kind(a), kind(b)
    if (ka == kb and ka in _ORDERED) or (ka in NUMERIC and kb in NUMERIC):
        if ka != kb and "double" in (ka, kb):
            # int/uint against double compares as doubles, as cel-go does.
            a, b = float(a), float(b)
        if a < b:
            return -1
        if a > b:
            return 1
        if a == b:
            return 0
        return 2  # NaN: unordered, every comparison false
    raise no_overload(op, a, b)


def less(a: Any, b: Any) -> bool:
    return compare("_<_", a, b) == -1


def less_equal(a: Any, b: Any) -> bool:
    return compare("_<=_", a, b) in (-1, 0)


def greater(a: Any, b: Any) -> bool:
    return compare("_>_", a, b) == 1


def greater_equal(a: Any, b: Any) -> bool:
    return compare("_>=_", a, b) in (0, 1)


# -- arithmetic ------------------------------------------------------------------------------------


def add(a: Any, b: Any) -> Any:
    ka, kb = kind(a), kind(b)
    if ka == kb:
        if ka == "int":
            return check_int(a + b)
        if ka == "uint":
            return check_uint(a + b)
        if ka == "double":
            return a + b
        if ka in ("string", "bytes", "list"):
            if len(a) + len(b) > MAX_VALUE_SIZE:
                raise CelError(f"{ka} concatenation longer than {MAX_VALUE_SIZE}")
            return a + b if ka != "list" else [*a, *b]
        if ka == "duration":
            return _durations(operator.add, a, b)
    elif ka == "timestamp" and kb == "duration":
        return _shift(a, b)
    elif ka == "duration" and kb == "timestamp":
        return _shift(b, a)
    raise no_overload("_+_", a, b)


def subtract(a: Any, b: Any) -> Any:
    ka, kb = kind(a), kind(b)
    if ka == kb:
        if ka == "int":
            return check_int(a - b)
        if ka == "uint":
            return check_uint(a - b)
        if ka == "double":
            return a - b
        if ka == "duration":
            return _durations(operator.sub, a, b)
        if ka == "timestamp":
            # cel-go computes this as a Go time.Duration: int64 nanoseconds.
            nanos = timestamp_nanos(a) - timestamp_nanos(b)
            if not INT64_MIN <= nanos <= INT64_MAX:
                raise CelError("duration out of range")
            return duration_from_nanos(nanos)
    elif ka == "timestamp" and kb == "duration":
        if type(b) is datetime.timedelta:
            return _shift(a, -b)
        return _shift(a, duration_from_nanos(-duration_nanos(b)))
    raise no_overload("_-_", a, b)


def _shift(ts: datetime.datetime, delta: datetime.timedelta) -> datetime.datetime:
    try:
        if type(ts) is datetime.datetime and type(delta) is datetime.timedelta:
            return ts + delta
        return timestamp_from_nanos(timestamp_nanos(ts) + duration_nanos(delta))
    except OverflowError:
        raise CelError("timestamp out of range") from None


def multiply(a: Any, b: Any) -> Any:
    ka, kb = kind(a), kind(b)
    if ka == kb:
        if ka == "int":
            return check_int(a * b)
        if ka == "uint":
            return check_uint(a * b)
        if ka == "double":
            return a * b
    raise no_overload("_*_", a, b)


def divide(a: Any, b: Any) -> Any:
    ka, kb = kind(a), kind(b)
    if ka == kb:
        if ka in ("int", "uint"):
            if b == 0:
                raise CelError("division by zero: divide by zero")
            quotient = abs(a) // abs(b)
            if (a < 0) != (b < 0):
                quotient = -quotient
            return check_int(quotient) if ka == "int" else UInt(quotient)
        if ka == "double":
            if b == 0:
                if a == 0 or math.isnan(a):
                    return math.nan
                return math.copysign(math.inf, a) * math.copysign(1.0, b)
            return a / b
    raise no_overload("_/_", a, b)


def modulo(a: Any, b: Any) -> Any:
    ka, kb = kind(a), kind(b)
    if ka == kb and ka in ("int", "uint"):
        if b == 0:
            raise CelError("modulus by zero: modulo by zero")
        remainder = abs(a) % abs(b)
        remainder = -remainder if a < 0 else remainder
        return remainder if ka == "int" else UInt(remainder)
    raise no_overload("_%_", a, b)


def negate(a: Any) -> Any:
    ka = kind(a)
    if ka == "int":
        return check_int(-a)
    if ka == "double":
        return -a
    raise no_overload("-_", a)


def logical_not(a: Any) -> bool:
    if a is True or a is False:
        return not a
    raise no_overload("!_", a)


# -- containers ------------------------------------------------------------------------------------

_MISSING: Any = object()
MISSING = _MISSING  # what map_get returns for an absent key


def _map_key(key: Any) -> Any:
    """The dict key a CEL map key is stored under, or raise for unsupported key types."""
    k = kind(key)
    if k in ("int", "uint", "bool", "string"):
        return key
    raise CelError(f"unsupported key type {k}")


def map_get(m: Mapping[Any, Any], key: Any) -> Any:
    """The value at `key` (numbers match across int/uint/double), or _MISSING."""
    k = kind(key)
    if k == "double":
        if not key.is_integer():
            return _MISSING
        key = int(key)
    elif k not in ("int", "uint", "bool", "string"):
        return _MISSING
    value = m.get(key, _MISSING)
    if value is not _MISSING and k != "string" and key in (0, 1) and isinstance(m, dict):
        # Python says True == 1: make sure the stored key has the same boolean-ness.
        for stored in m:
            if stored == key and (type(stored) is bool) == (k == "bool"):
                return m[stored]
        return _MISSING
    return value


def index(container: Any, key: Any) -> Any:
    """CEL `container[key]`."""
    k = kind(container)
    if k == "map":
        value = map_get(container, key)
        if value is _MISSING:
            raise CelError(f"no such key: {key!r}")
        return value
    if k == "list":
        ik = kind(key)
        if ik == "double":
            if not key.is_integer():
                raise CelError(f"invalid_argument: index {key} is not an integer")
            key = int(key)
        elif ik not in ("int", "uint"):
            raise CelError(f"invalid_argument: no list index of type {ik}")
        if not 0 <= key < len(container):
            raise CelError(f"invalid_argument: index out of range: {key}")
        return container[key]
    if isinstance(container, ExtensionValue):
        return container.cel_index(key)
    raise no_overload("_[_]", container, key)


def select(operand: Any, field: str) -> Any:
    """CEL `operand.field` on a map."""
    if kind(operand) == "map":
        value = operand.get(field, _MISSING)
        if value is _MISSING:
            raise CelError(f"no such key: '{field}'")
        return value
    if isinstance(operand, ExtensionValue):
        return operand.cel_select(field)
    raise CelError(f"type '{kind(operand)}' does not support field selection")


def has_field(operand: Any, field: str) -> bool:
    if kind(operand) == "map":
        return field in operand
    if isinstance(operand, ExtensionValue):
        return operand.cel_has(field)
    raise CelError(f"type '{kind(operand)}' does not support field selection")


def contains(element: Any, container: Any) -> bool:
    """CEL `element in container`."""
    k = kind(container)
    if k == "list":
        return any(equal(element, item) for item in container)
    if k == "map":
        return map_get(container, element) is not _MISSING
    raise no_overload("@in", element, container)


def make_map(entries: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    seen: list[Any] = []
    for key, value in entries:
        _map_key(key)
        if any(equal(key, s) for s in seen):
            raise CelError(f"Failed with repeated key: {key!r}")
        seen.append(key)
        result[key] = value
    return result


def size(value: Any) -> int:
    k = kind(value)
    if k in ("string", "bytes", "list", "map"):
        return len(value)
    raise no_overload("size", value)


# -- timestamps and durations ----------------------------------------------------------------------

_TS_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)
_DURATION_RE = re.compile(r"([-+]?)((?:(?:\d+(?:\.\d*)?|\.\d+)(?:h|m|s|ms|us|µs|ns))+|0)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_NANOS = {
    "h": 3600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 1000,
    "µs": 1000,
    "ns": 1,
}


def parse_timestamp(text: str) -> datetime.datetime:
    found = _TS_RE.fullmatch(text)
    if found is None:
        raise CelError(f"timestamp parse error: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    if int(year) == 0:
        raise CelError("timestamp out of range")
    nanos = int(((fraction or "") + "000000000")[:9])
    try:
        value = datetime.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            nanos // 1000,
            tzinfo=datetime.UTC,
        )
    except ValueError as err:
        raise CelError(f"timestamp parse error: {err}") from None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        value = _shift(value, -sign * offset)
    return with_nanos(value, nanos % 1000)


def timestamp_from_seconds(seconds: int) -> datetime.datetime:
    try:
        return _EPOCH + datetime.timedelta(seconds=seconds)
    except OverflowError:
        raise CelError("timestamp out of range") from None


def format_timestamp(value: datetime.datetime) -> str:
    nanos = value.microsecond * 1000 + getattr(value, "nanos", 0)
    value = value.astimezone(datetime.UTC)
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value:%H:%M:%S}"
    if nanos:
        text += f".{nanos:09d}".rstrip("0")
    return text + "Z"


def parse_duration(text: str) -> datetime.timedelta:
    found = _DURATION_RE.fullmatch(text)
    if found is None:
        raise CelError(f"duration parse error: {text!r}")
    sign, body = found.groups()
    nanos = 0
    for number, unit in _DURATION_PART.findall(body):
        whole, _, frac = number.partition(".")
        scale = _NANOS[unit]
        nanos += int(whole or "0") * scale
        if frac:
            nanos += int(frac) * scale // 10 ** len(frac)
    if sign == "-":
        nanos = -nanos
    if abs(nanos) > _MAX_DURATION_SECONDS * 10**9:
        raise CelError("duration out of range")
    return duration_from_nanos(nanos)


def format_duration(value: datetime.timedelta) -> str:
    nanos = duration_nanos(value)
    sign = "-" if nanos < 0 else ""
    seconds, frac = divmod(abs(nanos), 1_000_000_000)
    text = f"{sign}{seconds}"
    if frac:
        text += f".{frac:09d}".rstrip("0")
    return text + "s"


def _zone(name: str) -> datetime.tzinfo:
    match = re.fullmatch(r"([+-]?)(\d{2}):(\d{2})", name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        offset = datetime.timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return datetime.timezone(sign * offset)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a directory of the zone database ("America"), or too long.
        raise CelError(f"unknown timezone {name!r}") from None


def _local(ts: Any, tz: Any, accessor: str) -> datetime.datetime:
    if kind(ts) != "timestamp" or (tz is not None and kind(tz) != "string"):
        raise no_overload(accessor, ts)
    local: datetime.datetime = ts.astimezone(datetime.UTC if tz is None else _zone(tz))
    return local


def _timestamp_accessor(name: str, pick: Callable[[datetime.datetime], int]) -> Callable[..., int]:
    def accessor(value: Any, tz: Any = None) -> int:
        if kind(value) == "duration" and tz is None and name in _DURATION_ACCESSORS:
            return _DURATION_ACCESSORS[name](value)
        return pick(_local(value, tz, name))

    return accessor


def _duration_total(value: datetime.timedelta, unit: datetime.timedelta) -> int:
    # Truncated toward zero, counting the nanoseconds (-1.5s has -1 whole seconds).
    nanos = duration_nanos(value)
    result = abs(nanos) // (unit // _ONE_MICRO * 1000)
    return -result if nanos < 0 else result


_DURATION_ACCESSORS: dict[str, Callable[[datetime.timedelta], int]] = {
    "getHours": lambda d: _duration_total(d, datetime.timedelta(hours=1)),
    "getMinutes": lambda d: _duration_total(d, datetime.timedelta(minutes=1)),
    "getSeconds": lambda d: _duration_total(d, datetime.timedelta(seconds=1)),
    "getMilliseconds": lambda d: (
        _duration_total(d, datetime.timedelta(milliseconds=1)) % 1000
        if d >= datetime.timedelta(0)
        else -((-_duration_total(d, datetime.timedelta(milliseconds=1))) % 1000)
    ),
}

TIME_ACCESSORS: dict[str, Callable[..., int]] = {
    "getFullYear": _timestamp_accessor("getFullYear", lambda t: t.year),
    "getMonth": _timestamp_accessor("getMonth", lambda t: t.month - 1),
    "getDate": _timestamp_accessor("getDate", lambda t: t.day),
    "getDayOfMonth": _timestamp_accessor("getDayOfMonth", lambda t: t.day - 1),
    "getDayOfWeek": _timestamp_accessor("getDayOfWeek", lambda t: (t.weekday() + 1) % 7),
    "getDayOfYear": _timestamp_accessor("getDayOfYear", lambda t: t.timetuple().tm_yday - 1),
    "getHours": _timestamp_accessor("getHours", lambda t: t.hour),
    "getMinutes": _timestamp_accessor("getMinutes", lambda t: t.minute),
    "getSeconds": _timestamp_accessor("getSeconds", lambda t: t.second),
    "getMilliseconds": _timestamp_accessor("getMilliseconds", lambda t: t.microsecond // 1000),
}


# -- conversions -----------------------------------------------------------------------------------


def to_int(value: Any) -> int:
    k = kind(value)
    if k in ("int", "uint"):
        return check_int(int(value))
    if k == "double":
        if math.isnan(value) or not -(2.0**63) < value < 2.0**63:
            raise CelError("int range error")
        return check_int(int(value))
    if k == "string":
        if not re.fullmatch(r"[-+]?\d+", value):
            raise CelError(f"cannot convert {value!r} to int")
        return check_int(int(value))
    if k == "timestamp":
        return int((value - _EPOCH) // datetime.timedelta(seconds=1))
    raise no_overload("int", value)


def to_uint(value: Any) -> UInt:
    k = kind(value)
    if k in ("int", "uint"):
        if value < 0:
            raise CelError("uint range error")
        return check_uint(int(value))
    if k == "double":
        if math.isnan(value) or not -1.0 < value < 2.0**64:
            raise CelError("uint range error")
        return check_uint(int(value))
    if k == "string":
        if not re.fullmatch(r"\+?\d+", value):
            raise CelError(f"cannot convert {value!r} to uint")
        return check_uint(int(value))
    raise no_overload("uint", value)


def to_double(value: Any) -> float:
    k = kind(value)
    if k in ("int", "uint", "double"):
        return float(value)
    if k == "string":
        try:
            return float(value)
        except ValueError:
            raise CelError(f"cannot convert {value!r} to double") from None
    raise no_overload("double", value)


def format_double(value: float) -> str:
    """Go's strconv.FormatFloat(f, 'g', -1, 64), which CEL's string(double) uses."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    # repr() gives the shortest digits that round-trip, like Go's shortest formatting.
    _, digit_tuple, exp = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exp  # position of the decimal point relative to the digits
    x = point - 1
    sign = "-" if value < 0 else ""
    if x < -4 or x >= 6:  # Go: %e when the exponent is < -4 or >= 6 for shortest precision
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def to_string(value: Any) -> str:
    k = kind(value)
    if k == "string":
        return str(value)
    if k in ("int", "uint"):
        return str(int(value))
    if k == "bool":
        return "true" if value else "false"
    if k == "double":
        return format_double(value)
    if k == "bytes":
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise CelError("invalid UTF-8 in bytes, cannot convert to string") from None
    if k == "timestamp":
        return format_timestamp(value)
    if k == "duration":
        return format_duration(value)
    if isinstance(value, ExtensionValue):
        return value.cel_string()
    raise no_overload("string", value)


def to_bytes(value: Any) -> bytes:
    k = kind(value)
    if k == "bytes":
        return bytes(value)
    if k == "string":
        return str(value).encode()
    raise no_overload("bytes", value)


_BOOL_TEXT = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


def to_bool(value: Any) -> bool:
    k = kind(value)
    if k == "bool":
        return bool(value)
    if k == "string" and value in _BOOL_TEXT:
        return _BOOL_TEXT[value]
    raise no_overload("bool", value)


def to_timestamp(value: Any) -> datetime.datetime:
    k = kind(value)
    if k == "timestamp":
        return value  # type: ignore[no-any-return]
    if k == "string":
        return parse_timestamp(value)
    if k == "int":
        return timestamp_from_seconds(value)
    raise no_overload("timestamp", value)


def to_duration(value: Any) -> datetime.timedelta:
    k = kind(value)
    if k == "duration":
        return value  # type: ignore[no-any-return]
    if k == "string":
        return parse_duration(value)
    raise no_overload("duration", value)


def type_of(value: Any) -> CelType:
    k = kind(value)
    name = _KIND_TYPE.get(k)
    return TYPES[name] if name is not None else CelType(k)


def dyn(value: Any) -> Any:
    return value


# -- strings and Mixer's functions ---------------------------------------------------------------


def _strings(name: str, fn: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def call(a: Any, b: Any) -> bool:
        if (type(a) is not str or type(b) is not str) and (
            kind(a) != "string" or kind(b) != "string"
        ):
            raise no_overload(name, a, b)
        return fn(a, b)

    return call


def _mixer(name: str, fn: Callable[..., Any], *kinds: str) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        if len(args) != len(kinds) or any(kind(a) != k for a, k in zip(args, kinds, strict=True)):
            raise no_overload(name, *args)
        try:
            return fn(*args)
        except EvaluationError as err:
            raise CelError(str(err)) from None

    return call


def _matches(text: Any, pattern: Any) -> bool:
    if kind(text) != "string" or kind(pattern) != "string":
        raise no_overload("matches", text, pattern)
    try:
        return ext.regex_matches(pattern, text)
    except EvaluationError as err:
        raise CelError(str(err)) from None


def _conditional(cond: Any, then: Any, otherwise: Any) -> Any:
    if cond is True:
        return then
    if cond is False:
        return otherwise
    raise no_overload("conditional", cond, then, otherwise)


# Functions callable as f(args) and, with the receiver first, as target.f(args).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": size,
    "contains": _strings("contains", lambda a, b: b in a),
    "startsWith": _strings("startsWith", str.startswith),
    "endsWith": _strings("endsWith", str.endswith),
    "matches": _matches,
    "int": to_int,
    "uint": to_uint,
    "double": to_double,
    "string": to_string,
    "bytes": to_bytes,
    "bool": to_bool,
    "timestamp": to_timestamp,
    "duration": to_duration,
    "type": type_of,
    "dyn": dyn,
    **TIME_ACCESSORS,
    # Mixer's functions in CEL (Istio `mixer/pkg/lang/cel/functions.go`).
    "match": _mixer("match", ext.glob_match, "string", "string"),
    "ip": _mixer("ip", ext.parse_ip, "string"),
    "email": _mixer("email", ext.email, "string"),
    "dnsName": _mixer("dnsName", ext.dns_name, "string"),
    "uri": _mixer("uri", ext.uri, "string"),
    "emptyStringMap": _mixer("emptyStringMap", lambda: {}),
    "reverse": _mixer("reverse", lambda s: s[::-1], "string"),
    "toLower": _mixer("toLower", str.lower, "string"),
    "conditional": _conditional,
}
