"""cel-go's optional values (`cel.OptionalTypes`): optional.of/none/ofNonZeroValue, hasValue,
value, orValue, or, the macros optMap/optFlatMap and the syntax `a.?f`, `a[?k]`, `[?e]`,
`{?k: v}` (parsed by `_cel_parser`, compiled by `_cel_compiler` with the functions here).

Selecting a field of, or indexing, an optional gives an optional: none stays none, and a
missing map key or list index becomes none; anything else behaves as on the value itself (a
field of an int is still an error).
"""

from __future__ import annotations

import datetime
from typing import Any

from mixer.expr import _cel_runtime as rt
from mixer.expr._cel_library import Library

# The value of none, and what `element` returns for it.
ABSENT: Any = object()
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class Optional(rt.ExtensionValue):
    """A CEL optional: a value, or none (`Optional()`)."""

    __slots__ = ("value",)
    CEL_KIND = "optional_type"

    def __init__(self, value: Any = ABSENT) -> None:
        self.value = value

    @property
    def has_value(self) -> bool:
        return self.value is not ABSENT

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Optional) or self.has_value != other.has_value:
            return False
        return not self.has_value or rt.equal(self.value, other.value)

    __hash__ = None  # type: ignore[assignment]  # not a map key, as in CEL

    def __repr__(self) -> str:
        return f"optional.of({self.value!r})" if self.has_value else "optional.none()"

    def cel_select(self, field: str) -> Optional:
        return select(self, field)

    def cel_index(self, key: Any) -> Optional:
        return index(self, key)

    def cel_has(self, field: str) -> bool:
        return self.has_value and rt.has_field(self.value, field)


NONE = Optional()


def select(operand: Any, field: str) -> Optional:
    """`operand.?field`, and `operand.field` on an optional."""
    if isinstance(operand, Optional):
        if not operand.has_value:
            return NONE
        operand = operand.value
    if rt.kind(operand) == "map":
        value = operand.get(field, ABSENT)
        return NONE if value is ABSENT else Optional(value)
    return Optional(rt.select(operand, field))


def index(operand: Any, key: Any) -> Optional:
    """`operand[?key]`, and `operand[key]` on an optional."""
    if isinstance(operand, Optional):
        if not operand.has_value:
            return NONE
        operand = operand.value
    k = rt.kind(operand)
    if k == "map":
        value = rt.map_get(operand, key)
        return NONE if value is rt.MISSING else Optional(value)
    if k == "list" and rt.kind(key) in ("int", "uint") and not 0 <= key < len(operand):
        return NONE
    return Optional(rt.index(operand, key))


def lookup(operand: Any, key: Any) -> Any:
    """The value `operand[?key]` holds, or ABSENT for none: `index` without building the
    optional, for `operand[?key].orValue(default)`."""
    if type(key) is str:
        # A map by its `get` (a TrackedStringMap records the read); no other CEL value has one.
        try:
            return operand.get(key, ABSENT)
        except AttributeError:
            pass
    if isinstance(operand, Optional):
        if not operand.has_value:
            return ABSENT
        operand = operand.value
    k = rt.kind(operand)
    if k == "map":
        value = rt.map_get(operand, key)
        return ABSENT if value is rt.MISSING else value
    if k == "list" and rt.kind(key) in ("int", "uint") and not 0 <= key < len(operand):
        return ABSENT
    return rt.index(operand, key)


def element(value: Any, what: str) -> Any:
    """The value of an optional element of a list or map literal (`[?e]`), or ABSENT."""
    if not isinstance(value, Optional):
        raise rt.CelError(f"{what} marked '?' must be an optional, got {rt.kind(value)}")
    return value.value


def _optional(name: str, value: Any) -> Optional:
    if not isinstance(value, Optional):
        raise rt.no_overload(name, value)
    return value


def of(value: Any) -> Optional:
    """`optional.of(x)`."""
    return Optional(value)


def none() -> Optional:
    """`optional.none()`."""
    return NONE


def _is_zero(value: Any) -> bool:
    k = rt.kind(value)
    if k in ("null", "bool", "int", "uint", "double", "string", "bytes", "list", "map"):
        return not value
    if k == "duration":
        return bool(value == datetime.timedelta(0))
    if k == "timestamp":
        return bool(value == _EPOCH)
    return False


def of_non_zero_value(value: Any) -> Optional:
    """`optional.ofNonZeroValue(x)`: none for null, false, 0, "", [], {} and the like."""
    return NONE if _is_zero(value) else Optional(value)


def has_value(opt: Any) -> bool:
    """`o.hasValue()`."""
    return _optional("hasValue", opt).has_value


def value(opt: Any) -> Any:
    """`o.value()`: an error for none."""
    found = _optional("value", opt)
    if not found.has_value:
        raise rt.CelError("optional.none() dereference")
    return found.value


def or_value(opt: Any, default: Any) -> Any:
    """`o.orValue(default)`."""
    found = _optional("orValue", opt)
    return found.value if found.has_value else default


def or_(opt: Any, other: Any) -> Optional:
    """`o.or(other)`: `o` if it has a value, else the optional `other`."""
    found = _optional("or", opt)
    return found if found.has_value else _optional("or", other)


LIBRARY = Library(
    name="optionals",
    summary="optional values: optional.of/none, hasValue, orValue, or, a.?f, a[?k], optMap",
    functions={
        "optional.of": of,
        "optional.none": none,
        "optional.ofNonZeroValue": of_non_zero_value,
        "hasValue": has_value,
        "value": value,
        "orValue": or_value,
        "or": or_,
    },
    results={"hasValue": "bool"},
    types=("optional_type",),
    macros=frozenset({"?", "optMap", "optFlatMap"}),
)
