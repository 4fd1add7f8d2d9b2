"""envoyproxy/ratelimit's per-rule statistics, counted from RLS decisions.

For each descriptor that reached a finite limit, with ``n`` its hits, ``L`` the limit and
``T = floor(L * near_limit_ratio)``: ``total_hits`` += n; under the limit ``within_limit`` += n
and, past T, ``near_limit`` += the hits past T; over it ``over_limit`` += the hits past L,
``near_limit`` += the hits between max(T, before) and L, and for a ``shadow_mode`` rule
``shadow_mode`` += the hits past L, as ratelimit's ``base_limiter.go`` counts them. A hit that
mixer refuses is not counted by the backend (see ``docs/ratelimit.md``), but it is counted here
as ratelimit would have.

Series are keyed by domain and ratelimit's statistics key (``key1``/``key2`` as its Prometheus
mapping, ``key`` the whole path). Keys built from request values (``detailed_metric``,
``value_to_metric``) are unbounded, so at most `max_keys` distinct keys get their own series;
later ones fold into the rule's config key (bounded by the config) and count in
``mixer_ratelimit_stat_keys_folded``.
"""

from __future__ import annotations

import math

from mixer.runtime.ratelimit import Decision, DescriptorDecision
from mixer.telemetry import RATELIMIT_STATS, ServerMetrics

STATS = RATELIMIT_STATS
"""The per-rule statistics, named as envoyproxy/ratelimit names them."""


class RuleStats:
    """Adds RLS decisions' hits to the per-rule counters of `metrics`: `record_decision` once
    per decision, `record_status` per descriptor."""

    def __init__(self, metrics: ServerMetrics, near_limit_ratio: float, max_keys: int) -> None:
        self._metrics = metrics
        self._ratio = near_limit_ratio
        self._max_keys = max_keys
        self._keys: set[tuple[str, str]] = set()

    def record_decision(self, decision: Decision) -> None:
        """Count what concerns the decision as a whole (a global shadow mode)."""
        if decision.shadowed:
            self._metrics.ratelimit_global_shadow.labels().inc()

    def record_status(self, status: DescriptorDecision, hits: int) -> None:
        """Count one descriptor's `hits`, if it reached a finite limit (a caller may spread a
        large request's descriptors over several turns of the event loop)."""
        if status.limited and hits > 0:
            self._count(status, hits)

    def _key(self, domain: str, key: str, fallback: str) -> str:
        if (domain, key) in self._keys:
            return key
        if len(self._keys) >= self._max_keys:
            self._metrics.ratelimit_stat_keys_folded.labels().inc()
            return fallback
        self._keys.add((domain, key))
        return key

    def _count(self, status: DescriptorDecision, n: int) -> None:
        rule = status.rule
        assert rule is not None
        limit = rule.policy.requests_per_unit
        threshold = math.floor(limit * self._ratio)
        # a refused hit is not counted, so `remaining` is still what was left before it
        before = limit - status.remaining - (0 if status.over else n)
        after = before + n
        key = status.stat_key or rule.stat_key
        if key != rule.stat_key:
            key = self._key(rule.domain, key, rule.stat_key)
        add = {"total_hits": n}
        if after <= limit:
            add["within_limit"] = n
            if after > threshold:
                add["near_limit"] = n if before >= threshold else after - threshold
        else:
            past = n if before >= limit else after - limit
            add["over_limit"] = past
            if before < limit:
                add["near_limit"] = limit - max(threshold, before)
            if rule.shadow_mode:
                add["shadow_mode"] = past
        parts = key.split(".")
        labels = (rule.domain, _part(parts, 1), _part(parts, 2), ".".join(parts[1:]))
        counters = self._metrics.ratelimit_rule
        for stat, amount in add.items():
            if amount > 0:
                counters[stat].labels(*labels).inc(amount)


def _part(parts: list[str], index: int) -> str:
    return parts[index] if index < len(parts) else ""
