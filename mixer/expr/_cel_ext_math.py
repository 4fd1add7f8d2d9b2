"""cel-go's math extension library (`ext.Math`): math.greatest/least, ceil, floor, round, trunc,
abs, sign, isNaN, isInf, isFinite and the bit operations.

Results keep CEL's kinds: `math.greatest(1, 2.5)` is the double 2.5, `math.abs(-1)` the int 1.
Integer results stay in int64/uint64 (abs of the smallest int64 is an overflow error; shifts
wrap as Go's do, and a shift by 64 or more gives 0). Other kinds raise "no matching overload".
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable
from typing import Any

from mixer.expr import _cel_runtime as rt
from mixer.expr._cel_library import Library

_MASK64 = (1 << 64) - 1


def _extremum(
    name: str, better: Callable[[Any, Any], bool], python: Callable[..., Any]
) -> Callable[..., Any]:
    def pick(*args: Any) -> Any:
        values: Any = args
        if len(args) == 1 and rt.kind(args[0]) == "list":
            values = args[0]
            if not values:
                raise rt.CelError(f"{name}(list) argument must not be empty")
        kinds = set(map(type, values))
        if len(kinds) == 1 and (int in kinds or float in kinds):
            # One exact kind: Python's max/min keep the first of equals, as the loop below.
            return python(values)
        if not values or any(rt.kind(v) not in rt.NUMERIC for v in values):
            raise rt.no_overload(name, *args)
        best = values[0]
        for value in values[1:]:
            if better(value, best):
                best = value
        return best

    return pick


def _double(name: str, fn: Callable[[float], Any]) -> Callable[[Any], Any]:
    def call(value: Any) -> Any:
        if rt.kind(value) != "double":
            raise rt.no_overload(name, value)
        return fn(value)

    return call


def _round_half_away(value: float) -> float:
    """Go's math.Round: half-way cases away from zero, exactly (no `x + 0.5` rounding error)."""
    if not math.isfinite(value):
        return value
    rounded = decimal.Decimal(value).to_integral_value(rounding=decimal.ROUND_HALF_UP)
    return math.copysign(float(rounded), value)


def _keep_special(fn: Callable[[float], float]) -> Callable[[float], float]:
    def call(value: float) -> float:
        return value if not math.isfinite(value) else math.copysign(float(fn(value)), value)

    return call


def abs_(value: Any) -> Any:
    """`math.abs(x)` for int (overflow error for -2^63), uint and double."""
    k = rt.kind(value)
    if k == "int":
        return rt.check_int(abs(value))
    if k == "uint":
        return value
    if k == "double":
        return abs(value)
    raise rt.no_overload("math.abs", value)


def sign(value: Any) -> Any:
    """`math.sign(x)`: -1, 0 or 1 in the kind of `x` (NaN for NaN)."""
    k = rt.kind(value)
    if k == "int":
        return (value > 0) - (value < 0)
    if k == "uint":
        return rt.UInt(1 if value else 0)
    if k == "double":
        if math.isnan(value) or value == 0:
            return value if math.isnan(value) else 0.0
        return math.copysign(1.0, value)
    raise rt.no_overload("math.sign", value)


def _bits(name: str, op: Callable[[int, int], int]) -> Callable[[Any, Any], Any]:
    def call(a: Any, b: Any) -> Any:
        ka, kb = rt.kind(a), rt.kind(b)
        if ka == kb == "int":
            return op(a, b)  # & | ^ of two int64 values is an int64
        if ka == kb == "uint":
            return rt.UInt(op(a, b))
        raise rt.no_overload(name, a, b)

    return call


def bit_not(value: Any) -> Any:
    """`math.bitNot(x)`: the bitwise complement within int64 or uint64."""
    k = rt.kind(value)
    if k == "int":
        return ~value
    if k == "uint":
        return rt.UInt(_MASK64 ^ value)
    raise rt.no_overload("math.bitNot", value)


def _signed(bits: int) -> int:
    bits &= _MASK64
    return bits - (1 << 64) if bits >= 1 << 63 else bits


def _shift(name: str, left: bool) -> Callable[[Any, Any], Any]:
    def call(value: Any, offset: Any) -> Any:
        k = rt.kind(value)
        if k not in ("int", "uint") or rt.kind(offset) != "int":
            raise rt.no_overload(name, value, offset)
        if offset < 0:
            raise rt.CelError(f"{name}() negative offset: {offset}")
        if offset >= 64:
            return 0 if k == "int" else rt.UInt(0)
        # Go shifts the two's complement bits: a right shift of an int is a logical one.
        bits = value << offset if left else (value & _MASK64) >> offset
        return _signed(bits) if k == "int" else rt.UInt(bits & _MASK64)

    return call


LIBRARY = Library(
    name="math",
    summary="math.greatest/least, ceil/floor/round/trunc, abs, sign, isNaN/isInf, bit operations",
    functions={
        "math.greatest": _extremum("math.greatest", lambda a, b: rt.compare("_>_", a, b) == 1, max),
        "math.least": _extremum("math.least", lambda a, b: rt.compare("_<_", a, b) == -1, min),
        "math.ceil": _double("math.ceil", _keep_special(math.ceil)),
        "math.floor": _double("math.floor", _keep_special(math.floor)),
        "math.round": _double("math.round", _round_half_away),
        "math.trunc": _double("math.trunc", _keep_special(math.trunc)),
        "math.abs": abs_,
        "math.sign": sign,
        "math.isNaN": _double("math.isNaN", math.isnan),
        "math.isInf": _double("math.isInf", math.isinf),
        "math.isFinite": _double("math.isFinite", math.isfinite),
        "math.bitAnd": _bits("math.bitAnd", lambda a, b: a & b),
        "math.bitOr": _bits("math.bitOr", lambda a, b: a | b),
        "math.bitXor": _bits("math.bitXor", lambda a, b: a ^ b),
        "math.bitNot": bit_not,
        "math.bitShiftLeft": _shift("math.bitShiftLeft", left=True),
        "math.bitShiftRight": _shift("math.bitShiftRight", left=False),
    },
    results={
        "math.ceil": "double",
        "math.floor": "double",
        "math.round": "double",
        "math.trunc": "double",
        "math.isNaN": "bool",
        "math.isInf": "bool",
        "math.isFinite": "bool",
    },
)
