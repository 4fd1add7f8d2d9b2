"""Envoy's rate limit service v3 (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`).

The request's domain and descriptors go to the current runtime's `RateLimitTable` (see
`mixer.runtime.ratelimit` and ``docs/ratelimit.md``); the answer carries ``overall_code``, one
status per request descriptor in request order, and rate-limit response headers in one of the
`HEADER_MODES`. A backend failure is a gRPC UNAVAILABLE error (so Envoy's
``failure_mode_deny`` applies), never ``overall_code: UNKNOWN``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from mixer.api.ratelimit_stats import RuleStats
from mixer.api.status import unary_handler
from mixer.api.threaded import LoopBridge
from mixer.attributes.limits import DEFAULT_LIMITS, Limits
from mixer.envoy.config.core.v3 import base_pb2
from mixer.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from mixer.envoy.service.ratelimit.v3 import rls_pb2
from mixer.errors import BadRequest, LimitExceeded, NotConfigured
from mixer.runtime.ratelimit import (
    UNIT_SECONDS,
    Code,
    Decision,
    DescriptorDecision,
    Override,
    RateLimitTable,
)
from mixer.runtime.runtime import Runtime, RuntimeHolder
from mixer.telemetry import ServerMetrics

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"

HEADER_MODES = ("draft", "ietf", "ratelimit", "off")
"""``draft``: Envoy's ``x-ratelimit-*`` (draft-polli-ratelimit-headers-03); ``ietf``: the
``RateLimit-Policy``/``RateLimit`` structured fields of draft-ietf-httpapi-ratelimit-headers
(08 and later); ``ratelimit``: envoyproxy/ratelimit's ``RateLimit-Limit``/``-Remaining``/
``-Reset``; ``off``: none (e.g. when Envoy's ``enable_x_ratelimit_headers`` makes them)."""

_Unit = rls_pb2.RateLimitResponse.RateLimit.Unit
_UNITS = {
    "second": _Unit.SECOND,
    "minute": _Unit.MINUTE,
    "hour": _Unit.HOUR,
    "day": _Unit.DAY,
    "week": _Unit.WEEK,
    "month": _Unit.MONTH,
    "year": _Unit.YEAR,
}
_CODES = {
    Code.OK: rls_pb2.RateLimitResponse.OK,
    Code.OVER_LIMIT: rls_pb2.RateLimitResponse.OVER_LIMIT,
}

Entries = list[tuple[str, str]]
# Descriptors handled between two yields to the event loop (see `mixer.runtime.ratelimit`).
_SLICE = 64
TableOf = Callable[[Runtime], RateLimitTable]


def _reset_seconds(status: DescriptorDecision) -> int:
    """Whole seconds until reset, rounded up so a client never retries before the window ends."""
    return math.ceil(status.reset_after.total_seconds())


def _window(status: DescriptorDecision) -> int:
    assert status.rule is not None
    return UNIT_SECONDS[status.rule.policy.unit]


def draft_headers(statuses: Sequence[DescriptorDecision]) -> list[tuple[str, str]]:
    """Envoy's DRAFT_VERSION_03 headers: the limit closest to exhaustion, plus every policy.

    ``x-ratelimit-limit: 10, 10;w=60, 1000;w=3600;name="daily"`` (as Envoy's own
    ``XRateLimitHeaderUtils`` builds it), ``x-ratelimit-remaining``, ``x-ratelimit-reset``.
    """
    limited = [s for s in statuses if s.limited]
    if not limited:
        return []
    closest = min(limited, key=lambda s: s.remaining)  # first of equals, as Envoy
    policies = ""
    for s in limited:
        assert s.rule is not None
        policies += f", {s.rule.policy.requests_per_unit};w={_window(s)}"
        if s.rule.policy.name:
            policies += f';name="{s.rule.policy.name}"'
    assert closest.rule is not None
    return [
        ("x-ratelimit-limit", f"{closest.rule.policy.requests_per_unit}{policies}"),
        ("x-ratelimit-remaining", str(closest.remaining)),
        ("x-ratelimit-reset", str(_reset_seconds(closest))),
    ]


def _sf_string(text: str) -> str:
    """An RFC 8941 sf-string: printable ASCII only, with ``\\`` and ``"`` escaped."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ietf_headers(statuses: Sequence[DescriptorDecision]) -> list[tuple[str, str]]:
    """``RateLimit-Policy: "name";q=10;w=60`` (each rule once) and ``RateLimit: "name";r=3;t=42``
    (each limited descriptor). A rule without a ``name`` is named by its descriptor path."""
    limited = [s for s in statuses if s.limited]
    if not limited:
        return []
    policies: dict[str, str] = {}
    live: list[str] = []
    for s in limited:
        assert s.rule is not None
        name = _sf_string(s.rule.policy.name or s.rule.path)
        policies.setdefault(name, f"{name};q={s.rule.policy.requests_per_unit};w={_window(s)}")
        live.append(f"{name};r={s.remaining};t={_reset_seconds(s)}")
    return [("RateLimit-Policy", ", ".join(policies.values())), ("RateLimit", ", ".join(live))]


def ratelimit_headers(statuses: Sequence[DescriptorDecision]) -> list[tuple[str, str]]:
    """envoyproxy/ratelimit's ``LIMIT_RESPONSE_HEADERS_ENABLED`` headers for one descriptor.

    The descriptor reported is the limited one with the least remaining (the first of equals),
    except that a descriptor over its limit outside quota mode always takes over (the last such
    wins), as ratelimit's service picks it. ``RateLimit-Limit`` is the bare number.
    """
    chosen: DescriptorDecision | None = None
    forced = False
    for s in statuses:
        if not s.limited:
            continue
        assert s.rule is not None
        if s.code is Code.OVER_LIMIT and not s.in_quota:
            chosen, forced = s, True
        elif not forced and (chosen is None or s.remaining < chosen.remaining):
            chosen = s
    if chosen is None:
        return []
    assert chosen.rule is not None
    return [
        ("RateLimit-Limit", str(chosen.rule.policy.requests_per_unit)),
        ("RateLimit-Remaining", str(chosen.remaining)),
        ("RateLimit-Reset", str(_reset_seconds(chosen))),
    ]


def rls_response(decision: Decision, headers: str = "draft") -> rls_pb2.RateLimitResponse:
    """Build Envoy's answer for a decision."""
    resp = rls_pb2.RateLimitResponse(overall_code=_CODES[decision.code])
    for status in decision.statuses:
        _add_status(resp, status)
    _add_headers(resp, decision, headers)
    return resp


def _add_status(resp: rls_pb2.RateLimitResponse, status: DescriptorDecision) -> None:
    out = resp.statuses.add(code=_CODES[status.code], limit_remaining=status.remaining)
    if status.limited:
        assert status.rule is not None
        policy = status.rule.policy
        out.current_limit.requests_per_unit = policy.requests_per_unit
        out.current_limit.unit = _UNITS[policy.unit]
        out.current_limit.name = policy.name
        out.duration_until_reset.FromTimedelta(status.reset_after)


def _add_headers(resp: rls_pb2.RateLimitResponse, decision: Decision, headers: str) -> None:
    made = {"draft": draft_headers, "ietf": ietf_headers, "ratelimit": ratelimit_headers}.get(
        headers
    )
    for key, value in made(decision.statuses) if made else ():
        resp.response_headers_to_add.append(base_pb2.HeaderValue(key=key, value=value))


def dynamic_metadata(request: rls_pb2.RateLimitRequest, decision: Decision) -> dict[str, Any]:
    """envoyproxy/ratelimit's ``RESPONSE_DYNAMIC_METADATA``: the domain, each descriptor's
    entries (``"key=value"``), its own ``limit`` and ``hitsAddend`` when set, the request's
    ``hitsAddend`` when not 0, and ``metadata``: the rule metadata of every descriptor that
    passed with a finite limit, merged in request order (maps recursively, else first wins)."""
    descriptors: list[dict[str, Any]] = []
    for d in request.descriptors:
        item: dict[str, Any] = {"entries": [f"{e.key}={e.value}" for e in d.entries]}
        if d.HasField("limit"):
            unit = _UNIT_NAMES.get(int(d.limit.unit), "unknown")
            item["limit"] = {"requests_per_unit": d.limit.requests_per_unit, "unit": unit}
        if d.HasField("hits_addend"):
            item["hitsAddend"] = d.hits_addend.value
        descriptors.append(item)
    result: dict[str, Any] = {"domain": request.domain, "descriptors": descriptors}
    if request.hits_addend:
        result["hitsAddend"] = request.hits_addend
    merged: dict[str, Any] = {}
    for status in decision.statuses:
        if status.code is Code.OK and status.limited and status.rule is not None:
            _merge(merged, status.rule.metadata)
    if merged:
        result["metadata"] = merged
    return result


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        if key not in into:
            into[key] = _plain(value)
        elif isinstance(into[key], dict) and isinstance(value, Mapping):
            _merge(into[key], value)


def _plain(value: Any) -> Any:
    """A YAML value as a Struct value: maps, lists, text, numbers, booleans, null; anything
    else (a date) as its text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


# by number: the request's unit enum (envoy.type.v3.RateLimitUnit) numbers its units as the
# response's does, as envoyproxy/ratelimit reads it
_UNIT_NAMES: dict[int, str] = {int(number): name for name, number in _UNITS.items()}


def _override(index: int, descriptor: ratelimit_pb2.RateLimitDescriptor) -> Override:
    """A descriptor's own limit. Without a unit it is refused (envoyproxy/ratelimit's process
    dies on one)."""
    unit = _UNIT_NAMES.get(int(descriptor.limit.unit))
    if unit is None:
        raise BadRequest(f"descriptors[{index}].limit has no valid unit")
    return Override(descriptor.limit.requests_per_unit, unit)


class RateLimitService:
    """``ShouldRateLimit`` served from the current runtime's rate-limit table.

    `table_of` picks the table out of a runtime (default: its ``ratelimit`` attribute). With no
    rate-limit config loaded every call fails with gRPC UNKNOWN "no rate limit configuration
    loaded", as envoyproxy/ratelimit answers. `shadow_mode` answers OK where the answer would be
    OVER_LIMIT (statuses kept), `quota_mode` puts every descriptor in quota mode and
    `dynamic_metadata` fills the response's ``dynamic_metadata`` (`dynamic_metadata`), as
    ratelimit's ``SHADOW_MODE``, ``QUOTA_MODE`` and ``RESPONSE_DYNAMIC_METADATA``;
    `near_limit_ratio` and `max_stat_keys` shape the per-rule
    statistics (`mixer.api.ratelimit_stats`).
    """

    def __init__(
        self,
        holder: RuntimeHolder,
        metrics: ServerMetrics,
        *,
        headers: str = "draft",
        table_of: TableOf | None = None,
        shadow_mode: bool = False,
        quota_mode: bool = False,
        dynamic_metadata: bool = False,
        near_limit_ratio: float = 0.8,
        max_stat_keys: int = 10_000,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if headers not in HEADER_MODES:
            raise ValueError(f"headers must be one of {', '.join(HEADER_MODES)}, got {headers!r}")
        if not 0 < near_limit_ratio <= 1:
            raise ValueError(f"near_limit_ratio must be in (0, 1], got {near_limit_ratio}")
        self._holder = holder
        self._metrics = metrics
        self._headers = headers
        self._limits = limits
        self._table_of: TableOf = table_of or _runtime_table
        self._shadow_mode = shadow_mode
        self._quota_mode = quota_mode
        self._dynamic_metadata = dynamic_metadata
        self._stats = RuleStats(metrics, near_limit_ratio, max_stat_keys)

    def handler(self, bridge: LoopBridge | None = None) -> grpc.GenericRpcHandler:
        """The generic handler serving /envoy.service.ratelimit.v3.RateLimitService/…"""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ShouldRateLimit": unary_handler(
                    self._metrics,
                    SERVICE,
                    "ShouldRateLimit",
                    self.should_rate_limit,
                    rls_pb2.RateLimitRequest,
                    bridge=bridge,
                )
            },
        )

    async def should_rate_limit(
        self,
        request: rls_pb2.RateLimitRequest,
        context: grpc.aio.ServicerContext[rls_pb2.RateLimitRequest, rls_pb2.RateLimitResponse],
    ) -> rls_pb2.RateLimitResponse:
        """Count the request's hits and answer OK or OVER_LIMIT (see the module docstring)."""
        if not request.domain:
            raise BadRequest("rate limit domain must not be empty")
        if not request.descriptors:
            raise BadRequest("rate limit descriptor list must not be empty")
        descriptors = await _descriptors(request, self._limits)
        # Everything done per descriptor yields every `_SLICE` of them: a request of many
        # never holds the event loop (and the Checks waiting on it) for long.
        overrides: list[Override | None] = []
        default_hits = request.hits_addend or 1
        hits: list[int] = []
        for index, d in enumerate(request.descriptors):
            if index and index % _SLICE == 0:
                await asyncio.sleep(0)
            overrides.append(_override(index, d) if d.HasField("limit") else None)
            # its own hits_addend (0 allowed), else the request's, else 1
            hits.append(d.hits_addend.value if d.HasField("hits_addend") else default_hits)
        with self._holder.use() as rt:
            table = self._table_of(rt)
            if not table.configured:
                raise NotConfigured("no rate limit configuration loaded")
            decision = await table.should_rate_limit(
                request.domain,
                descriptors,
                hits,
                shadow_mode=self._shadow_mode,
                quota_mode=self._quota_mode,
                overrides=overrides if any(overrides) else (),
            )
        stats = self._stats
        stats.record_decision(decision)
        response = rls_pb2.RateLimitResponse(overall_code=_CODES[decision.code])
        for index, (status, n) in enumerate(zip(decision.statuses, hits, strict=True)):
            if index and index % _SLICE == 0:
                await asyncio.sleep(0)
            stats.record_status(status, n)
            if status.rule is not None:
                result = "exhausted" if status.code == Code.OVER_LIMIT else "granted"
                self._metrics.quota_results.labels(status.rule.quota, result).inc()
            _add_status(response, status)
        _add_headers(response, decision, self._headers)
        if self._dynamic_metadata:
            response.dynamic_metadata.update(dynamic_metadata(request, decision))
        return response


async def _descriptors(request: rls_pb2.RateLimitRequest, limits: Limits) -> list[Entries]:
    """The request's descriptors as (key, value) lists; `LimitExceeded` past a bound (checked
    before anything is matched or counted, so a refused request holds no bucket). Yields to
    the event loop every `_SLICE` descriptors."""
    if len(request.descriptors) > limits.max_descriptors:
        raise LimitExceeded(
            f"descriptors: {len(request.descriptors)} descriptors is more than the limit of "
            f"{limits.max_descriptors}",
            "max_descriptors",
        )
    longest = limits.max_descriptor_bytes
    descriptors: list[Entries] = []
    for index, d in enumerate(request.descriptors):
        if index and index % _SLICE == 0:
            await asyncio.sleep(0)
        if not d.entries:
            raise BadRequest(f"descriptors[{index}] has no entries")
        if len(d.entries) > limits.max_descriptor_entries:
            raise LimitExceeded(
                f"descriptors[{index}]: {len(d.entries)} entries is more than the limit of "
                f"{limits.max_descriptor_entries}",
                "max_descriptor_entries",
            )
        entries = [(e.key, e.value) for e in d.entries]
        for number, (key, value) in enumerate(entries):
            size = max(len(key.encode()), len(value.encode()))
            if size > longest:
                raise LimitExceeded(
                    f"descriptors[{index}].entries[{number}]: {size} bytes is more than the "
                    f"limit of {longest}",
                    "max_descriptor_bytes",
                )
        descriptors.append(entries)
    return descriptors


def _runtime_table(rt: Runtime) -> RateLimitTable:
    return rt.ratelimit
