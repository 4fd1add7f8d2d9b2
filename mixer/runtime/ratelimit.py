"""Envoy rate-limit (RLS) decisions from envoyproxy/ratelimit configs, counted by a quota adapter.

Each `RateLimitConfig` (one ``domain`` with a tree of descriptors) is flattened into the nodes
that carry a ``rate_limit``. Every limited node becomes one ``FIXED_WINDOW`` quota of ONE quota
handler (``memquota``, or ``redisquota`` when a Redis URL is given) named
``rls;<domain>;<k1>=<v1>;<k2>=*;…`` (``*`` for a node with a key and no value, ``~=<pattern>``
for a value with ``*`` wildcards), with ``maxAmount = requests_per_unit`` and
``validDuration`` = one unit (``month`` = 30 days, ``year`` = 365 days, as envoyproxy/ratelimit).

Matching follows envoyproxy/ratelimit, per request descriptor: walk its entries level by level;
at each level a child with the same key and value wins, then a child whose value pattern (with
``*``) matches, then a child with the key and no value. The descriptor matches only when all its
entries are consumed and the node reached has a ``rate_limit``; otherwise its status is OK with
no limit. The quota instance's dimensions are the descriptor's entries, so a node without a
value (or with a pattern) counts each distinct value in its own bucket.

* ``unlimited`` nodes answer OK with ``limit_remaining`` 2^32 - 1 and count nothing;
* ``shadow_mode`` nodes count but answer OK even when over the limit;
* ``requests_per_unit: 0`` is always over the limit (nothing is counted);
* a rule named in the ``replaces`` list of another rule matched by the same request is dropped
  (that descriptor is answered OK with no limit), as envoyproxy/ratelimit does.

Also as there: ``share_threshold`` levels count every matching value in one bucket,
``quota_mode`` descriptors fail a request only together, a descriptor's own ``limit`` skips
matching and counts in a bucket of its own, and each status carries ratelimit's statistics key.

Counting differs from envoyproxy/ratelimit in two ways, both from the quota adapters: a window
opens at the first hit after the previous one closed (not at a multiple of the unit since the
epoch, unless the table is built with ``epoch_windows``), and a hit that would go over the limit
is denied without being counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from adapters.base import (
    OK,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    AdapterInfo,
    Env,
    Instance,
    QuotaArgs,
    QuotaResult,
)
from mixer.config.model import RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, Snapshot
from mixer.errors import BackendUnavailable, DispatchError
from mixer.runtime.handler_calls import HandlerCalls
from mixer.runtime.routing import HandlerEntry

__all__ = [
    "UNIT_SECONDS",
    "UNLIMITED_REMAINING",
    "Code",
    "Decision",
    "DescriptorDecision",
    "Entries",
    "Override",
    "RateLimitTable",
    "Rule",
    "build_ratelimit_table",
]

logger = logging.getLogger(__name__)

UNIT_SECONDS: Mapping[str, int] = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
"""Seconds per envoyproxy/ratelimit unit."""

UNLIMITED_REMAINING = 2**32 - 1
"""``limit_remaining`` of an unlimited rule (envoyproxy/ratelimit answers MaxUint32)."""

_OVERRIDE_QUOTA = "rls;#override;"
"""Prefix of the quota (one per unit) that counts per-request limits."""
_OVERRIDE_PATH = "#override"
"""The `Rule.path` of a per-request limit: no config path is ``#override`` (a key-only node's
path ends with ``=*``)."""

HANDLER_NAME = "rls.ratelimit"
"""The quota handler's name (in adapter logs and metric labels)."""

Entries = Sequence[tuple[str, str]]
"""One request descriptor: its (key, value) entries in order."""


@dataclass(frozen=True, slots=True)
class Override:
    """A request descriptor's own limit (``RateLimitDescriptor.limit``)."""

    requests_per_unit: int
    unit: str
    """One of `UNIT_SECONDS`."""


# Descriptors matched, and quotas allocated, between two yields to the event loop: with
# --max-descriptors raised, one request could otherwise hold every other call behind it.
_SLICE = 64


class Code(enum.IntEnum):
    """A status code, numbered as ``RateLimitResponse.Code``."""

    OK = 1
    OVER_LIMIT = 2


@dataclass(frozen=True, slots=True)
class Rule:
    """A limited node of a descriptor tree, and the quota that counts it ("" if none)."""

    domain: str
    path: str
    """``<k1>=<v1>;<k2>=*``: the node's place in its tree."""
    policy: RateLimitPolicy
    shadow_mode: bool
    quota: str
    quota_mode: bool = False
    detailed_metric: bool = False
    stat_key: str = ""
    """``<domain>.<k1>_<v1>.<k2>``: envoyproxy/ratelimit's statistics key of the rule."""
    value_stats: bool = False
    """True when a level on the rule's path has ``value_to_metric`` (or the rule is
    ``detailed_metric``): its statistics key then depends on the request's values."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The rule's free-form ``metadata`` (returned in dynamic metadata when it passes)."""

    @property
    def unit_seconds(self) -> int:
        """The length of the rule's window (0 for an unlimited rule)."""
        return UNIT_SECONDS.get(self.policy.unit, 0)


@dataclass(frozen=True, slots=True)
class DescriptorDecision:
    """The answer for one request descriptor.

    `rule` is None when nothing matched or the match was replaced; `limited` is False for those
    and for unlimited rules (no ``current_limit`` is reported then).
    """

    code: Code
    rule: Rule | None = None
    remaining: int = 0
    reset_after: datetime.timedelta = datetime.timedelta(0)
    stat_key: str = ""
    """The statistics key for this request (the rule's, or built from request values)."""
    over: bool = False
    """Over the limit by count, whatever the code says (shadow mode answers OK)."""
    in_quota: bool = False
    """In quota mode (its rule's or the global one): over alone does not fail the request."""

    @property
    def limited(self) -> bool:
        """True when the descriptor has a finite limit to report."""
        return self.rule is not None and not self.rule.policy.unlimited


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for a request: OVER_LIMIT when any descriptor is (shadow rules never are)."""

    code: Code
    statuses: tuple[DescriptorDecision, ...]
    domain_known: bool = True
    shadowed: bool = False
    """True when global shadow mode turned an OVER_LIMIT answer into OK."""


@dataclass(eq=False)
class _Node:
    """One level of a flattened descriptor tree."""

    exact: dict[tuple[str, str], _Node] = field(default_factory=dict)
    patterns: list[tuple[str, str, _Node]] = field(default_factory=list)
    any_value: dict[str, _Node] = field(default_factory=dict)
    rule: Rule | None = None
    pattern: str = ""
    """The wildcard value this node was reached by ("" for exact and key-only nodes)."""
    exact_value: bool = False
    share: bool = False
    to_metric: bool = False

    def child(self, key: str, value: str) -> _Node | None:
        found = self.exact.get((key, value))
        if found is not None:
            return found
        for pkey, pattern, node in self.patterns:
            if pkey == key and _glob(pattern, value):
                return node
        return self.any_value.get(key)


def _segment(key: str, value: str, node: _Node, detailed: bool) -> str:
    """One level of a statistics key, as envoyproxy/ratelimit builds it for request values."""
    if node.share:
        return f"{key}_{node.pattern}"
    if detailed:
        return f"{key}_{value}"
    if node.pattern:
        return f"{key}_{value if node.to_metric else node.pattern}"
    if node.exact_value or (node.to_metric and value):
        return f"{key}_{value}"
    return key


_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def sanitize_stat(text: str) -> str:
    """envoyproxy/ratelimit's stat-name cleaning: ``:`` and ``|`` become ``_``, and so do the
    dots inside a dotted-quad IPv4 address (other dots separate key levels)."""
    text = text.replace(":", "_").replace("|", "_")
    return _IPV4.sub(lambda m: m.group(0).replace(".", "_"), text)


def _glob(pattern: str, value: str) -> bool:
    """envoyproxy/ratelimit's value wildcard: each ``*`` matches any run of characters."""
    parts = pattern.split("*")
    if not value.startswith(parts[0]):
        return False
    pos = len(parts[0])
    for middle in parts[1:-1]:
        found = value.find(middle, pos)
        if found < 0:
            return False
        pos = found + len(middle)
    last = parts[-1]
    return len(value) - pos >= len(last) and value.endswith(last)


def _step(descriptor: RateLimitDescriptor) -> str:
    if not descriptor.value:
        return f"{descriptor.key}=*"
    if "*" in descriptor.value:
        return f"{descriptor.key}~={descriptor.value}"
    return f"{descriptor.key}={descriptor.value}"


def _dimensions(entries: Entries) -> dict[str, str]:
    """Entries as quota dimensions; a key repeated in one descriptor gets a ``#<index>`` suffix."""
    dims: dict[str, str] = {}
    for index, (key, value) in enumerate(entries):
        dims[key if key not in dims else f"{key}#{index}"] = value
    return dims


class RateLimitTable:
    """The matching trees of every configured domain and the quota handler that counts them."""

    def __init__(
        self,
        roots: Mapping[str, _Node],
        entry: HandlerEntry | None,
        signature: str,
        calls: HandlerCalls | None = None,
    ) -> None:
        self._roots = dict(roots)
        self._entry = entry
        self._calls = calls
        self._owns_handler = entry is not None
        self.signature = signature
        """Backend plus quota params: equal signatures can share one handler (and its counts)."""

    @classmethod
    def empty(cls) -> RateLimitTable:
        """A table with no domain (every descriptor is answered OK with no limit); no handler."""
        return cls({}, None, "")

    @classmethod
    def from_configs(
        cls,
        configs: Sequence[RateLimitConfig],
        *,
        registry: Mapping[str, AdapterInfo],
        env: Env,
        calls: HandlerCalls,
        redis_url: str = "",
        previous: RateLimitTable | None = None,
        epoch_windows: bool = False,
    ) -> RateLimitTable:
        """Flatten `configs` and build the quota handler (``redisquota`` if `redis_url`), called
        through `calls` (the handler timeout and per-handler metrics of Check's quotas). With
        `epoch_windows` every window starts at a multiple of its unit since the Unix epoch, as
        envoyproxy/ratelimit's do; otherwise at the first hit after the previous one closed.

        When `previous` has the same signature its handler is taken over, so a config reload
        that does not change any limit keeps the counts; `previous.close()` then leaves it open.
        """
        roots: dict[str, _Node] = {}
        quotas: list[dict[str, Any]] = []
        names: set[str] = set()
        for config in configs:
            root = roots.setdefault(config.domain, _Node())
            _add(config.domain, root, config.descriptors, (), quotas, names)
        if roots:
            # Per-request limits (`RateLimitDescriptor.limit`): one quota per unit, whose
            # maxAmount each call replaces (`QuotaArgs.max_amount`), so every limit has its
            # own bucket.
            for unit, seconds in UNIT_SECONDS.items():
                quotas.append(
                    {
                        "name": _OVERRIDE_QUOTA + unit,
                        "maxAmount": 1,
                        "validDuration": f"{seconds}s",
                        "rateLimitAlgorithm": "FIXED_WINDOW",
                    }
                )
        if epoch_windows:
            for quota in quotas:
                quota["alignToEpoch"] = True
        backend = "redisquota" if redis_url else "memquota"
        raw: dict[str, Any] = {"quotas": quotas}
        if redis_url:
            raw["redisServerUrl"] = redis_url
        signature = repr((backend, raw))
        entry: HandlerEntry | None = None
        if quotas:
            if previous is not None and previous.signature == signature and previous._entry:
                entry = previous._entry
                previous._owns_handler = False
            else:
                info = registry[backend]
                entry = HandlerEntry(
                    env.handler_name, backend, info.build(info.parse_params(raw), env), signature
                )
                if entry.quotas is None:
                    raise DispatchError(f"adapter {backend!r} does not allocate quotas")
        return cls(roots, entry, signature, calls)

    @property
    def domains(self) -> frozenset[str]:
        """The configured domains."""
        return frozenset(self._roots)

    @property
    def configured(self) -> bool:
        """True when at least one rate-limit config (domain) is loaded."""
        return bool(self._roots)

    def match(self, domain: str, entries: Entries) -> Rule | None:
        """The rule a request descriptor reaches in `domain`, or None."""
        return self._walk(domain, entries)[0]

    def _walk(self, domain: str, entries: Entries) -> tuple[Rule | None, dict[str, str], str]:
        """The rule reached, the quota dimensions (a ``share_threshold`` level counts under its
        pattern, so every matching value shares one bucket) and the request's statistics key."""
        node = self._roots.get(domain)
        path: list[_Node] = []
        for key, value in entries:
            if node is None:
                return None, {}, ""
            node = node.child(key, value)
            if node is not None:
                path.append(node)
        rule = node.rule if node is not None and entries else None
        if rule is None:
            return None, {}, ""
        shared = [(k, n.pattern if n.share else v) for (k, v), n in zip(entries, path, strict=True)]
        stat_key = rule.stat_key
        if rule.value_stats:
            segments = (
                _segment(k, v, n, rule.detailed_metric)
                for (k, v), n in zip(entries, path, strict=True)
            )
            stat_key = sanitize_stat(".".join((domain, *segments)))
        return rule, _dimensions(shared), stat_key

    async def should_rate_limit(
        self,
        domain: str,
        descriptors: Sequence[Entries],
        hits: int | Sequence[int],
        *,
        shadow_mode: bool = False,
        quota_mode: bool = False,
        overrides: Sequence[Override | None] = (),
    ) -> Decision:
        """Count `hits` (one number, or one per descriptor) against every matched rule.

        The answer is OVER_LIMIT when a descriptor outside quota mode is over its limit, or when
        there are quota-mode descriptors and every one of them is over (envoyproxy/ratelimit's
        ``quota_mode``; `quota_mode`, its global ``QUOTA_MODE``, puts every descriptor but the
        unlimited ones in quota mode, unmatched ones counting as passing); `shadow_mode` (its
        global ``SHADOW_MODE``) then turns OVER_LIMIT into OK and keeps every status.

        A descriptor with an `overrides` entry (one per descriptor, or none at all) skips
        matching and counts against that limit in a bucket of its own for its domain, entries
        and limit, as envoyproxy/ratelimit does (the domain must still be configured).

        Raises `BackendUnavailable` when the quota backend cannot answer (e.g. Redis down) and
        `DispatchError` for any other backend failure; never returns an unknown code.
        """
        per = [hits] * len(descriptors) if isinstance(hits, int) else list(hits)
        if len(per) != len(descriptors):
            raise ValueError("one hits value per descriptor expected")
        if domain not in self._roots:
            return Decision(Code.OK, tuple(DescriptorDecision(Code.OK) for _ in descriptors), False)
        walked: list[tuple[Rule | None, dict[str, str], str]] = []
        for start in range(0, len(descriptors), _SLICE):
            if start:
                await asyncio.sleep(0)  # a long request never holds the event loop for long
            walked.extend(
                _override(domain, entries, overrides[i])
                if overrides and overrides[i] is not None
                else self._walk(domain, entries)
                for i, entries in enumerate(descriptors[start : start + _SLICE], start)
            )
        replaced = {name for r, _, _ in walked if r is not None for name in r.policy.replaces}
        rules = [None if r is not None and r.policy.name in replaced else r for r, _, _ in walked]
        calls: list[tuple[int, Instance, QuotaArgs]] = []
        for index, rule in enumerate(rules):
            if index and index % _SLICE == 0:
                await asyncio.sleep(0)
            if rule is not None and rule.quota:
                instance = Instance(rule.quota, "quota", {"dimensions": walked[index][1]})
                args = QuotaArgs(amount=max(per[index], 0))
                if rule.path == _OVERRIDE_PATH:
                    args = args._replace(max_amount=rule.policy.requests_per_unit)
                calls.append((index, instance, args))
        results: list[QuotaResult] = []
        for start in range(0, len(calls), _SLICE):
            if start:
                await asyncio.sleep(0)
            results += await self._allocate([(i, a) for _, i, a in calls[start : start + _SLICE]])
        by_index = {index: result for (index, _, _), result in zip(calls, results, strict=True)}
        made: list[DescriptorDecision] = []
        for index, rule in enumerate(rules):
            if index and index % _SLICE == 0:
                await asyncio.sleep(0)
            status = _status(rule, by_index.get(index), per[index], walked[index][2])
            made.append(
                dataclasses.replace(status, in_quota=True)
                if _in_quota_mode(status, quota_mode)
                else status
            )
        statuses = tuple(made)
        quota = [s for s in statuses if s.in_quota]
        over = any(s.code is Code.OVER_LIMIT for s in statuses if not s.in_quota) or (
            bool(quota) and all(s.code is Code.OVER_LIMIT for s in quota)
        )
        if over and shadow_mode:
            return Decision(Code.OK, statuses, shadowed=True)
        return Decision(Code.OVER_LIMIT if over else Code.OK, statuses)

    async def _allocate(self, requests: list[tuple[Instance, QuotaArgs]]) -> list[QuotaResult]:
        if not requests:
            return []
        entry, calls = self._entry, self._calls
        if entry is None or calls is None:  # a rule with a quota implies a handler
            raise DispatchError("rate limit table has no quota handler")
        try:
            results = await calls.allocate(entry, requests)
        except TimeoutError:
            raise BackendUnavailable(
                f"rate limit backend did not answer within {calls.timeout:g}s"
            ) from None
        for (instance, _), result in zip(requests, results, strict=True):
            if result.status_code == UNAVAILABLE:
                raise BackendUnavailable(f"rate limit backend unavailable: {result.message}")
            if result.status_code not in (OK, RESOURCE_EXHAUSTED):
                raise DispatchError(
                    f"rate limit quota {instance.name!r} failed "
                    f"(code {result.status_code}): {result.message}"
                )
        return results

    async def close(self) -> None:
        """Close the quota handler unless a newer table took it over."""
        if self._entry is not None and self._owns_handler:
            self._owns_handler = False
            await self._entry.handler.close()


def _add(
    domain: str,
    parent: _Node,
    descriptors: Sequence[RateLimitDescriptor],
    path: tuple[str, ...],
    quotas: list[dict[str, Any]],
    names: set[str],
    stat_path: tuple[str, ...] = (),
    value_stats_above: bool = False,
) -> None:
    for descriptor in descriptors:
        node = _Node(share=descriptor.share_threshold, to_metric=descriptor.value_to_metric)
        if not descriptor.value:
            parent.any_value[descriptor.key] = node
        elif "*" in descriptor.value:
            node.pattern = descriptor.value
            parent.patterns.append((descriptor.key, descriptor.value, node))
        else:
            node.exact_value = True
            parent.exact[(descriptor.key, descriptor.value)] = node
        here = (*path, _step(descriptor))
        segment = f"{descriptor.key}_{descriptor.value}" if descriptor.value else descriptor.key
        stat_here = (*stat_path, segment)
        value_stats = value_stats_above or descriptor.value_to_metric
        policy = descriptor.rate_limit
        if policy is not None:
            quota = ""
            if not policy.unlimited and policy.requests_per_unit > 0:
                quota = ";".join(("rls", domain, *here))
                base, suffix = quota, 1
                while quota in names:  # only when keys or values contain ';' or '='
                    suffix += 1
                    quota = f"{base}#{suffix}"
                names.add(quota)
                quotas.append(
                    {
                        "name": quota,
                        "maxAmount": policy.requests_per_unit,
                        "validDuration": f"{UNIT_SECONDS[policy.unit]}s",
                        "rateLimitAlgorithm": "FIXED_WINDOW",
                    }
                )
            node.rule = Rule(
                domain,
                ";".join(here),
                policy,
                descriptor.shadow_mode,
                quota,
                quota_mode=descriptor.quota_mode,
                detailed_metric=descriptor.detailed_metric,
                stat_key=sanitize_stat(".".join((domain, *stat_here))),
                value_stats=value_stats or descriptor.detailed_metric,
                metadata=descriptor.metadata,
            )
        _add(domain, node, descriptor.descriptors, here, quotas, names, stat_here, value_stats)


def _in_quota_mode(status: DescriptorDecision, everything: bool) -> bool:
    """Whether a descriptor takes part in quota mode (its rule's, or the global one)."""
    rule = status.rule
    if rule is not None and rule.policy.unlimited:
        return False
    return everything or (rule is not None and rule.quota_mode)


def _override(
    domain: str, entries: Entries, limit: Override | None
) -> tuple[Rule | None, dict[str, str], str]:
    """The rule of a per-request limit, its dimensions (the domain plus the entries) and its
    statistics key (``<domain>.<k1>_<v1>.<k2>``, ``k`` alone for an empty value)."""
    assert limit is not None
    segments = (f"{k}_{v}" if v else k for k, v in entries)
    quota = _OVERRIDE_QUOTA + limit.unit if limit.requests_per_unit > 0 else ""
    rule = Rule(
        domain,
        _OVERRIDE_PATH,
        RateLimitPolicy(limit.unit, limit.requests_per_unit),
        False,
        quota,
        # past the statistics key bound, every override of the domain counts under this key
        stat_key=f"{domain}.override",
        value_stats=True,
    )
    dims = {"#domain": domain, **_dimensions(entries)}
    return rule, dims, sanitize_stat(".".join((domain, *segments)))


def _status(
    rule: Rule | None, result: QuotaResult | None, hits: int, stat_key: str
) -> DescriptorDecision:
    if rule is None:
        return DescriptorDecision(Code.OK)
    if rule.policy.unlimited:
        return DescriptorDecision(Code.OK, rule, UNLIMITED_REMAINING, stat_key=stat_key)
    window = datetime.timedelta(seconds=rule.unit_seconds)
    if result is None:  # requests_per_unit 0: always over, nothing counted
        over = hits > 0
        return DescriptorDecision(_code(over, rule), rule, 0, window, stat_key, over)
    reset = result.reset_after
    if reset is None or reset <= datetime.timedelta(0):
        reset = window  # no window open: one would last a whole unit
    remaining = result.remaining if result.remaining is not None else 0
    over = result.status_code == RESOURCE_EXHAUSTED
    return DescriptorDecision(_code(over, rule), rule, max(remaining, 0), reset, stat_key, over)


def _code(over: bool, rule: Rule) -> Code:
    return Code.OVER_LIMIT if over and not rule.shadow_mode else Code.OK


async def build_ratelimit_table(
    snapshot: Snapshot,
    metrics_registry: CollectorRegistry,
    redis_url: str = "",
    *,
    registry: Mapping[str, AdapterInfo],
    calls: HandlerCalls,
    previous: RateLimitTable | None = None,
    epoch_windows: bool = False,
    max_quota_bytes: int = 64 * 1024 * 1024,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimitTable:
    """The table for a config snapshot (see `RateLimitTable.from_configs`); its in-memory
    buckets hold at most `max_quota_bytes`; `clock` is the quota handlers' time (monotonic
    seconds)."""
    env = Env(
        handler_name=HANDLER_NAME,
        logger=logging.getLogger("adapters.ratelimit"),
        registry=metrics_registry,
        clock=clock,
        max_quota_bytes=max_quota_bytes,
    )
    return RateLimitTable.from_configs(
        snapshot.rate_limit_configs,
        registry=registry,
        env=env,
        calls=calls,
        redis_url=redis_url,
        previous=previous,
        epoch_windows=epoch_windows,
    )
