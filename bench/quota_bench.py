"""Quota benchmark: Redis commands per check, and throughput against `limits`' moving window.

Run from the repository root::

    .venv/bin/python -m bench.quota_bench                 # starts its own redis-server
    .venv/bin/python -m bench.quota_bench --redis-url redis://127.0.0.1:6379   # loopback only

1. **Commands per check** for checks of 1, 3 and 10 quotas (mixed algorithms, a dedup id per
   quota), counted by the server (`INFO commandstats` deltas, read over one connection opened
   beforehand). Redis also counts the commands a Lua script runs, so the figures are split into
   *sent* (commands the client sent: what costs round trips) and *in-script*.
2. **Throughput**: checks/s of redisquota vs `limits.aio.strategies.MovingWindowRateLimiter` on
   `limits`' async Redis storage (redis-py), against the same Redis, same key space (1000
   clients), same concurrency, limits high enough that everything is admitted. A check of k
   quotas is k `hit()` calls for `limits`, run concurrently (`asyncio.gather`) to give it every
   chance. Approaches are interleaved over `--repeats`; medians are printed, with ratios.

Everything is bounded: each measured block stops after `--checks` checks or `--seconds`.
Exit status 0 when both targets hold: <= 1 command sent per check, and >= 2x the throughput of
`limits` at `--concurrency`. Run it on a quiet machine: Redis and the client share the CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import logging
import statistics
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import CollectorRegistry

from adapters import redisquota
from adapters.base import OK, Env, Instance, QuotaArgs
from adapters.redisquota.handler import RedisQuotaHandler
from tests.redis_server import RedisServer

SCRIPT_INTERNAL = {
    "time", "get", "set", "hget", "hmget", "hset", "hdel", "hincrby", "pexpire",
    "zadd", "zrange", "zrangebyscore", "zremrangebyscore",
}  # fmt: skip
MEASUREMENT = {"info", "ping"}  # what this benchmark itself sends to read the stats
ALGORITHMS = ("FIXED_WINDOW", "ROLLING_WINDOW", "TOKEN_BUCKET")
CLIENTS = 1000
BIG = 10**9


def quota_config(i: int) -> dict[str, Any]:
    """Quota `i` of a check: algorithms alternate; limits never bind."""
    algorithm = ALGORITHMS[i % len(ALGORITHMS)]
    config: dict[str, Any] = {
        "name": f"q{i}.instance.bench",
        "maxAmount": BIG,
        "validDuration": "60s",
        "rateLimitAlgorithm": algorithm,
    }
    if algorithm == "ROLLING_WINDOW":
        config["bucketDuration"] = "1s"
    return config


def build_handler(url: str, n_quotas: int) -> RedisQuotaHandler:
    """A redisquota handler with `n_quotas` quotas on `url`."""
    quotas = [quota_config(i) for i in range(n_quotas)]
    params = redisquota.parse_params({"redisServerUrl": url, "timeout": "1s", "quotas": quotas})
    env = Env("bench.handler", logging.getLogger("bench"), CollectorRegistry(), time.monotonic)
    return redisquota.build(params, env)


def check(n_quotas: int, i: int) -> list[tuple[Instance, QuotaArgs]]:
    """Check number `i`: `n_quotas` quota requests of one client (of 1000), with dedup ids."""
    dims = {"client": f"c{i % CLIENTS}"}
    return [
        (
            Instance(f"q{q}.instance.bench", "quota", {"dimensions": dims}),
            QuotaArgs(1, dedup_id=f"r{i};q{q}"),
        )
        for q in range(n_quotas)
    ]


async def run_block(
    one: Callable[[int], Awaitable[bool]], concurrency: int, checks: int, seconds: float
) -> tuple[int, float, int]:
    """Run `one(i)` from `concurrency` workers until `checks` or `seconds`; (done, s, failed)."""
    counter = 0
    failed = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal counter, failed
        while counter < checks and time.perf_counter() < deadline:
            i = counter
            counter += 1
            if not await one(i):
                failed += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counter, time.perf_counter() - start, failed


def command_stats(client: redis.Redis) -> dict[str, int]:
    """`INFO commandstats` over an already-open connection: command -> calls.

    Redis 7 counts subcommands apart (``script|load``); they are summed under the command.
    """
    calls: dict[str, int] = {}
    for key, value in client.info("commandstats").items():
        name = key.removeprefix("cmdstat_").split("|")[0]
        calls[name] = calls.get(name, 0) + int(value["calls"])
    return calls


Check = Callable[[int], Awaitable[bool]]
_request_ids = itertools.count()  # unique dedup ids across blocks: no check is a replay


def redisquota_check(h: RedisQuotaHandler, n_quotas: int) -> Check:
    """One check of `n_quotas` quotas through redisquota; True if all were granted."""

    async def one(_: int) -> bool:
        results = await h.quota_many(check(n_quotas, next(_request_ids)))
        return all(r.status_code == OK and r.granted == 1 for r in results)

    return one


def limits_check(limiter: MovingWindowRateLimiter, item: RateLimitItem, n_quotas: int) -> Check:
    """The same check with `limits`: one hit per quota, all concurrently."""

    async def one(i: int) -> bool:
        client = f"c{i % CLIENTS}"
        hits = [limiter.hit(item, f"q{q}", client) for q in range(n_quotas)]
        return all(await asyncio.gather(*hits))

    return one


async def commands_per_check(
    url: str, server_client: redis.Redis, args: argparse.Namespace
) -> list[tuple[int, int, float]]:
    """Print and return (quotas, concurrency, commands sent per check) rows."""
    print("\n== Redis commands per check (INFO commandstats) ==")
    print(f"{'quotas':>6} {'concurrency':>11} {'checks':>7} {'sent/check':>10} "
          f"{'evalsha/check':>13} {'in-script/check':>15}")  # fmt: skip
    rows = []
    for n in args.quotas:
        for conc in (1, args.concurrency):
            h = build_handler(url, n)
            try:
                await h.quota_many(check(n, -1))  # connect and load the script
                before = command_stats(server_client)
                done, _, failed = await run_block(
                    redisquota_check(h, n), conc, max(args.checks // 4, 1), args.seconds
                )
                after = command_stats(server_client)
            finally:
                await h.close()
            if failed:
                raise SystemExit(f"redisquota: {failed} checks were not admitted")
            delta = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
            sent = sum(v for k, v in delta.items() if k not in SCRIPT_INTERNAL | MEASUREMENT)
            inside = sum(v for k, v in delta.items() if k in SCRIPT_INTERNAL)
            rows.append((n, conc, sent / done))
            print(f"{n:>6} {conc:>11} {done:>7} {sent / done:>10.3f} "
                  f"{delta.get('evalsha', 0) / done:>13.3f} {inside / done:>15.2f}")  # fmt: skip
    return rows


async def throughput(url: str, args: argparse.Namespace) -> list[tuple[int, int, float, float]]:
    """Print and return (quotas, concurrency, redisquota checks/s, limits checks/s) rows."""
    print(f"\n== Throughput, checks/s (median of {args.repeats}, interleaved) ==")
    split = urllib.parse.urlsplit(url)
    storage = RedisStorage(
        f"async+redis://{split.hostname}:{split.port or 6379}",
        implementation="redispy",
        max_connections=args.concurrency * 10 + 16,  # one per concurrent hit
    )
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(10**6)
    print(
        f"{'quotas':>6} {'concurrency':>11} {'redisquota':>11} {'limits moving':>13} {'ratio':>6}"
    )
    rows = []
    try:
        for n in args.quotas:
            for conc in (1, args.concurrency):
                h = build_handler(url, n)
                rates: dict[str, list[float]] = {"ours": [], "limits": []}
                try:
                    approaches = {
                        "ours": redisquota_check(h, n),
                        "limits": limits_check(limiter, item, n),
                    }
                    for fn in approaches.values():
                        await fn(0)  # connect, load scripts
                    for _ in range(args.repeats):
                        for name, fn in approaches.items():
                            done, elapsed, failed = await run_block(
                                fn, conc, args.checks, args.seconds
                            )
                            if failed:
                                raise SystemExit(f"{name}: {failed} checks were not admitted")
                            rates[name].append(done / elapsed)
                finally:
                    await h.close()
                a, b = statistics.median(rates["ours"]), statistics.median(rates["limits"])
                rows.append((n, conc, a, b))
                print(f"{n:>6} {conc:>11} {a:>11.0f} {b:>13.0f} {a / b:>6.2f}")
    finally:
        bridge: Any = storage.bridge  # limits keeps its redis-py client there, untyped
        await bridge.storage.aclose()
    return rows


@contextmanager
def redis_url(given: str | None) -> Iterator[str]:
    if given:
        host = urllib.parse.urlsplit(given).hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise SystemExit(f"refusing non-loopback Redis {given!r}")
        yield given
        return
    with RedisServer() as server:
        yield server.url


async def run(args: argparse.Namespace, url: str) -> bool:
    """Run both measurements, print them and a verdict; True if both targets are met."""
    split = urllib.parse.urlsplit(url)
    client = redis.Redis(host=split.hostname or "127.0.0.1", port=split.port or 6379)
    try:
        client.ping()
        version = client.info("server")["redis_version"]
        print(f"Redis {version} at {url}; checks per block <= {args.checks}, <= {args.seconds}s")
        commands = await commands_per_check(url, client, args)
        rates = await throughput(url, args)
    finally:
        client.close()
    worst_sent = max(sent for _, _, sent in commands)
    loaded = [ours / theirs for _, conc, ours, theirs in rates if conc == args.concurrency]
    sequential = [ours / theirs for _, conc, ours, theirs in rates if conc == 1]
    print("\n== Targets ==")
    print(f"commands sent per check <= 1: {'yes' if worst_sent <= 1 else 'NO'} "
          f"(worst {worst_sent:.3f})")  # fmt: skip
    print(f"throughput >= 2x limits at concurrency {args.concurrency}: "
          f"{'yes' if min(loaded) >= 2 else 'NO'} (worst ratio {min(loaded):.2f}); "
          f"concurrency 1: worst ratio {min(sequential):.2f} (one round trip each)")  # fmt: skip
    return worst_sent <= 1 and min(loaded) >= 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis-url", help="a loopback Redis (default: start one)")
    parser.add_argument("--checks", type=int, default=20000, help="max checks per block")
    parser.add_argument("--seconds", type=float, default=2.0, help="max seconds per block")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quotas", type=int, nargs="+", default=[1, 3, 10], help="quotas per check to measure"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; exit status 0 if both targets are met."""
    args = parse_args(argv)
    with redis_url(args.redis_url) as url:
        met = asyncio.run(run(args, url))
    raise SystemExit(0 if met else 1)


if __name__ == "__main__":
    main()
