"""The adapter contract: everything an adapter needs from mixer, and all it must provide.

An adapter is one module exposing an `AdapterInfo`. Mixer calls `parse_params` at load time (pure:
no I/O, so `mixer validate` never dials a network service), then `build` once per handler config.
The handler it returns implements one or more of `CheckHandler`, `QuotaHandler`, `ReportHandler`
for the templates the adapter declares, and `close()`.

Adapters import only this module.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import itertools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from prometheus_client import CollectorRegistry

from mixer.attributes.bag import StringMap
from mixer.templates import TEMPLATES, Template, Variety

__all__ = [
    "TEMPLATES",
    "AdapterInfo",
    "CheckHandler",
    "CheckResult",
    "DirectResponse",
    "Env",
    "Handler",
    "Instance",
    "Override",
    "ParamError",
    "QuotaArgs",
    "QuotaConfig",
    "QuotaHandler",
    "QuotaNames",
    "QuotaResult",
    "RateLimitAlgorithm",
    "ReportHandler",
    "StringMap",
    "Template",
    "Variety",
    "camel_case",
    "canonical_fields",
    "dimension_text",
    "duration_param",
    "enum_param",
    "go_duration",
    "histogram_buckets",
    "int_range_param",
    "ip_text",
    "join_path",
    "metric_value",
    "number_param",
    "param_fields",
    "parse_quotas",
    "positive_duration_param",
    "positive_int_param",
    "string_param",
    "struct_int_param",
    "zap_time",
]

# gRPC status codes, by number, as adapters report them (google.rpc.Code).
OK = 0
INVALID_ARGUMENT = 3
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16


class ParamError(ValueError):
    """A handler's params are invalid. `path` names the field, e.g. ``quotas[0].maxAmount``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class Instance(NamedTuple):
    """One built instance: its fully-qualified name, template and evaluated fields.

    Field values are bag values (see `mixer.attributes.bag`); map fields (``dimensions``,
    ``variables`` …) are plain dicts of such values.
    """

    name: str
    template: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DirectResponse:
    """An HTTP answer a denial asks the proxy to send instead of forwarding."""

    code: int = 0
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


class CheckResult(NamedTuple):
    """The answer of a check handler. status_code 0 is OK; anything else denies."""

    status_code: int = OK
    message: str = ""
    valid_duration: datetime.timedelta = datetime.timedelta(seconds=60)
    valid_use_count: int = 10000
    direct_response: DirectResponse | None = None


class QuotaArgs(NamedTuple):
    """One quota allocation request. `dedup_id` is unique per logical call (reused on retries)."""

    amount: int
    best_effort: bool = False
    dedup_id: str = ""


class QuotaResult(NamedTuple):
    """The answer of a quota handler.

    `granted` 0 with an OK status is a denial, as in Mixer. `limit`, `remaining` and
    `reset_after` describe the bucket for rate-limit headers when the adapter knows them.
    """

    granted: int
    valid_duration: datetime.timedelta = datetime.timedelta(0)
    status_code: int = OK
    message: str = ""
    limit: int | None = None
    remaining: int | None = None
    reset_after: datetime.timedelta | None = None


@dataclass(frozen=True)
class Env:
    """What mixer hands an adapter when building a handler."""

    handler_name: str
    logger: logging.Logger
    registry: CollectorRegistry
    clock: Callable[[], float]


@runtime_checkable
class Handler(Protocol):
    """A built handler. `close` releases connections, threads and registered metrics.

    A handler whose `check`/`quota` coroutines never wait (they answer from process memory)
    may set a class attribute ``answers_inline = True``: mixer then awaits them in place,
    without a task or a timer per call. A timeout could not interrupt such a handler anyway;
    a handler that does I/O must leave it unset, so that a hang is cut off by the timeout.
    """

    async def close(self) -> None: ...


@runtime_checkable
class CheckHandler(Handler, Protocol):
    """Answers CHECK instances (checknothing, listentry, apikey, authorization)."""

    async def check(self, instance: Instance) -> CheckResult: ...


@runtime_checkable
class QuotaHandler(Handler, Protocol):
    """Allocates QUOTA instances."""

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult: ...


@runtime_checkable
class ReportHandler(Handler, Protocol):
    """Takes REPORT instances (metric, logentry, tracespan) in batches."""

    async def report(self, instances: Sequence[Instance]) -> None: ...


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter module exports.

    `parse_params` turns the YAML params into the adapter's own typed params object, raising
    `ParamError`; it must not do I/O. `build` makes a handler from those params.
    """

    name: str
    description: str
    templates: frozenset[str]
    parse_params: Callable[[Mapping[str, Any]], Any]
    build: Callable[[Any, Env], Handler]


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


# --- instance values as text ------------------------------------------------------------------


def go_duration(value: datetime.timedelta) -> str:
    """A duration as Go's ``time.Duration.String`` writes it: ``1.5s``, ``2m0s``, ``150ms``."""
    nanos = (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1_000
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, scale in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if nanos < scale * 1_000:
                return sign + _decimal(nanos, scale) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _decimal(value: int, scale: int) -> str:
    """`value` / `scale` (a power of ten) in decimal, without trailing zeros."""
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(len(str(scale)) - 1, '0').rstrip('0')}"


def ip_text(value: bytes) -> str | None:
    """4 or 16 address bytes as text (an IPv4-mapped IPv6 address as IPv4, as Go prints it);
    None for any other length."""
    if len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    if len(value) == 16:
        address = ipaddress.IPv6Address(value)
        return str(address.ipv4_mapped or address)
    return None


def zap_time(value: datetime.datetime) -> str:
    """A timestamp as Mixer's logs wrote it: ``2006-01-02T15:04:05.000000Z`` (UTC; naive is UTC)."""
    utc = value.astimezone(datetime.UTC) if value.tzinfo else value
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def metric_value(value: object) -> float:
    """An instance value as a float: numbers as is, durations in seconds, numeric strings parsed."""
    if isinstance(value, bool):
        raise ValueError(f"could not extract numeric value for {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"could not extract numeric value for {value!r}") from None
    raise ValueError(f"could not extract numeric value for {value!r}")


# --- quota params (memquota, redisquota) ------------------------------------------------------


class RateLimitAlgorithm(enum.Enum):
    """A rate-limit algorithm (``rateLimitAlgorithm``)."""

    FIXED_WINDOW = "FIXED_WINDOW"
    ROLLING_WINDOW = "ROLLING_WINDOW"
    TOKEN_BUCKET = "TOKEN_BUCKET"


@dataclass(frozen=True, slots=True)
class Override:
    """Limits for instances whose dimensions equal all of `dimensions`."""

    dimensions: Mapping[str, str]
    max_amount: int
    valid_duration: datetime.timedelta | None = None
    burst: int | None = None


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """One configured quota. `algorithm` None means Istio's memquota behaviour."""

    name: str
    max_amount: int
    valid_duration: datetime.timedelta
    bucket_duration: datetime.timedelta | None = None
    algorithm: RateLimitAlgorithm | None = None
    burst: int | None = None
    overrides: tuple[Override, ...] = ()


def dimension_text(value: Any) -> str:
    """A dimension value as text, the way both quota config and instances are compared and keyed."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        if len(value) in (4, 16):
            return str(ipaddress.ip_address(value))
        return value.hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, StringMap | Mapping):
        return ",".join(f"{k}={dimension_text(v)}" for k, v in sorted(value.items()))
    return str(value)


_MIN_BUCKET = datetime.timedelta(milliseconds=1)
_QUOTA_FIELDS = frozenset(
    {
        "name",
        "maxAmount",
        "validDuration",
        "bucketDuration",
        "rateLimitAlgorithm",
        "burst",
        "overrides",
    }
)
_OVERRIDE_FIELDS = frozenset({"dimensions", "maxAmount", "validDuration", "burst"})


def _rate_limit_algorithm(value: Any, path: str) -> RateLimitAlgorithm:
    if isinstance(value, str):
        try:
            return RateLimitAlgorithm(value.strip().upper())
        except ValueError:
            pass
    names = ", ".join(a.value for a in RateLimitAlgorithm)
    raise ParamError(path, f"expected one of {names}, got {value!r}")


def _valid_duration(
    value: Any, path: str, algorithm: RateLimitAlgorithm | None, positive: bool
) -> datetime.timedelta:
    if positive:
        return positive_duration_param(value, path)
    valid = duration_param(value, path)
    if valid < datetime.timedelta(0):
        raise ParamError(path, "must not be negative")
    if algorithm is not None and valid <= datetime.timedelta(0):
        raise ParamError(path, f"must be > 0 with rateLimitAlgorithm {algorithm.value}")
    return valid


def _burst(f: Mapping[str, Any], path: str, algorithm: RateLimitAlgorithm | None) -> int | None:
    if "burst" not in f:
        return None
    if algorithm is not RateLimitAlgorithm.TOKEN_BUCKET:
        raise ParamError(f"{path}.burst", "burst applies only to rateLimitAlgorithm TOKEN_BUCKET")
    return struct_int_param(f["burst"], f"{path}.burst", 1)


def _override(
    raw: Any, path: str, algorithm: RateLimitAlgorithm | None, positive: bool
) -> Override:
    f = param_fields(raw, path, _OVERRIDE_FIELDS, sorted_hint=True)
    dims = f.get("dimensions")
    if not isinstance(dims, Mapping) or not dims:
        raise ParamError(f"{path}.dimensions", "expected a non-empty map of dimension values")
    if "maxAmount" not in f:
        raise ParamError(f"{path}.maxAmount", "required")
    max_amount = struct_int_param(f["maxAmount"], f"{path}.maxAmount", 1)
    valid: datetime.timedelta | None = None
    if "validDuration" in f:
        valid = _valid_duration(f["validDuration"], f"{path}.validDuration", algorithm, positive)
    return Override(
        dimensions=MappingProxyType({str(k): dimension_text(v) for k, v in dims.items()}),
        max_amount=max_amount,
        valid_duration=valid,
        burst=_burst(f, path, algorithm),
    )


def _quota(
    raw: Any, path: str, default_algorithm: RateLimitAlgorithm | None, required: bool
) -> QuotaConfig:
    f = param_fields(raw, path, _QUOTA_FIELDS, sorted_hint=True)
    name = f.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParamError(f"{path}.name", "required: the quota instance's name")
    if "maxAmount" not in f:
        raise ParamError(f"{path}.maxAmount", "required")
    max_amount = struct_int_param(f["maxAmount"], f"{path}.maxAmount", 1)
    if required and "validDuration" not in f:
        raise ParamError(f"{path}.validDuration", "required")
    alg = default_algorithm
    if f.get("rateLimitAlgorithm") is not None:
        alg = _rate_limit_algorithm(f["rateLimitAlgorithm"], f"{path}.rateLimitAlgorithm")
    valid = _valid_duration(f.get("validDuration", 0), f"{path}.validDuration", alg, required)
    bucket: datetime.timedelta | None = None
    if f.get("bucketDuration") is not None:
        bucket = duration_param(f["bucketDuration"], f"{path}.bucketDuration")
        if alg is RateLimitAlgorithm.ROLLING_WINDOW and not _MIN_BUCKET <= bucket <= valid:
            raise ParamError(
                f"{path}.bucketDuration", "must be between 1ms and validDuration for ROLLING_WINDOW"
            )
    burst = _burst(f, path, alg)
    overrides = f.get("overrides") or []
    if not isinstance(overrides, Sequence) or isinstance(overrides, str):
        raise ParamError(f"{path}.overrides", "expected a list")
    parsed = tuple(
        _override(o, f"{path}.overrides[{i}]", alg, required) for i, o in enumerate(overrides)
    )
    return QuotaConfig(name.strip(), max_amount, valid, bucket, alg, burst, parsed)


def parse_quotas(
    raw: Any,
    path: str,
    *,
    default_algorithm: RateLimitAlgorithm | None,
    require_valid_duration: bool,
) -> tuple[QuotaConfig, ...]:
    """Parse a quota adapter's ``quotas`` list (at `path`): a non-empty list of distinct names.

    Keys are camelCase or snake_case. `default_algorithm` applies when ``rateLimitAlgorithm`` is
    absent. With `require_valid_duration` (Istio's redisquota), ``validDuration`` is required
    and every ``validDuration`` must be > 0; otherwise (Istio's memquota) it defaults to 0 and
    must be > 0 only when an algorithm is set. ``burst`` needs TOKEN_BUCKET; ``bucketDuration``
    must lie between 1ms and ``validDuration`` for ROLLING_WINDOW.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ParamError(path, "required: a non-empty list of quotas")
    parsed = tuple(
        _quota(q, f"{path}[{i}]", default_algorithm, require_valid_duration)
        for i, q in enumerate(raw)
    )
    seen: set[str] = set()
    for i, q in enumerate(parsed):
        if q.name in seen:
            raise ParamError(f"{path}[{i}].name", f"duplicate quota name {q.name!r}")
        seen.add(q.name)
    return parsed


class QuotaNames:
    """Finds an instance's quota config by its FQN, tolerating the naming styles Istio allowed.

    Exact name first; then ``short.<any kind>.namespace`` (``x.instance.ns`` and the legacy
    ``x.quota.ns`` name the same instance); then a config written with the bare short name.
    """

    def __init__(self, quotas: Sequence[QuotaConfig]) -> None:
        self._exact = {q.name: q for q in quotas}
        self._by_short_ns: dict[tuple[str, str], QuotaConfig] = {}
        self._by_short: dict[str, QuotaConfig] = {}
        for q in quotas:
            parts = q.name.split(".")
            if len(parts) >= 3:
                self._by_short_ns.setdefault((parts[0], parts[-1]), q)
            elif len(parts) == 1:
                self._by_short.setdefault(q.name, q)

    def find(self, instance_name: str) -> QuotaConfig | None:
        """The config for `instance_name`, or None."""
        found = self._exact.get(instance_name)
        if found is not None:
            return found
        parts = instance_name.split(".")
        if len(parts) >= 3:
            found = self._by_short_ns.get((parts[0], parts[-1]))
            if found is not None:
                return found
        return self._by_short.get(parts[0])
