"""redisquota on a real redis-server and on a real 3-master Redis Cluster (every test runs on both).

Two handlers built on the same Redis stand for two mixer replicas: separate connection pools,
separate registries, one budget.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters import redisquota
from adapters.base import OK, RESOURCE_EXHAUSTED, Env, Instance, QuotaArgs, QuotaResult
from adapters.redisquota.handler import RedisQuotaHandler
from tests.redis_server import RedisCluster, RedisServer

pytestmark = pytest.mark.integration

NAME = "requestcount.instance.istio-system"
Target = tuple[str, RedisServer | RedisCluster]
Factory = Callable[..., RedisQuotaHandler]


@pytest.fixture
async def handlers(redis_target: Target) -> AsyncIterator[Factory]:
    """make(**quota_fields) builds a handler ("a replica") on the test's Redis target."""
    _, target = redis_target
    built: list[RedisQuotaHandler] = []

    def make(quotas: list[dict[str, Any]] | None = None, **fields: Any) -> RedisQuotaHandler:
        raw = {
            "redisServerUrl": target.url,
            "timeout": "2s",  # generous: these tests are about semantics, not outages
            "quotas": quotas or [{"name": NAME, **fields}],
        }
        env = Env(
            f"replica{len(built)}.handler.istio-system",
            logging.getLogger("test"),
            CollectorRegistry(),
            time.monotonic,
        )
        handler = redisquota.build(redisquota.parse_params(raw), env)
        built.append(handler)
        return handler

    yield make
    for handler in built:
        await handler.close()


def inst(dims: dict[str, Any] | None = None, name: str = NAME) -> Instance:
    return Instance(name, "quota", {"dimensions": dims or {}})


async def take(h: RedisQuotaHandler, amount: int = 1, **kw: Any) -> QuotaResult:
    dims = kw.pop("dims", None)
    return await h.quota(inst(dims), QuotaArgs(amount, **kw))


async def test_five_per_ten_seconds_grants_exactly_five_of_seven(handlers: Factory) -> None:
    h = handlers(maxAmount=5, validDuration="10s")
    results = [await take(h) for _ in range(7)]
    assert [r.granted for r in results] == [1, 1, 1, 1, 1, 0, 0]
    assert [r.status_code for r in results] == [OK] * 5 + [RESOURCE_EXHAUSTED] * 2
    assert results[0].valid_duration == datetime.timedelta(seconds=10)
    assert results[-1].message == "redisquota: Resource exhausted"
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0, 0]
    assert results[-1].limit == 5
    assert results[-1].reset_after is not None
    assert datetime.timedelta(seconds=9) < results[-1].reset_after <= datetime.timedelta(seconds=10)


async def test_two_replicas_share_one_budget(handlers: Factory) -> None:
    a = handlers(maxAmount=5, validDuration="10s")
    b = handlers(maxAmount=5, validDuration="10s")
    results = await asyncio.gather(*(take(a if i % 2 else b) for i in range(10)))
    assert sum(r.granted for r in results) == 5
    assert sorted(r.status_code for r in results) == [OK] * 5 + [RESOURCE_EXHAUSTED] * 5


async def test_retry_is_charged_once_also_on_another_replica(handlers: Factory) -> None:
    a = handlers(maxAmount=3, validDuration="10s")
    b = handlers(maxAmount=3, validDuration="10s")
    first = await take(a, 2, dedup_id="req-1;requestcount")
    retry = await take(b, 2, dedup_id="req-1;requestcount")
    assert (first.granted, retry.granted) == (2, 2)
    assert retry.status_code == OK
    assert retry.remaining == 1  # the retry charged nothing
    assert (await take(b, 1, dedup_id="req-2;requestcount")).granted == 1
    assert (await take(a, 1, dedup_id="req-3;requestcount")).granted == 0


async def test_denial_is_replayed_for_the_same_dedup_id(handlers: Factory) -> None:
    h = handlers(maxAmount=1, validDuration="10s")
    await take(h)
    assert (await take(h, dedup_id="d")).status_code == RESOURCE_EXHAUSTED
    assert (await take(h, dedup_id="d")).status_code == RESOURCE_EXHAUSTED


async def test_best_effort_grants_what_is_left(handlers: Factory) -> None:
    h = handlers(maxAmount=5, validDuration="10s")
    assert (await take(h, 3)).granted == 3
    assert (await take(h, 4)).granted == 0  # all or nothing
    partial = await take(h, 4, best_effort=True)
    assert (partial.granted, partial.status_code, partial.remaining) == (2, OK, 0)
    empty = await take(h, 1, best_effort=True)
    assert (empty.granted, empty.status_code) == (0, RESOURCE_EXHAUSTED)


async def test_overrides_match_their_dimensions(handlers: Factory) -> None:
    h = handlers(
        maxAmount=3,
        validDuration="10s",
        overrides=[
            {"dimensions": {"destination": "ratings"}, "maxAmount": 1},
            {"dimensions": {"destination": "reviews", "source": "10.0.0.1"}, "maxAmount": 2},
        ],
    )

    async def granted(dims: dict[str, Any]) -> int:
        return sum([(await take(h, dims=dims)).granted for _ in range(5)])

    assert await granted({"destination": "ratings", "source": "x"}) == 1
    assert await granted({"destination": "reviews", "source": b"\x0a\x00\x00\x01"}) == 2
    assert await granted({"destination": "reviews", "source": "10.0.0.2"}) == 3
    assert await granted({"destination": "details"}) == 3


async def test_fixed_window_gives_a_full_budget_again_after_the_window(handlers: Factory) -> None:
    h = handlers(maxAmount=2, validDuration="400ms", rateLimitAlgorithm="FIXED_WINDOW")
    assert (await take(h)).granted == 1
    opened_by = time.monotonic()  # the window opened (server time) before this answer came
    assert [(await take(h)).granted for _ in range(2)] == [1, 0]
    await asyncio.sleep(0.15)
    late = await take(h)
    assert late.granted == 0  # the window opened at the first grant still holds
    assert late.reset_after is not None
    assert late.reset_after <= datetime.timedelta(milliseconds=250)
    await asyncio.sleep(max(opened_by + 0.45 - time.monotonic(), 0))
    assert [(await take(h)).granted for _ in range(3)] == [1, 1, 0]


async def test_rolling_window_frees_each_bucket_when_it_leaves(handlers: Factory) -> None:
    h = handlers(
        maxAmount=2, validDuration="1s", bucketDuration="100ms", rateLimitAlgorithm="ROLLING_WINDOW"
    )
    assert (await take(h)).granted == 1
    first_by = time.monotonic()  # its bucket leaves the window by first_by + 1.0 s
    await asyncio.sleep(0.6)
    # this grant's bucket starts after now - 0.1 s: it stays until at least now + 0.9 s
    assert [(await take(h)).granted for _ in range(2)] == [1, 0]
    await asyncio.sleep(max(first_by + 1.15 - time.monotonic(), 0))
    assert [(await take(h)).granted for _ in range(2)] == [1, 0]


async def test_token_bucket_refills_up_to_its_burst(handlers: Factory) -> None:
    h = handlers(maxAmount=5, validDuration="1s", rateLimitAlgorithm="TOKEN_BUCKET", burst=3)
    first = await take(h, 10, best_effort=True)
    emptied_by = time.monotonic()
    assert (first.granted, first.remaining) == (3, 0)  # the burst
    assert (await take(h)).granted == 0
    await asyncio.sleep(max(emptied_by + 0.4 - time.monotonic(), 0))  # 5/s: two tokens back
    refilled = await take(h, 10, best_effort=True)
    assert 2 <= refilled.granted <= 3
    await asyncio.sleep(1.2)  # six tokens' worth of time, but the bucket holds three
    assert (await take(h, 10, best_effort=True)).granted == 3


async def test_quota_many_takes_several_quotas_in_order(handlers: Factory) -> None:
    h = handlers(
        quotas=[
            {"name": "a.instance.ns", "maxAmount": 1, "validDuration": "10s"},
            {"name": "b.instance.ns", "maxAmount": 2, "validDuration": "10s"},
        ]
    )
    reqs = [
        (inst(name="a.instance.ns"), QuotaArgs(1)),
        (inst(name="b.instance.ns"), QuotaArgs(2)),
        (inst(name="nope.instance.ns"), QuotaArgs(1)),
        (inst(name="a.instance.ns"), QuotaArgs(1)),
    ]
    results = await h.quota_many(reqs)
    assert [r.granted for r in results] == [1, 2, 0, 0]
    assert results[2].message.startswith("redisquota: no quota configured")


async def test_many_concurrent_checks_never_overgrant(handlers: Factory) -> None:
    a = handlers(maxAmount=50, validDuration="10s")
    b = handlers(maxAmount=50, validDuration="10s")
    results = await asyncio.gather(*(take(a if i % 3 else b) for i in range(200)))
    assert sum(r.granted for r in results) == 50
