"""The redisquota handler: each check's quotas in one Lua call per Redis slot.

Flow: `quota_many` resolves each request to a bucket (quota config, override, dimensions); the
check's requests form one group, sent as one EVALSHA per cluster slot (a single server is one
"slot"). Over the pipelined connection of plain URLs (`_Lean`) the group is written at once,
and concurrent checks share the connection, which fails its waiting calls when Redis goes
silent for `timeout`. On redis-py's paths (`_Standalone`, `_Cluster`) a `_Batcher` sends the
group at once when nothing is in flight, and otherwise merges it with the groups of concurrent
checks into one batch, pipelined per node. The caller waits at most `requestTimeout` when set;
an error, a stall or that timeout becomes the handler's fail policy (grant, or UNAVAILABLE) and
is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import math
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from adapters.base import (
    INTERNAL,
    OK,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    Env,
    Instance,
    QuotaArgs,
    QuotaResult,
)
from adapters.redisquota.params import (
    Algorithm,
    QuotaConfig,
    RedisQuotaParams,
    RedisTarget,
    dimension_text,
)
from adapters.redisquota.resp import LeanAddress, RespConnection, lean_address
from adapters.toolkit.quota import QuotaNames

__all__ = ["RedisQuotaHandler", "bucket_key", "dedup_key", "load_script", "redis_keys"]

_SCRIPT_FILES = (
    "common.lua",
    "fixed_window.lua",
    "rolling_window.lua",
    "token_bucket.lua",
    "main.lua",
)
_REPLY_PER_ITEM = 4
_BUCKET_CACHE_SIZE = 10_000
_EXHAUSTED = "redisquota: Resource exhausted"
_PLACEHOLDER = QuotaResult(granted=0)
_LOST = RuntimeError("no reply for this request")


def load_script() -> str:
    """The Lua source sent to Redis: the package's ``.lua`` files joined in dependency order."""
    package = resources.files(__package__)
    return "\n".join(package.joinpath(name).read_text(encoding="utf-8") for name in _SCRIPT_FILES)


def bucket_key(quota_name: str, dims: Mapping[str, str]) -> str:
    """Istio's bucket key: ``<quotaName>;<d1>=<v1>;<d2>=<v2>`` with dimension names sorted."""
    return ";".join([quota_name, *(f"{k}={dims[k]}" for k in sorted(dims))])


def _escape(text: str) -> str:
    # Braces would move the cluster hash tag; percent-encode them (and '%' itself).
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


_SUFFIX = {
    Algorithm.FIXED_WINDOW: ":fw",
    Algorithm.ROLLING_WINDOW: ":rw",
    Algorithm.TOKEN_BUCKET: ":tb",
}
# The algorithm codes main.lua dispatches on.
_LUA_CODE = {
    Algorithm.FIXED_WINDOW: 1,
    Algorithm.ROLLING_WINDOW: 2,
    Algorithm.TOKEN_BUCKET: 3,
}
_LUA_EPOCH_FIXED_WINDOW = 4
"""FIXED_WINDOW with ``alignToEpoch``: windows at multiples of their length since the epoch."""


def _key_base(key: str) -> str:
    return "mixer:{" + _escape(key) + "}"


def redis_keys(key: str, algorithm: Algorithm) -> tuple[str, ...]:
    """A bucket's Redis keys: its state, and for ROLLING_WINDOW the index of its buckets.

    Keys are prefixed ``mixer:`` and hash-tagged with the bucket key, so all keys of a bucket
    (dedup keys too) share a cluster slot. The algorithm is part of the name so a config change
    never reads another algorithm's state.
    """
    state = _key_base(key) + _SUFFIX[algorithm]
    return (state, state + "i") if algorithm is Algorithm.ROLLING_WINDOW else (state,)


def dedup_key(key: str, dedup_id: str, amount: int = 1, best_effort: bool = False) -> str:
    """The Redis key remembering the answer to `dedup_id` charging `amount` on bucket `key`."""
    return f"{_key_base(key)}:dd:{amount}:{1 if best_effort else 0}:{dedup_id}"


@dataclass(frozen=True, slots=True)
class _Limit:
    max_amount: int
    valid: datetime.timedelta
    burst: int


def _limit(q: QuotaConfig, dims: Mapping[str, str]) -> _Limit:
    for o in q.overrides:
        if all(dims.get(k) == v for k, v in o.dimensions.items()):
            return _Limit(
                o.max_amount,
                o.valid_duration or q.valid_duration,
                o.burst or o.max_amount,  # the override's own burst (parse_quotas)
            )
    return _Limit(q.max_amount, q.valid_duration, q.burst or q.max_amount)


@dataclass(frozen=True, slots=True)
class _Bucket:
    """What one bucket's requests share: keys, slot, limit and the constant script arguments."""

    keys: tuple[str, ...]  # the state key, and the rolling window's index key
    dedup_prefix: str
    slot: int
    limit: _Limit
    static_args: str


@dataclass(slots=True)
class _Item:
    """One quota request on its way to Redis: its keys and its JSON array for the script."""

    bucket: _Bucket
    amount: int
    keys: tuple[str, ...]
    arg: str


# per item: (granted, remaining, reset in us, replayed) or the error that prevented an answer
_Outcome = tuple[int, int, int, int] | BaseException


@dataclass(slots=True)
class _Group:
    """The quota requests of one `quota_many` call: batched together, answered together."""

    items: list[_Item]
    future: asyncio.Future[list[_Outcome]]


_Call = tuple[list[str], list[str]]  # (KEYS, ARGV) of one EVALSHA


class _Backend(Protocol):
    def slot(self, key: str) -> int: ...
    async def evalsha(self, sha: str, calls: Sequence[_Call]) -> list[Any]: ...
    async def script_load(self, script: str) -> None: ...
    async def aclose(self) -> None: ...


def _flat(call: _Call) -> list[str]:
    return [*call[0], *call[1]]


class _Standalone:
    """One Redis server (or a proxy). Every request shares one "slot", so a batch is one call."""

    def __init__(self, target: RedisTarget, pool_size: int, timeout: float) -> None:
        # A plain pool suffices: the batcher never has more than `pool_size` batches (one
        # connection each) in flight.
        pool = ConnectionPool.from_url(
            target.url,
            max_connections=pool_size,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry on a fresh connection, for connection errors only: after a
            # Redis restart every pooled connection is stale and would fail once. A retry may
            # repeat a script that ran before the connection broke; requests with a dedup id
            # (Mixer always sends one) are then replayed, not charged twice. Timeouts are not
            # retried: the fail policy handles them.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._client: Redis = Redis(connection_pool=pool)

    def slot(self, key: str) -> int:
        return 0

    async def evalsha(self, sha: str, calls: Sequence[_Call]) -> list[Any]:
        if len(calls) == 1:
            try:
                return [await self._client.evalsha(sha, len(calls[0][0]), *_flat(calls[0]))]
            except ResponseError as err:
                return [err]
        pipe = self._client.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(sha, len(call[0]), *_flat(call))
        return list(await pipe.execute(raise_on_error=False))

    async def script_load(self, script: str) -> None:
        await self._client.script_load(script)

    async def aclose(self) -> None:
        # A client given its pool does not close it by default: say so, or every pooled
        # connection (one per failed attempt during an outage, too) stays open.
        await self._client.aclose(close_connection_pool=True)


class _Lean:
    """One Redis server over one pipelined connection (`resp`): plain ``redis://`` and
    ``unix://`` URLs. Concurrent checks share the connection instead of a pool."""

    def __init__(self, address: LeanAddress, timeout: float) -> None:
        # Liveness, not per-reply latency: see the package docstring ("Timeouts").
        self._connection = RespConnection(address, timeout, stall_timeout=timeout)

    def slot(self, key: str) -> int:
        return 0

    async def evalsha(self, sha: str, calls: Sequence[_Call]) -> list[Any]:
        return await self._connection.call(
            [("EVALSHA", sha, len(call[0]), *_flat(call)) for call in calls]
        )

    async def script_load(self, script: str) -> None:
        (reply,) = await self._connection.call([("SCRIPT", "LOAD", script)])
        if isinstance(reply, Exception):
            raise reply

    async def aclose(self) -> None:
        await self._connection.aclose()


class _Cluster:
    """A Redis Cluster: one EVALSHA per slot, pipelined per node, nodes in parallel."""

    def __init__(self, target: RedisTarget, pool_size: int, timeout: float) -> None:
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=pool_size,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            ssl=target.tls,
            username=target.username,
            password=target.password,
        )

    def slot(self, key: str) -> int:
        return key_slot(key.encode())

    async def evalsha(self, sha: str, calls: Sequence[_Call]) -> list[Any]:
        pipe = self._client.pipeline()
        for call in calls:
            # ClusterPipeline.evalsha is blocked (scripts may touch any key); ours declare all
            # their keys, on one slot, so the raw command is routed correctly by its keys.
            pipe.execute_command("EVALSHA", sha, len(call[0]), *_flat(call))
        return list(await pipe.execute(raise_on_error=False))

    async def script_load(self, script: str) -> None:
        await self._client.script_load(script)  # all primaries

    async def aclose(self) -> None:
        await self._client.aclose()


def _backend(params: RedisQuotaParams, timeout: float) -> _Backend:
    if params.target.cluster:
        return _Cluster(params.target, params.connection_pool_size, timeout)
    lean = lean_address(params.target.url)
    if lean is not None:
        return _Lean(lean, timeout)
    return _Standalone(params.target, params.connection_pool_size, timeout)


class _Batcher:
    """Merges the request groups of concurrent checks into batches (redis-py's paths only).

    A group (one check's quotas) is never split. When nothing is queued or in flight, the caller
    sends its group at once (`send_now`: no added latency when idle). Otherwise groups queue and
    leave together after `window`, or as soon as `max_items` are queued, or when a batch returns.
    At most `max_inflight` batches are in flight (one connection each).
    """

    def __init__(
        self,
        send: Callable[[list[_Group]], Awaitable[None]],
        window: float,
        max_items: int,
        max_inflight: int,
    ) -> None:
        self._send = send
        self._window = window
        self._max_items = max_items
        self._max_inflight = max_inflight
        self._pending: deque[_Group] = deque()
        self._pending_items = 0
        self._inflight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def idle(self) -> bool:
        """Nothing queued and nothing in flight: a caller may send its group right away."""
        return self._inflight == 0 and not self._pending

    async def send_now(self, group: _Group) -> None:
        """Send `group` alone from the caller's own task (saves a task and a loop iteration)."""
        self._inflight += 1
        try:
            await self._send([group])
        finally:
            self._inflight -= 1
            if self._pending:
                self._flush()

    def submit(self, group: _Group) -> None:
        self._pending.append(group)
        self._pending_items += len(group.items)
        if self._pending_items >= self._max_items:
            self._flush()
        elif self._timer is None:
            # not idle (see `idle`): a batch is in flight, so wait a little for company
            self._timer = asyncio.get_running_loop().call_later(self._window, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and self._inflight < self._max_inflight:
            batch: list[_Group] = []
            size = 0
            while self._pending and (
                not batch or size + len(self._pending[0].items) <= self._max_items
            ):
                group = self._pending.popleft()
                self._pending_items -= len(group.items)
                if not group.future.done():  # else its caller gave up (timeout) already
                    batch.append(group)
                    size += len(group.items)
            if batch:
                self._inflight += 1
                task = asyncio.create_task(self._run(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Group]) -> None:
        try:
            await self._send(batch)
        finally:
            self._inflight -= 1
            if self._pending:
                self._flush()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for group in self._pending:
            group.future.cancel()
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _parse_reply(reply: Any, items: int) -> list[int] | BaseException:
    """The script's reply (JSON ``[granted, remaining, reset, replayed, ...]``) as integers, or
    why it is unusable."""
    if isinstance(reply, BaseException):
        return reply
    try:
        values = [int(v) for v in json.loads(reply)]
    except (TypeError, ValueError):
        values = []
    if len(values) != _REPLY_PER_ITEM * items:
        return ResponseError(f"unexpected script reply {reply!r:.200}")
    return values


def _expire(group: _Group, timeout: float) -> None:
    """The caller's deadline: answer the group with timeouts (the batch may still finish)."""
    if not group.future.done():
        group.future.set_result([TimeoutError(f"no answer within {timeout:g}s")] * len(group.items))


@dataclass
class _SharedCounter:
    counter: Counter
    users: int = 0


# One backend-error counter per registry, shared (labelled by handler) by every redisquota
# handler built on it, because a registry refuses two collectors with one metric name.
_ERROR_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, _SharedCounter] = (
    weakref.WeakKeyDictionary()
)


def _acquire_counter(registry: CollectorRegistry) -> Counter:
    shared = _ERROR_COUNTERS.get(registry)
    if shared is None:
        counter = Counter(
            "mixer_quota_backend_errors",
            "Quota requests a quota backend failed to answer (errors and timeouts)",
            ["handler"],
            registry=registry,
        )
        shared = _ERROR_COUNTERS[registry] = _SharedCounter(counter)
    shared.users += 1
    return shared.counter


def _release_counter(registry: CollectorRegistry, handler: str) -> None:
    shared = _ERROR_COUNTERS.get(registry)
    if shared is None:
        return
    with contextlib.suppress(KeyError):  # KeyError: this handler never counted an error
        shared.counter.remove(handler)
    shared.users -= 1
    if shared.users == 0:
        registry.unregister(shared.counter)
        del _ERROR_COUNTERS[registry]


class RedisQuotaHandler:
    """Allocates quotas in Redis; all quotas of one call share one round trip per Redis node.
    See the package docstring for semantics."""

    def __init__(self, params: RedisQuotaParams, env: Env) -> None:
        self._params = params
        self._names = QuotaNames(params.quotas)
        self._handler_name = env.handler_name
        self._log = env.logger
        self._timeout = params.timeout.total_seconds()
        # None: no bound of the handler's own; the caller (mixer's handler timeout) bounds it
        self._request_timeout = (
            params.request_timeout.total_seconds() if params.request_timeout else None
        )
        self._dedup_ttl_ms = math.ceil(2 * params.min_deduplication_duration.total_seconds() * 1000)
        self._script = load_script()
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()
        self._backend = _backend(params, self._timeout)
        self._pipelined = isinstance(self._backend, _Lean)
        self._registry = env.registry
        self._errors = _acquire_counter(env.registry).labels(handler=env.handler_name)
        self._failing = False
        self._closed = False
        self._buckets: dict[str, _Bucket] = {}
        self._by_instance: dict[int, tuple[Instance, _Bucket]] = {}
        self._batcher = _Batcher(
            self._send,
            params.batch_window.total_seconds(),
            params.batch_max_items,
            params.connection_pool_size,
        )

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        """Allocate one quota; a batch of one for `quota_many`."""
        return (await self.quota_many([(instance, args)]))[0]

    async def quota_many(self, requests: Sequence[tuple[Instance, QuotaArgs]]) -> list[QuotaResult]:
        """Allocate several quotas (e.g. all quotas of one check) in one Redis round trip.

        Each quota is decided independently, as in Mixer. Results are in request order.
        Never raises for backend trouble: that becomes the fail policy's result.
        """
        if self._closed:
            raise RuntimeError("redisquota handler is closed")
        results: list[QuotaResult] = []
        items: list[_Item] = []
        slots: list[int] = []  # index in `results` of each item
        for instance, args in requests:
            quota = self._names.find(instance.name)
            if quota is None:
                results.append(
                    QuotaResult(
                        granted=0,
                        status_code=INTERNAL,
                        message=f"redisquota: no quota configured for instance {instance.name!r}",
                    )
                )
                continue
            slots.append(len(results))
            results.append(_PLACEHOLDER)
            items.append(self._item(quota, instance, args))
        if items:
            for index, item, outcome in zip(slots, items, await self._run(items), strict=True):
                results[index] = self._result(item, outcome)
        return results

    async def _run(self, items: list[_Item]) -> list[_Outcome]:
        """Submit one group and wait for it, at most `timeout`."""
        loop = asyncio.get_running_loop()
        group = _Group(items, loop.create_future())
        if self._pipelined:
            # One write per check on the shared connection: merging checks into one EVALSHA
            # cost more than it saved (timers, a task per batch, a second round trip for a
            # check queued behind a batch in flight).
            await self._send([group])  # bounded by `timeout` inside `_send`
            return group.future.result()
        if self._batcher.idle():
            await self._batcher.send_now(group)  # bounded by `timeout` inside `_send`
            return group.future.result()
        self._batcher.submit(group)
        if self._request_timeout is None:
            return await group.future  # a cancelled wait leaves the group out of its batch
        timer = loop.call_later(self._request_timeout, _expire, group, self._request_timeout)
        try:
            return await group.future
        finally:
            timer.cancel()

    def _bucket(
        self, quota: QuotaConfig, dims: Mapping[str, str], max_amount: int | None = None
    ) -> _Bucket:
        key = bucket_key(quota.name, dims)
        if max_amount is not None:
            # a per-call limit: its own bucket, so callers with other limits never share one
            key = f"{key};#max={max_amount}"
        cached = self._buckets.get(key)
        if cached is not None:
            return cached
        limit = _limit(quota, dims)
        if max_amount is not None:
            limit = _Limit(max_amount, limit.valid, max_amount)
        # parse_params always sets an algorithm (FIXED_WINDOW when absent, as Istio's redisquota).
        algorithm = quota.algorithm or Algorithm.FIXED_WINDOW
        keys = redis_keys(key, algorithm)
        window_us = round(limit.valid.total_seconds() * 1e6)
        bucket_us = window_us
        buckets = 1
        if algorithm is Algorithm.ROLLING_WINDOW:
            bucket = quota.bucket_duration or limit.valid / 10
            bucket_us = min(max(round(bucket.total_seconds() * 1e6), 1000), window_us)
            buckets = math.ceil(window_us / bucket_us)
        code = _LUA_CODE[algorithm]
        if quota.align_to_epoch:
            code = _LUA_EPOCH_FIXED_WINDOW
        static = f"{code},{limit.max_amount},{window_us},{buckets},{bucket_us},{limit.burst}"
        found = _Bucket(keys, f"{_key_base(key)}:dd:", self._backend.slot(keys[0]), limit, static)
        if len(self._buckets) >= _BUCKET_CACHE_SIZE:
            self._buckets.clear()  # crude but bounded; refilling costs only CPU
        self._buckets[key] = found
        return found

    def _item(self, quota: QuotaConfig, instance: Instance, args: QuotaArgs) -> _Item:
        seen = self._by_instance.get(id(instance))
        if seen is not None and seen[0] is instance and args.max_amount is None:
            bucket = seen[1]
        else:
            raw = instance.fields.get("dimensions") or {}
            dims = {str(k): dimension_text(v) for k, v in raw.items()}
            bucket = self._bucket(quota, dims, args.max_amount)
            # The dispatcher hands the same instance to every request that chose it the same
            # way (`mixer.runtime.quota_choices`): next time the object finds its bucket. The
            # entry holds the instance, so its id stays unique.
            if args.max_amount is None:
                if len(self._by_instance) >= _BUCKET_CACHE_SIZE:
                    self._by_instance.clear()
                self._by_instance[id(instance)] = (instance, bucket)
        amount = max(args.amount, 0)  # Redis quotas are rates: nothing to release
        keys = bucket.keys
        ttl = 0
        best_effort = 1 if args.best_effort else 0
        if args.dedup_id:
            # A retry of the same charge only: the bucket is in the key's hash tag, and the
            # amount and best-effort flag are in its name (memquota keys its ids the same way).
            dedup = f"{bucket.dedup_prefix}{args.amount}:{best_effort}:{args.dedup_id}"
            keys, ttl = (*keys, dedup), self._dedup_ttl_ms
        arg = f"[{amount},{best_effort},{ttl},{bucket.static_args}]"
        return _Item(bucket, amount, keys, arg)

    async def _send(self, batch: list[_Group]) -> None:
        """Run one batch: one EVALSHA per slot; answers every group's future."""
        by_slot: dict[int, list[tuple[list[_Outcome | None], int, _Item]]] = {}
        answers: list[list[_Outcome | None]] = []
        for group in batch:
            answer: list[_Outcome | None] = [None] * len(group.items)
            answers.append(answer)
            for n, item in enumerate(group.items):
                by_slot.setdefault(item.bucket.slot, []).append((answer, n, item))
        calls: list[_Call] = []
        for entries in by_slot.values():
            keys: list[str] = []
            for _, _, item in entries:
                keys += item.keys
            calls.append((keys, ["[" + ",".join(item.arg for _, _, item in entries) + "]"]))
        replies: list[Any]
        try:
            async with asyncio.timeout(self._request_timeout):
                replies = await self._backend.evalsha(self._sha, calls)
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:  # first use, or the server restarted or flushed its scripts
                    await self._backend.script_load(self._script)
                    again = await self._backend.evalsha(self._sha, [calls[i] for i in missing])
                    for i, reply in zip(missing, again, strict=True):
                        replies[i] = reply
        except Exception as err:  # any backend failure is a result (the fail policy), not a crash
            replies = [err] * len(calls)
        for entries, reply in zip(by_slot.values(), replies, strict=True):
            parsed = _parse_reply(reply, len(entries))
            for k, (answer, n, _) in enumerate(entries):
                if isinstance(parsed, BaseException):
                    answer[n] = parsed
                else:
                    r = k * _REPLY_PER_ITEM
                    answer[n] = (parsed[r], parsed[r + 1], parsed[r + 2], parsed[r + 3])
        for group, answer in zip(batch, answers, strict=True):
            if not group.future.done():
                group.future.set_result([a if a is not None else _LOST for a in answer])

    def _result(self, item: _Item, outcome: _Outcome) -> QuotaResult:
        if isinstance(outcome, BaseException):
            return self._failure(item, outcome)
        if self._failing:
            self._failing = False
            self._log.info("redisquota %s: Redis answers again", self._handler_name)
        granted, remaining, reset_us, _ = outcome
        limit = item.bucket.limit
        reset = datetime.timedelta(microseconds=reset_us)
        if item.amount > 0 and granted <= 0:
            return QuotaResult(
                granted=0,
                status_code=RESOURCE_EXHAUSTED,
                message=_EXHAUSTED,
                limit=limit.max_amount,
                remaining=remaining,
                reset_after=reset,
            )
        return QuotaResult(
            granted=granted,
            valid_duration=limit.valid if granted > 0 else datetime.timedelta(0),
            status_code=OK,
            limit=limit.max_amount,
            remaining=remaining,
            reset_after=reset,
        )

    def _failure(self, item: _Item, err: BaseException) -> QuotaResult:
        self._errors.inc()
        if not self._failing:
            self._failing = True  # log once per outage, not once per request
            self._log.warning(
                "redisquota %s: Redis failed (%s: %s); %s until it answers again",
                self._handler_name,
                type(err).__name__,
                err,
                "granting (failOpen)" if self._params.fail_open else "denying with UNAVAILABLE",
            )
        if self._params.fail_open:
            return QuotaResult(
                granted=item.amount,
                valid_duration=item.bucket.limit.valid
                if item.amount > 0
                else datetime.timedelta(0),
                status_code=OK,
                message="redisquota: backend unavailable, granted by failOpen",
                limit=item.bucket.limit.max_amount,
            )
        return QuotaResult(
            granted=0,
            status_code=UNAVAILABLE,
            message=f"redisquota: backend unavailable: {type(err).__name__}",
            limit=item.bucket.limit.max_amount,
        )

    async def close(self) -> None:
        """Stop batching, close connections and unregister this handler's metric."""
        if self._closed:
            return
        self._closed = True
        await self._batcher.close()
        await self._backend.aclose()
        _release_counter(self._registry, self._handler_name)


def build(params: RedisQuotaParams, env: Env) -> RedisQuotaHandler:
    """Build a redisquota handler. Connects lazily: an unreachable Redis is a request-time failure
    handled by the fail policy, never a build error."""
    return RedisQuotaHandler(params, env)
