"""Mixer's own metrics, registered on a registry the server owns (never the global one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mixer.series import LabelledCounter, LabelledHistogram

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


RATELIMIT_STATS = ("total_hits", "over_limit", "near_limit", "within_limit", "shadow_mode")
"""envoyproxy/ratelimit's per-rule statistics, by its names."""


class Children:
    """A metric's labelled children, each looked up once: `labels()` checks and locks on every
    call. Label values can come from requests (quota names), so at most `max_entries` are kept;
    children of metrics that nobody removes labels from only."""

    __slots__ = ("_cache", "_max", "_metric")

    def __init__(
        self,
        metric: Counter | Histogram | Gauge | LabelledCounter | LabelledHistogram,
        max_entries: int = 1024,
    ) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], Any] = {}
        self._max = max_entries

    def get(self, *labels: str) -> Any:
        """The child for `labels`."""
        child = self._cache.get(labels)
        if child is None:
            child = self._metric.labels(*labels)
            if len(self._cache) < self._max:
                self._cache[labels] = child
        return child


@dataclass(frozen=True)
class ServerMetrics:
    """The service's self-metrics. Names follow go-grpc-prometheus so existing dashboards work.

    Those that every request updates are `mixer.series` collectors (no lock per update); the
    rest are prometheus_client's.
    """

    registry: CollectorRegistry
    handled: LabelledCounter
    latency: LabelledHistogram
    config_reload_success: Gauge
    config_load_seconds: Gauge
    config_errors: Counter
    config_reloads: Counter
    config_info: Gauge
    rule_match_errors: Counter
    generation_errors: Counter
    check_cache: LabelledCounter
    dispatches: LabelledCounter
    dispatch_latency: LabelledHistogram
    report_queue_depth: Gauge
    report_dropped: Counter
    reports_received: LabelledCounter
    check_results: LabelledCounter
    quota_results: LabelledCounter
    limit_exceeded: LabelledCounter
    build: Gauge
    ratelimit_rule: Mapping[str, LabelledCounter]
    """envoyproxy/ratelimit's per-rule statistics, by statistic name."""
    ratelimit_global_shadow: LabelledCounter
    ratelimit_stat_keys_folded: LabelledCounter
    check_dry_run: Counter
    quota_dry_run: Counter
    debug_explain: Counter
    decision_log: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ServerMetrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=reg,
            handled=LabelledCounter(
                "grpc_server_handled",
                "RPCs completed on the server, by method and gRPC code.",
                ["grpc_service", "grpc_method", "grpc_code"],
                reg,
            ),
            latency=LabelledHistogram(
                "grpc_server_handling_seconds",
                "Server-side latency of RPCs, by method.",
                ["grpc_service", "grpc_method"],
                reg,
                _LATENCY_BUCKETS,
            ),
            config_reload_success=Gauge(
                "mixer_config_last_reload_success",
                "1 when the last config load succeeded, 0 when it failed.",
                registry=reg,
            ),
            config_load_seconds=Gauge(
                "mixer_config_last_load_seconds",
                "Seconds the last config load took, from reading files to the swap (the "
                "debounce excluded), whatever its outcome.",
                registry=reg,
            ),
            config_errors=Counter(
                "mixer_config_errors", "Config errors found by loads.", registry=reg
            ),
            config_reloads=Counter(
                "mixer_config_reloads", "Config loads, by outcome.", ["outcome"], registry=reg
            ),
            config_info=Gauge(
                "mixer_config_info",
                "The active config: revision (git commit or content hash) and counts.",
                ["revision"],
                registry=reg,
            ),
            rule_match_errors=Counter(
                "mixer_config_rule_config_match_error",
                "Rule matches that failed to evaluate (the rule did not match).",
                ["rule"],
                registry=reg,
            ),
            generation_errors=Counter(
                "mixer_attribute_generation_errors",
                "Attribute generation failures, by instance and reason: handler (it raised or "
                "timed out; its bindings took their defaults) or binding (that attribute was "
                "not generated).",
                ["instance", "reason"],
                registry=reg,
            ),
            check_cache=LabelledCounter(
                "mixer_check_cache",
                "Checks by check cache result: hit, miss, or skipped (while hits are rare).",
                ["result"],
                reg,
            ),
            dispatches=LabelledCounter(
                "mixer_runtime_dispatches",
                "Calls to handlers (checks, quotas, rate limits), by adapter, handler and failure.",
                ["adapter", "handler", "error"],
                reg,
            ),
            dispatch_latency=LabelledHistogram(
                "mixer_runtime_dispatch_duration_seconds",
                "Latency of calls to handlers.",
                ["adapter", "handler", "error"],
                reg,
                _LATENCY_BUCKETS,
            ),
            report_queue_depth=Gauge(
                "mixer_report_queue_depth",
                "Instances waiting per report handler.",
                ["handler"],
                registry=reg,
            ),
            report_dropped=Counter(
                "mixer_report_dropped",
                "Report instances dropped, by handler and reason.",
                ["handler", "reason"],
                registry=reg,
            ),
            reports_received=LabelledCounter(
                "mixer_reports_received",
                "Attribute sets received for reporting, by API.",
                ["api"],
                reg,
            ),
            check_results=LabelledCounter(
                "mixer_check_results",
                "Check decisions, by API, the rule that decided ('' when none) and status code.",
                ["api", "rule", "code"],
                reg,
            ),
            build=Gauge(
                "istio_build",
                "The running build, as Istio components report it (Istio's dashboards read it).",
                ["component", "tag"],
                registry=reg,
            ),
            quota_results=LabelledCounter(
                "mixer_quota_results",
                "Quota allocations, by quota name and result (granted, exhausted, error).",
                ["quota", "result"],
                reg,
            ),
            ratelimit_rule={
                stat: LabelledCounter(
                    f"ratelimit_service_rate_limit_{stat}",
                    f"envoyproxy/ratelimit's {stat} per rule: domain, the first two levels "
                    "of its statistics key (key1, key2) and the whole key.",
                    ["domain", "key1", "key2", "key"],
                    reg,
                )
                for stat in RATELIMIT_STATS
            },
            ratelimit_global_shadow=LabelledCounter(
                "ratelimit_service_global_shadow_mode",
                "RLS answers turned from OVER_LIMIT into OK by global shadow mode.",
                [],
                reg,
            ),
            ratelimit_stat_keys_folded=LabelledCounter(
                "mixer_ratelimit_stat_keys_folded",
                "RLS statistics counted under their rule's config key because the number of "
                "keys built from request values reached --ratelimit-max-stat-keys.",
                [],
                reg,
            ),
            limit_exceeded=LabelledCounter(
                "mixer_limit_exceeded",
                "Crossings of a resource bound, by the bound's flag (requests refused, cache "
                "entries evicted early, admin connections turned away, reloads stopped).",
                ["limit"],
                reg,
            ),
            quota_dry_run=Counter(
                "mixer_quota_dry_run",
                "Quota charges of dry-run rules against their shadow buckets, by rule and result "
                "(granted, exhausted, error): counted, never denying.",
                ["rule", "result"],
                registry=reg,
            ),
            check_dry_run=Counter(
                "mixer_check_dry_run",
                "Check actions of dry-run rules, by rule and result (would_deny, allow, error): "
                "evaluated and counted, never denying.",
                ["rule", "result"],
                registry=reg,
            ),
            decision_log=Counter(
                "mixer_decision_log",
                "Check decisions for the decision log, by result (logged, sampled_out, dropped "
                "when the handler's queue is full, no_handler).",
                ["result"],
                registry=reg,
            ),
            debug_explain=Counter(
                "mixer_debug_explain",
                "Requests to /debug/explain, by result (ok, bad_request, too_large, error).",
                ["result"],
                registry=reg,
            ),
        )
