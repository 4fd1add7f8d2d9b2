"""Parsing handler params into typed values, raising `ParamError` with the field's path."""

from __future__ import annotations

import datetime
import enum
import itertools
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from adapters.base import ParamError


def duration_param(value: Any, path: str) -> datetime.timedelta:
    """Parse a duration as Istio wrote them: ``"10s"``, ``"1.5s"``, ``"100ms"``, ``"1h2m"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.timedelta(seconds=value)
    if not isinstance(value, str) or not value:
        raise ParamError(path, f"expected a duration such as '10s', got {value!r}")
    units = {
        "ns": 1e-9,
        "us": 1e-6,
        "µs": 1e-6,
        "ms": 1e-3,
        "s": 1.0,
        "m": 60.0,
        "h": 3600.0,
    }
    text = value.strip()
    total = 0.0
    pos = 0
    sign = 1.0
    if text[:1] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        pos = 1
    if text[pos:] == "0":
        return datetime.timedelta(0)
    matched_any = False
    while pos < len(text):
        start = pos
        while pos < len(text) and (text[pos].isdigit() or text[pos] == "."):
            pos += 1
        number = text[start:pos]
        ustart = pos
        while pos < len(text) and not (text[pos].isdigit() or text[pos] == "."):
            pos += 1
        unit = text[ustart:pos]
        if not number or unit not in units:
            raise ParamError(path, f"expected a duration such as '10s', got {value!r}")
        try:
            total += float(number) * units[unit]
        except ValueError:
            raise ParamError(path, f"expected a duration such as '10s', got {value!r}") from None
        matched_any = True
    if not matched_any:
        raise ParamError(path, f"expected a duration such as '10s', got {value!r}")
    return datetime.timedelta(seconds=sign * total)


def positive_duration_param(value: Any, path: str) -> datetime.timedelta:
    """`duration_param` that must be > 0 (error ``must be > 0``)."""
    parsed = duration_param(value, path)
    if parsed <= datetime.timedelta(0):
        raise ParamError(path, "must be > 0")
    return parsed


# --- params: keys -----------------------------------------------------------------------------


def camel_case(key: str) -> str:
    """``max_amount`` → ``maxAmount``; a camelCase key is returned unchanged."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def join_path(path: str, key: str) -> str:
    """The param path of `key` inside `path` (``a.b``; just `key` at the top level)."""
    return f"{path}.{key}" if path else key


def param_fields(
    raw: object,
    path: str,
    allowed: Collection[str],
    *,
    string_keys: bool = False,
    sorted_hint: bool = False,
) -> dict[str, Any]:
    """`raw`'s entries keyed by camelCase name; snake_case is accepted.

    Errors: `raw` not a mapping; an unknown key; a key given both ways. With `string_keys`, a
    key that is not a string is an error of its own (otherwise it is compared as text). The
    unknown-key error names the key as given and lists `allowed` in order after a semicolon;
    with `sorted_hint` (the quota adapters' wording) it names the key in camelCase and lists
    `allowed` sorted, in parentheses.
    """
    if not isinstance(raw, Mapping):
        raise ParamError(path, f"expected a mapping, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if string_keys and not isinstance(key, str):
            raise ParamError(path, f"field names must be strings, got {key!r}")
        camel = camel_case(str(key))
        if camel not in allowed:
            if sorted_hint:
                expected = ", ".join(sorted(allowed))
                raise ParamError(
                    join_path(path, camel), f"unknown field (expected one of {expected})"
                )
            raise ParamError(
                join_path(path, str(key)), f"unknown field; expected one of {', '.join(allowed)}"
            )
        if camel in out:
            raise ParamError(join_path(path, camel), "given twice (camelCase and snake_case)")
        out[camel] = value
    return out


def canonical_fields(
    raw: Any, fields: Mapping[str, str], prefix: str, hints: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Key `raw` by the camelCase names of `fields` (camelCase → snake_case), accepting either.

    None is no entries. Unknown or doubled keys are errors at ``<prefix><key>``; `hints` adds
    text to the unknown-key error of particular keys.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ParamError(prefix.rstrip("."), f"expected a mapping, got {raw!r}")
    snake_to_camel = {snake: camel for camel, snake in fields.items()}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key if key in fields else snake_to_camel.get(key)
        if name is None:
            hint = (hints or {}).get(key, "")
            raise ParamError(f"{prefix}{key}", f"unknown field{hint}")
        if name in out:
            raise ParamError(f"{prefix}{name}", "given twice (camelCase and snake_case)")
        out[name] = value
    return out


# --- params: values ---------------------------------------------------------------------------

_E = TypeVar("_E", bound=enum.Enum)


def string_param(value: object, path: str) -> str:
    """`value`, which must be a string."""
    if not isinstance(value, str):
        raise ParamError(path, f"expected a string, got {value!r}")
    return value


def number_param(value: object, path: str) -> float:
    """`value` as a float; it must be an int or a float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(path, f"expected a number, got {value!r}")
    return float(value)


def positive_int_param(value: object, path: str) -> int:
    """`value`, which must be an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamError(path, f"expected a positive integer, got {value!r}")
    return value


def int_range_param(value: Any, path: str, low: int, high: int) -> int:
    """An int, or a string of one, between `low` and `high` inclusive."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ParamError(path, f"expected an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ParamError(path, f"expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ParamError(path, f"must be between {low} and {high}, got {number}")
    return number


def struct_int_param(value: Any, path: str, minimum: int) -> int:
    """An integer >= `minimum`, also as protobuf Struct sends it (a whole float) or proto3 JSON
    writes int64 (a string of digits)."""
    if isinstance(value, bool):
        raise ParamError(path, f"expected an integer, got {value!r}")
    if (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.strip().lstrip("-").isdigit()
    ):
        value = int(value)
    if not isinstance(value, int):
        raise ParamError(path, f"expected an integer, got {value!r}")
    if value < minimum:
        raise ParamError(path, f"must be >= {minimum}, got {value}")
    return value


def enum_param(kind: type[_E], value: object, path: str) -> _E:
    """A member of `kind` by exact name, or by value for an int (not a bool)."""
    if isinstance(value, str) and value in kind.__members__:
        return kind[value]
    if isinstance(value, int) and not isinstance(value, bool):
        for member in kind:
            if member.value == value:
                return member
    raise ParamError(path, f"must be one of {', '.join(kind.__members__)}, got {value!r}")


def histogram_buckets(raw: object, path: str, *, string_keys: bool = False) -> tuple[float, ...]:
    """Mixer's bucket spec: exactly one of ``explicitBuckets: {bounds}``, ``linearBuckets:
    {numFiniteBuckets, width, offset}``, ``exponentialBuckets: {numFiniteBuckets, growthFactor,
    scale}``, as the bucket bounds. `string_keys` as for `param_fields`."""
    spec = param_fields(
        raw,
        path,
        ("linearBuckets", "exponentialBuckets", "explicitBuckets"),
        string_keys=string_keys,
    )
    if len(spec) != 1:
        raise ParamError(
            path, "exactly one of linearBuckets, exponentialBuckets, explicitBuckets is required"
        )
    ((which, body),) = spec.items()
    where = join_path(path, which)
    if which == "explicitBuckets":
        bounds_raw = param_fields(body, where, ("bounds",), string_keys=string_keys).get("bounds")
        if not isinstance(bounds_raw, list) or not bounds_raw:
            raise ParamError(join_path(where, "bounds"), "expected a non-empty list of numbers")
        bounds = tuple(number_param(b, f"{where}.bounds[{i}]") for i, b in enumerate(bounds_raw))
        if any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ParamError(join_path(where, "bounds"), "bounds must be strictly increasing")
        return bounds
    if which == "linearBuckets":
        fields = param_fields(
            body, where, ("numFiniteBuckets", "width", "offset"), string_keys=string_keys
        )
        n = positive_int_param(fields.get("numFiniteBuckets"), join_path(where, "numFiniteBuckets"))
        width = number_param(fields.get("width"), join_path(where, "width"))
        offset = number_param(fields.get("offset", 0), join_path(where, "offset"))
        if width <= 0:
            raise ParamError(join_path(where, "width"), f"must be > 0, got {width}")
        return tuple(offset + width * i for i in range(n + 1))
    fields = param_fields(
        body, where, ("numFiniteBuckets", "growthFactor", "scale"), string_keys=string_keys
    )
    n = positive_int_param(fields.get("numFiniteBuckets"), join_path(where, "numFiniteBuckets"))
    growth = number_param(fields.get("growthFactor"), join_path(where, "growthFactor"))
    scale = number_param(fields.get("scale"), join_path(where, "scale"))
    if growth <= 1:
        raise ParamError(join_path(where, "growthFactor"), f"must be > 1, got {growth}")
    if scale <= 0:
        raise ParamError(join_path(where, "scale"), f"must be > 0, got {scale}")
    return tuple(scale * growth**i for i in range(n + 1))
