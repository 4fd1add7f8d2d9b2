"""Redis commands per check, counted by the server (`INFO commandstats`): all quotas of a check
cost one command; concurrent checks share one pipelined connection (plain URLs) or commands
(redis-py's paths)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from adapters import redisquota
from adapters.base import OK, Env, Instance, QuotaArgs
from adapters.redisquota.handler import RedisQuotaHandler
from tests.redis_server import RedisCluster, RedisServer, command_stats

pytestmark = pytest.mark.integration

# Commands our Lua script runs inside Redis (commandstats counts those too), and the ones this
# test itself sends to read and reset the stats. Anything else was sent by the handler.
SCRIPT_INTERNAL = {
    "time", "get", "set", "hget", "hmget", "hset", "hdel", "hincrby", "pexpire",
    "zadd", "zrange", "zrangebyscore", "zremrangebyscore",
}  # fmt: skip
MEASUREMENT = {"info", "ping"}
Stats = Callable[[], dict[str, int]]
ALGORITHMS = ["FIXED_WINDOW", "ROLLING_WINDOW", "TOKEN_BUCKET"]


def quotas(n: int) -> list[dict[str, object]]:
    return [
        {
            "name": f"q{i}.instance.ns",
            "maxAmount": 10**6,
            "validDuration": "10s",
            "rateLimitAlgorithm": ALGORITHMS[i % 3],
        }
        for i in range(n)
    ]


@pytest.fixture
def stats(redis_server: RedisServer) -> Iterator[Callable[[], dict[str, int]]]:
    """Reads the shared server's commandstats over one connection opened up front."""
    with redis_server.client() as client:
        client.ping()
        yield lambda: command_stats(redis_server, client)


@pytest.fixture
async def make() -> AsyncIterator[list[RedisQuotaHandler]]:
    built: list[RedisQuotaHandler] = []
    yield built
    for h in built:
        await h.close()


def handler(url: str, n: int, built: list[RedisQuotaHandler]) -> RedisQuotaHandler:
    params = redisquota.parse_params({"redisServerUrl": url, "timeout": "2s", "quotas": quotas(n)})
    env = Env("rt.handler.ns", logging.getLogger("test"), CollectorRegistry(), time.monotonic)
    h = redisquota.build(params, env)
    built.append(h)
    return h


def check(n: int, i: int) -> list[tuple[Instance, QuotaArgs]]:
    """One check asking for n quotas, with per-client dimensions and a dedup id."""
    return [
        (
            Instance(f"q{q}.instance.ns", "quota", {"dimensions": {"client": f"c{i % 7}"}}),
            QuotaArgs(1, dedup_id=f"req{i};q{q}"),
        )
        for q in range(n)
    ]


def sent_by_client(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands the handler sent, by name (Redis 7 counts ``script|load`` per subcommand)."""
    sent: dict[str, int] = {}
    for cmd, calls in after.items():
        name = cmd.split("|")[0]
        if name not in SCRIPT_INTERNAL | MEASUREMENT and calls > before.get(cmd, 0):
            sent[name] = sent.get(name, 0) + calls - before.get(cmd, 0)
    return sent


@pytest.mark.parametrize("n_quotas", [1, 3, 10])
async def test_each_check_costs_one_command_whatever_its_quota_count(
    redis_server: RedisServer, stats: Stats, make: list[RedisQuotaHandler], n_quotas: int
) -> None:
    h = handler(redis_server.url, n_quotas, make)
    assert all(r.status_code == OK for r in await h.quota_many(check(n_quotas, -1)))  # connects
    checks = 40
    before = stats()
    for i in range(checks):
        results = await h.quota_many(check(n_quotas, i))
        assert [r.granted for r in results] == [1] * n_quotas
    sent = sent_by_client(before, stats())
    assert sent == {"evalsha": checks}


async def test_concurrent_checks_share_one_pipelined_connection(
    redis_server: RedisServer, stats: Stats, make: list[RedisQuotaHandler]
) -> None:
    h = handler(redis_server.url, 3, make)
    await h.quota_many(check(3, -1))  # connects
    with redis_server.client() as c:
        connections = int(c.info("stats")["total_connections_received"])
    before = stats()
    results = await asyncio.gather(*(h.quota_many(check(3, i)) for i in range(64)))
    assert all(r.granted == 1 for rs in results for r in rs)
    assert sent_by_client(before, stats()) == {"evalsha": 64}  # one per check
    with redis_server.client() as c:
        # only this reading client is new: the 64 checks went over the handler's one connection
        assert int(c.info("stats")["total_connections_received"]) == connections + 1


async def test_concurrent_checks_share_commands_on_redis_py(
    redis_server: RedisServer, stats: Stats, make: list[RedisQuotaHandler]
) -> None:
    # A URL option that the lean connection leaves to redis-py (as it does TLS).
    h = handler(f"{redis_server.url}?client_name=roundtrips", 3, make)
    await h.quota_many(check(3, -1))
    before = stats()
    results = await asyncio.gather(*(h.quota_many(check(3, i)) for i in range(64)))
    assert all(r.granted == 1 for rs in results for r in rs)
    sent = sent_by_client(before, stats())
    assert set(sent) <= {"evalsha", "hello", "client"}  # new pooled connections say hello
    assert 1 <= sent["evalsha"] <= 8, sent


async def test_script_is_reloaded_after_script_flush(
    redis_server: RedisServer, stats: Stats, make: list[RedisQuotaHandler]
) -> None:
    h = handler(redis_server.url, 1, make)
    await h.quota_many(check(1, 0))
    with redis_server.client() as c:
        c.script_flush()
    before = stats()
    results = await h.quota_many(check(1, 1))
    assert results[0].granted == 1
    sent = sent_by_client(before, stats())
    assert sent == {"evalsha": 2, "script": 1}  # NOSCRIPT, SCRIPT LOAD, EVALSHA


async def test_cluster_check_costs_at_most_one_command_per_slot(
    redis_cluster: RedisCluster, make: list[RedisQuotaHandler]
) -> None:
    h = handler(redis_cluster.url, 10, make)
    await h.quota_many(check(10, -1))
    evalsha_before = redis_cluster.calls("evalsha")
    checks = 20
    for i in range(checks):
        assert [r.granted for r in await h.quota_many(check(10, i))] == [1] * 10
    # 10 buckets spread over the cluster's slots: at most one EVALSHA per bucket, and the
    # whole check is one pipeline per node (nodes in parallel)
    assert checks <= redis_cluster.calls("evalsha") - evalsha_before <= checks * 10
