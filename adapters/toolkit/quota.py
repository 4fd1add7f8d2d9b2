"""Quota configuration shared by memquota and redisquota: params, overrides, name lookup."""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from adapters.base import ParamError
from adapters.toolkit.params import (
    duration_param,
    param_fields,
    positive_duration_param,
    struct_int_param,
)
from mixer.attributes.bag import StringMap


class RateLimitAlgorithm(enum.Enum):
    """A rate-limit algorithm (``rateLimitAlgorithm``)."""

    FIXED_WINDOW = "FIXED_WINDOW"
    ROLLING_WINDOW = "ROLLING_WINDOW"
    TOKEN_BUCKET = "TOKEN_BUCKET"


@dataclass(frozen=True, slots=True)
class Override:
    """Limits for instances whose dimensions equal all of `dimensions`.

    `burst` is set exactly when the quota's algorithm is TOKEN_BUCKET: the override's own
    ``burst``, else its own `max_amount`, never the quota's burst (see `parse_quotas`).
    """

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
    align_to_epoch: bool = False
    """FIXED_WINDOW only: windows start at multiples of validDuration since the Unix epoch
    (as envoyproxy/ratelimit's), not at the first grant."""


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
        "alignToEpoch",
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
    burst = _burst(f, path, algorithm)
    if burst is None and algorithm is RateLimitAlgorithm.TOKEN_BUCKET:
        # An override that lowers maxAmount must not keep the default's larger burst: its
        # bucket holds what it says, as a quota's bucket without `burst` holds maxAmount.
        burst = max_amount
    return Override(
        dimensions=MappingProxyType({str(k): dimension_text(v) for k, v in dims.items()}),
        max_amount=max_amount,
        valid_duration=valid,
        burst=burst,
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
    align = f.get("alignToEpoch", False)
    if not isinstance(align, bool):
        raise ParamError(f"{path}.alignToEpoch", f"expected true or false, got {align!r}")
    if align and alg is not RateLimitAlgorithm.FIXED_WINDOW:
        raise ParamError(f"{path}.alignToEpoch", "applies only to rateLimitAlgorithm FIXED_WINDOW")
    return QuotaConfig(name.strip(), max_amount, valid, bucket, alg, burst, parsed, align)


def parse_quotas(
    raw: Any,
    path: str,
    *,
    default_algorithm: RateLimitAlgorithm | None,
    require_valid_duration: bool,
) -> tuple[QuotaConfig, ...]:
    """Parse a quota adapter's ``quotas`` list (at `path`): a non-empty list of distinct names.

    Keys are camelCase or snake_case. `default_algorithm` applies when ``rateLimitAlgorithm`` is
    absent. ``alignToEpoch`` (FIXED_WINDOW only) starts windows at multiples of
    ``validDuration`` since the Unix epoch. With `require_valid_duration` (Istio's redisquota),
    ``validDuration`` is required
    and every ``validDuration`` must be > 0; otherwise (Istio's memquota) it defaults to 0 and
    must be > 0 only when an algorithm is set. ``burst`` needs TOKEN_BUCKET and defaults to
    ``maxAmount``; an override's ``burst`` defaults to the override's own ``maxAmount``, never
    to the quota's ``burst``. ``bucketDuration`` must lie between 1ms and ``validDuration`` for
    ROLLING_WINDOW.
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
