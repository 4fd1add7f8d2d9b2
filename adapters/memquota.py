"""memquota: quotas kept in this process's memory (the embedded default; no Redis needed).

State lives in one process, so a fleet of mixer replicas each enforce their own budget; use
``redisquota`` to share a budget between replicas.

Params (camelCase or snake_case keys; unknown keys are errors)::

    quotas:
      - name: requestcountquota.instance.istio-system   # instance FQN (legacy or short ok)
        maxAmount: 100
        validDuration: 10s          # 0 (default): an allocation counter, freed by negative amounts
        rateLimitAlgorithm: TOKEN_BUCKET   # absent: Istio's memquota rolling window (below)
        bucketDuration: 100ms       # ROLLING_WINDOW only; default validDuration / 10
        alignToEpoch: false         # FIXED_WINDOW only: windows at multiples since the epoch
        burst: 20                   # TOKEN_BUCKET only; default maxAmount
        overrides:
          - dimensions: {destination: ratings}
            maxAmount: 10
            validDuration: 1s       # optional, default the quota's
            burst: 10               # TOKEN_BUCKET only; default the override's maxAmount
                                    # (never the quota's burst)
    minDeduplicationDuration: 1s    # default 1s, must be > 0

Algorithms, per bucket (a bucket is one quota name plus one set of dimension values):

* **absent** (Istio's memquota, kept so existing configs keep their meaning): ``validDuration`` 0
  is an allocation counter: at most ``maxAmount`` in use, negative amounts free. Otherwise a
  rolling window of ``ceil(validDuration / 1s) * 10`` ticks of 100 ms: an amount granted in tick
  ``t`` counts against ``maxAmount`` until tick ``t + ticks``; negative amounts release the most
  recent grants first (racy by nature, as in Istio).
* ``ROLLING_WINDOW``: the same rolling window with ``n = ceil(validDuration / bucketDuration)``
  buckets of ``bucketDuration``.
* ``FIXED_WINDOW`` (Istio's redisquota default): a window opens at the first grant after the
  previous one closed and lasts ``validDuration``; at most ``maxAmount`` is granted in it. Like
  any fixed window it can admit up to 2 x ``maxAmount`` across a window edge. With
  ``alignToEpoch: true`` windows are the multiples of ``validDuration`` since the Unix epoch
  (as envoyproxy/ratelimit's), the first one cut short at its edge.
* ``TOKEN_BUCKET``: capacity ``burst`` (default ``maxAmount``), starts full, refills continuously
  at ``maxAmount`` per ``validDuration``; a request takes whole tokens. ``reset_after`` is the
  time until the bucket is full again.

Requests: ``best_effort`` grants what is left (possibly less than asked); otherwise all or
nothing. A denial is ``granted`` 0 with status ``RESOURCE_EXHAUSTED`` and message
``memquota: Resource exhausted``; a grant carries the configured ``validDuration``. An amount of
0 grants nothing with status OK (and reports the bucket's ``remaining``). Negative amounts free
allocation counters and rolling windows; for fixed windows and token buckets they do nothing.

Override selection: the first override whose every dimension equals (as text) the instance's
dimension value; otherwise the quota's defaults.

Deduplication: a request with a non-empty ``dedup_id`` seen within 1 to 2 x
``minDeduplicationDuration`` for the same charge (the same bucket, amount and best-effort flag)
returns the first result again without charging; the same id on another bucket or with another
amount is a new charge (as in redisquota). Ids live in two
generations swapped every ``minDeduplicationDuration``; a generation holds at most 100 000 ids
(more ids swap it early), so memory stays bounded. Idle buckets (nothing in use) are dropped on
the same schedule.

Memory: the buckets of one handler hold at most ``Env.max_quota_bytes`` (``--max-quota-bucket-
bytes``; each bucket is charged its key plus a fixed overhead). A request that needs a new
bucket past that bound is denied (``RESOURCE_EXHAUSTED``, ``memquota: too many buckets``) and
counted in ``mixer_quota_buckets_refused_total``; existing buckets are never dropped early, since
dropping one would reset a client's count.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from adapters.base import (
    INTERNAL,
    OK,
    RESOURCE_EXHAUSTED,
    AdapterInfo,
    Env,
    Instance,
    ParamError,
    QuotaArgs,
    QuotaResult,
)
from adapters.toolkit import limit_counter
from adapters.toolkit.params import duration_param, param_fields
from adapters.toolkit.quota import (
    Override,
    QuotaConfig,
    QuotaNames,
    RateLimitAlgorithm,
    dimension_text,
    parse_quotas,
)

__all__ = [
    "INFO",
    "Algorithm",
    "MemQuotaHandler",
    "MemQuotaParams",
    "Override",
    "QuotaConfig",
    "bucket_key",
    "parse_params",
]

_TICK_SECONDS = 0.1
_TICKS_PER_SECOND = 10
_MAX_DEDUP_IDS_PER_GENERATION = 100_000
_MIN_BUCKET = datetime.timedelta(milliseconds=1)
_EXHAUSTED = "memquota: Resource exhausted"
_NO_TIME = datetime.timedelta(0)
# Distinct dimension sets whose limit and bucket key are remembered (cleared when full).
_MAX_RESOLVED = 10_000
# What a bucket costs besides its key: the dict slot, the (limit, state) tuple and the state.
_BUCKET_OVERHEAD = 320
_SWEEP_SECONDS = 0.1
_TOO_MANY_BUCKETS = "memquota: too many buckets (--max-quota-bucket-bytes)"
_REFUSED = "mixer_quota_buckets_refused"
_REFUSED_HELP = "Quota requests denied because a new bucket would cross --max-quota-bucket-bytes"


Algorithm = RateLimitAlgorithm
"""This adapter's name for `RateLimitAlgorithm`."""


@dataclass(frozen=True, slots=True)
class MemQuotaParams:
    """The parsed params of a memquota handler."""

    quotas: tuple[QuotaConfig, ...]
    min_deduplication_duration: datetime.timedelta = datetime.timedelta(seconds=1)


# --- params -------------------------------------------------------------------------------


def parse_params(raw: Mapping[str, Any]) -> MemQuotaParams:
    """Parse and validate memquota params (pure; raises `ParamError` naming the field)."""
    f = param_fields(raw, "", frozenset({"quotas", "minDeduplicationDuration"}), sorted_hint=True)
    parsed = parse_quotas(
        f.get("quotas"), "quotas", default_algorithm=None, require_valid_duration=False
    )
    dedup = duration_param(f.get("minDeduplicationDuration", "1s"), "minDeduplicationDuration")
    if dedup <= datetime.timedelta(0):
        raise ParamError("minDeduplicationDuration", "must be > 0")
    return MemQuotaParams(parsed, dedup)


# --- limits, keys and name lookup -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Limit:
    """The effective limit of one request: the quota's, or a matching override's."""

    algorithm: Algorithm | None
    max_amount: int
    valid_seconds: float
    bucket_seconds: float
    capacity: int
    valid_duration: datetime.timedelta
    align_to_epoch: bool = False


def _limit(q: QuotaConfig, dims: Mapping[str, str]) -> _Limit:
    max_amount, valid, burst = q.max_amount, q.valid_duration, q.burst
    for o in q.overrides:
        if all(dims.get(k) == v for k, v in o.dimensions.items()):
            max_amount = o.max_amount
            valid = o.valid_duration if o.valid_duration is not None else valid
            burst = o.burst  # TOKEN_BUCKET: always set (the override's own), else None
            break
    seconds = valid.total_seconds()
    if q.algorithm is Algorithm.ROLLING_WINDOW:
        bucket = q.bucket_duration.total_seconds() if q.bucket_duration else seconds / 10
        bucket = min(max(bucket, _MIN_BUCKET.total_seconds()), seconds)
    else:
        bucket = _TICK_SECONDS
    return _Limit(
        q.algorithm, max_amount, seconds, bucket, burst or max_amount, valid, q.align_to_epoch
    )


def bucket_key(quota_name: str, dims: Mapping[str, str]) -> str:
    """Istio's bucket key: ``<quotaName>;<d1>=<v1>;<d2>=<v2>`` with dimension names sorted."""
    return ";".join([quota_name, *(f"{k}={dims[k]}" for k in sorted(dims))])


def _dimensions(instance: Instance) -> dict[str, str]:
    raw = instance.fields.get("dimensions") or {}
    return {str(k): dimension_text(v) for k, v in raw.items()}


def _take(amount: int, available: int, best_effort: bool) -> int:
    if amount <= available:
        return amount
    return max(available, 0) if best_effort else 0


# --- bucket state -----------------------------------------------------------------------------


class _Bucket(Protocol):
    def alloc(self, amount: int, best_effort: bool, now: float) -> int: ...
    def release(self, amount: int, now: float) -> int: ...
    def state(self, now: float) -> tuple[int, float | None]: ...
    def idle(self, now: float) -> bool: ...


class _Counter:
    """Allocation counter (``validDuration`` 0): in-use amount, freed explicitly."""

    def __init__(self, limit: _Limit) -> None:
        self._max = limit.max_amount
        self._used = 0

    def alloc(self, amount: int, best_effort: bool, now: float) -> int:
        granted = _take(amount, self._max - self._used, best_effort)
        self._used += granted
        return granted

    def release(self, amount: int, now: float) -> int:
        freed = min(amount, self._used)
        self._used -= freed
        return freed

    def state(self, now: float) -> tuple[int, float | None]:
        return max(self._max - self._used, 0), None

    def idle(self, now: float) -> bool:
        return self._used == 0


class _RollingWindow:
    """Grants per tick; a tick's grants count for ``ticks`` ticks (Istio's rollingWindow)."""

    def __init__(self, limit: _Limit) -> None:
        self._max = limit.max_amount
        self._tick = limit.bucket_seconds
        if limit.algorithm is None:
            self._ticks = math.ceil(limit.valid_seconds) * _TICKS_PER_SECOND
        else:
            self._ticks = math.ceil(limit.valid_seconds / limit.bucket_seconds - 1e-9)
        self._slots: deque[list[int]] = deque()  # [tick, amount], oldest first, no empty ticks
        self._used = 0

    def _roll(self, now: float) -> int:
        current = math.floor(now / self._tick)
        while self._slots and self._slots[0][0] <= current - self._ticks:
            self._used -= self._slots.popleft()[1]
        return current

    def alloc(self, amount: int, best_effort: bool, now: float) -> int:
        current = self._roll(now)
        granted = _take(amount, self._max - self._used, best_effort)
        if granted > 0:
            if self._slots and self._slots[-1][0] == current:
                self._slots[-1][1] += granted
            else:
                self._slots.append([current, granted])
            self._used += granted
        return granted

    def release(self, amount: int, now: float) -> int:
        self._roll(now)
        freed = 0
        while self._slots and freed < amount:
            slot = self._slots[-1]
            part = min(slot[1], amount - freed)
            slot[1] -= part
            freed += part
            if slot[1] == 0:
                self._slots.pop()
        self._used -= freed
        return freed

    def state(self, now: float) -> tuple[int, float | None]:
        self._roll(now)
        remaining = max(self._max - self._used, 0)
        if not self._slots:
            return remaining, 0.0
        return remaining, max((self._slots[0][0] + self._ticks) * self._tick - now, 0.0)

    def idle(self, now: float) -> bool:
        self._roll(now)
        return not self._slots


class _FixedWindow:
    """A window opened by the first grant after the previous window closed; with
    ``alignToEpoch``, the window of multiples of its length since the Unix epoch that holds
    that grant (`epoch_offset` turns the handler's clock into Unix time)."""

    def __init__(self, limit: _Limit, epoch_offset: float = 0.0) -> None:
        self._max = limit.max_amount
        self._length = limit.valid_seconds
        self._used = 0
        self._end = -math.inf
        self._offset = epoch_offset if limit.align_to_epoch else None

    def alloc(self, amount: int, best_effort: bool, now: float) -> int:
        if now >= self._end:
            self._used = 0
        granted = _take(amount, self._max - self._used, best_effort)
        if granted > 0:
            if now >= self._end:
                self._end = now + self._length
                if self._offset is not None:
                    self._end -= (now + self._offset) % self._length
            self._used += granted
        return granted

    def release(self, amount: int, now: float) -> int:
        return 0

    def state(self, now: float) -> tuple[int, float | None]:
        if now >= self._end:
            return self._max, 0.0
        return max(self._max - self._used, 0), self._end - now

    def idle(self, now: float) -> bool:
        return now >= self._end


class _TokenBucket:
    """Capacity `burst`, refilled continuously at maxAmount per validDuration."""

    def __init__(self, limit: _Limit) -> None:
        self._capacity = float(limit.capacity)
        self._rate = limit.max_amount / limit.valid_seconds
        self._tokens = self._capacity
        self._stamp = -math.inf

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            if self._stamp != -math.inf:
                self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    def alloc(self, amount: int, best_effort: bool, now: float) -> int:
        self._refill(now)
        granted = _take(amount, math.floor(self._tokens), best_effort)
        self._tokens -= granted
        return granted

    def release(self, amount: int, now: float) -> int:
        return 0

    def state(self, now: float) -> tuple[int, float | None]:
        self._refill(now)
        return math.floor(self._tokens), (self._capacity - self._tokens) / self._rate

    def idle(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self._capacity


def _new_bucket(limit: _Limit, epoch_offset: float) -> _Bucket:
    if limit.algorithm is Algorithm.FIXED_WINDOW:
        return _FixedWindow(limit, epoch_offset)
    if limit.algorithm is None:
        return _Counter(limit) if limit.valid_seconds == 0 else _RollingWindow(limit)
    factories: dict[Algorithm, Callable[[_Limit], _Bucket]] = {
        Algorithm.ROLLING_WINDOW: _RollingWindow,
        Algorithm.TOKEN_BUCKET: _TokenBucket,
    }
    return factories[limit.algorithm](limit)


# --- the handler ------------------------------------------------------------------------------


class MemQuotaHandler:
    """Allocates quota from in-memory buckets. All work is synchronous inside one event loop,
    so each allocation is atomic without locks."""

    answers_inline = True

    def __init__(
        self,
        params: MemQuotaParams,
        clock: Callable[[], float],
        *,
        max_bytes: int = 64 * 1024 * 1024,
        on_refuse: Callable[[], None] | None = None,
    ) -> None:
        self._names = QuotaNames(params.quotas)
        self._max_bytes = max_bytes
        self._bytes = 0
        self._on_refuse = on_refuse
        self._next_sweep = -math.inf
        self._release: Callable[[], None] | None = None
        self._clock = clock
        # Unix time minus the clock's, for windows aligned to the epoch
        self._epoch_offset = time.time() - clock()
        self._period = params.min_deduplication_duration.total_seconds()
        # bucket key -> (the limit it was built for, its state); rebuilt if the limit changes
        self._buckets: dict[str, tuple[_Limit, _Bucket]] = {}
        # (bucket key, amount, best effort, dedup id) -> the first answer
        self._recent: dict[tuple[str, int, bool, str], QuotaResult] = {}
        self._resolved: dict[tuple[object, ...], tuple[_Limit, str]] = {}
        self._by_instance: dict[int, tuple[Instance, tuple[_Limit, str]]] = {}
        self._old: dict[tuple[str, int, bool, str], QuotaResult] = {}
        self._next_rotation = clock() + self._period

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        """Allocate `args.amount` from the instance's bucket (see the module docstring)."""
        now = self._clock()
        self._maintain(now)
        return self._allocate(instance, args, now)

    async def quota_many(self, requests: Sequence[tuple[Instance, QuotaArgs]]) -> list[QuotaResult]:
        """Allocate several quotas; each is independent, as in Mixer (at one instant)."""
        now = self._clock()
        self._maintain(now)
        return [self._allocate(instance, args, now) for instance, args in requests]

    async def close(self) -> None:
        """Drop all state."""
        if self._release is not None:
            self._release()
            self._release = None
        self._buckets.clear()
        self._bytes = 0
        self._resolved.clear()
        self._by_instance.clear()
        self._recent.clear()
        self._old.clear()

    def _allocate(self, instance: Instance, args: QuotaArgs, now: float) -> QuotaResult:
        quota = self._names.find(instance.name)
        if quota is None:
            return QuotaResult(
                granted=0,
                status_code=INTERNAL,
                message=f"memquota: no quota configured for instance {instance.name!r}",
            )
        limit, key = self._resolve(quota, instance)
        if args.max_amount is not None:
            # a per-call limit: its own bucket, so callers with other limits never share one
            limit = replace(limit, max_amount=args.max_amount, capacity=args.max_amount)
            key = f"{key};#max={args.max_amount}"
        if not args.dedup_id:
            return self._charge(limit, key, args, now)
        # The id answers a retry of the same charge only: the same bucket (quota name and
        # dimension values) and the same request. Keyed by the id alone, another client's id
        # would replay that client's grant against an exhausted bucket.
        dedup = (key, args.amount, args.best_effort, args.dedup_id)
        seen = self._recent.get(dedup) or self._old.get(dedup)
        if seen is not None:
            return seen
        result = self._charge(limit, key, args, now)
        if len(self._recent) >= _MAX_DEDUP_IDS_PER_GENERATION:
            self._rotate()
        self._recent[dedup] = result
        return result

    def _resolve(self, quota: QuotaConfig, instance: Instance) -> tuple[_Limit, str]:
        """The limit and bucket key of an instance's dimensions, remembered per distinct
        dimension values (types included: 1 and True are different dimension texts), and per
        instance object: the dispatcher hands one instance to every request that chose it the
        same way (`mixer.runtime.quota_choices`)."""
        seen = self._by_instance.get(id(instance))
        if seen is not None and seen[0] is instance:
            return seen[1]
        raw = instance.fields.get("dimensions") or {}
        try:
            sig = (quota.name, tuple(raw.items()), tuple(map(type, raw.values())))
            resolved = self._resolved.get(sig)
        except TypeError:  # an unhashable dimension value: resolve it every time
            sig, resolved = None, None
        if resolved is None:
            dims = _dimensions(instance)
            resolved = (_limit(quota, dims), bucket_key(quota.name, dims))
            if sig is not None:
                if len(self._resolved) >= _MAX_RESOLVED:
                    self._resolved.clear()
                self._resolved[sig] = resolved
        if len(self._by_instance) >= _MAX_RESOLVED:
            self._by_instance.clear()
        self._by_instance[id(instance)] = (instance, resolved)  # holding it keeps the id unique
        return resolved

    def _charge(self, limit: _Limit, key: str, args: QuotaArgs, now: float) -> QuotaResult:
        entry = self._buckets.get(key)
        if entry is None and not self._room(key, now):
            if self._on_refuse is not None:
                self._on_refuse()
            return QuotaResult(0, _NO_TIME, RESOURCE_EXHAUSTED, _TOO_MANY_BUCKETS)
        if entry is None or (entry[0] is not limit and entry[0] != limit):
            if entry is None:
                self._bytes += _bucket_size(key)
            entry = (limit, _new_bucket(limit, self._epoch_offset))
            self._buckets[key] = entry
        bucket = entry[1]
        if args.amount < 0:
            granted = bucket.release(-args.amount, now)
        elif args.amount == 0:
            granted = 0
        else:
            granted = bucket.alloc(args.amount, args.best_effort, now)
        remaining, reset = bucket.state(now)
        reset_after = None if reset is None else datetime.timedelta(seconds=reset)
        if args.amount > 0 and granted == 0:
            return QuotaResult(
                0,
                _NO_TIME,
                RESOURCE_EXHAUSTED,
                _EXHAUSTED,
                limit.max_amount,
                remaining,
                reset_after,
            )
        valid = limit.valid_duration if args.amount > 0 else _NO_TIME
        return QuotaResult(granted, valid, OK, "", limit.max_amount, remaining, reset_after)

    def _maintain(self, now: float) -> None:
        """Swap dedup generations and drop idle buckets once per dedup period."""
        if now < self._next_rotation:
            return
        # Rotations happen on a fixed schedule, as with Istio's ticker, but lazily: `due` of
        # them are late. Two or more empty both generations.
        due = int((now - self._next_rotation) // self._period) + 1
        if due >= 2:
            self._old.clear()
            self._recent.clear()
        else:
            self._rotate()
        self._next_rotation += due * self._period
        self._drop_idle(now)

    def _drop_idle(self, now: float) -> None:
        idle = [k for k, (_, b) in self._buckets.items() if b.idle(now)]
        for k in idle:
            del self._buckets[k]
            self._bytes -= _bucket_size(k)

    def _room(self, key: str, now: float) -> bool:
        """Whether a new bucket for `key` fits; when not, idle buckets are dropped first (at
        most every `_SWEEP_SECONDS`: a sweep visits every bucket)."""
        if self._bytes + _bucket_size(key) <= self._max_bytes:
            return True
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_SECONDS
            self._drop_idle(now)
        return self._bytes + _bucket_size(key) <= self._max_bytes

    def _rotate(self) -> None:
        self._old, self._recent = self._recent, {}


def _bucket_size(key: str) -> int:
    return sys.getsizeof(key) + _BUCKET_OVERHEAD


def build(params: MemQuotaParams, env: Env) -> MemQuotaHandler:
    """Build a memquota handler; time comes from `env.clock` (monotonic seconds), its bucket
    bound from `env.max_quota_bytes`."""
    counter = limit_counter.acquire(env.registry, _REFUSED, _REFUSED_HELP)
    handler = MemQuotaHandler(
        params,
        env.clock,
        max_bytes=env.max_quota_bytes,
        on_refuse=counter.labels(env.handler_name).inc,
    )
    handler._release = lambda: limit_counter.release(env.registry, _REFUSED, env.handler_name)
    return handler


INFO = AdapterInfo(
    name="memquota",
    description="Quotas and rate limits in process memory (single replica)",
    templates=frozenset({"quota"}),
    parse_params=parse_params,
    build=build,
)
