"""Client CPU per Redis command: redis-py's asyncio client against redisquota's lean connection.

Run from the repository root (it starts its own redis-server on a loopback port)::

    .venv/bin/python -m bench.redis_client [--commands N] [--seconds S] [--repeats R]

Both clients send the EVALSHA that a check of 3 quotas sends (the same keys and JSON argument
shape, a script that answers at once), against the same server, in the same process:

* **one at a time**: a check waits for its reply before the next is sent (an idle server);
* **32 in flight**: 32 tasks send concurrently (a busy server): redis-py spreads them over its
  pool, the lean connection pipelines them on one socket.

The figure is the client process's CPU time per command, the lean connection's as a ratio of
redis-py's measured in the same repetition (blocks interleaved; the median over repetitions).
Every block stops after `--commands` commands or `--seconds`, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import ConnectionPool, Redis

from adapters.redisquota.resp import LeanAddress, RespConnection
from tests.redis_server import RedisServer

_SCRIPT = "return ARGV[1]"
_KEYS = ("q:perdestination;d=a", "q:perclient;c=b", "q:peruser;u=c")
_ARG = '[["perdestination",1,100,60000,0,""],["perclient",1,100,60000,0,""]]'

Call = Callable[[], Awaitable[object]]


async def _block(call: Call, concurrency: int, commands: int, seconds: float) -> float:
    """CPU-µs per command of `call`, run by `concurrency` tasks until either bound is reached."""
    deadline = time.monotonic() + seconds
    per_task = max(commands // concurrency, 1)
    done = 0

    async def worker() -> None:
        nonlocal done
        for _ in range(per_task):
            await call()
            done += 1
            if time.monotonic() > deadline:
                return

    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - start) / max(done, 1) * 1e6


async def _run(server: RedisServer, commands: int, seconds: float, repeats: int) -> None:
    pool = ConnectionPool.from_url(server.url, max_connections=32)
    client = Redis(connection_pool=pool)
    lean = RespConnection(LeanAddress(server.host, server.port))
    sha = str(await client.script_load(_SCRIPT))
    args = (sha, len(_KEYS), *_KEYS, _ARG)

    async def with_redis_py() -> object:
        return await client.evalsha(*args)

    async def with_lean() -> object:
        return await lean.call([("EVALSHA", *args)])

    assert (await with_lean())[0] == (await with_redis_py())  # type: ignore[index]
    print(f"client CPU-µs per EVALSHA; {repeats} repetitions, medians")
    print(f"{'load':<18}{'redis-py':>10}{'lean':>10}{'lean/redis-py':>15}")
    try:
        for concurrency, label in ((1, "one at a time"), (32, "32 in flight")):
            old: list[float] = []
            new: list[float] = []
            ratios: list[float] = []
            for _ in range(repeats):
                await _block(with_redis_py, concurrency, commands // 10, seconds)  # warm-up
                await _block(with_lean, concurrency, commands // 10, seconds)
                a = await _block(with_redis_py, concurrency, commands, seconds)
                b = await _block(with_lean, concurrency, commands, seconds)
                old.append(a)
                new.append(b)
                ratios.append(b / a)
            print(
                f"{label:<18}{statistics.median(old):>10.1f}{statistics.median(new):>10.1f}"
                f"{statistics.median(ratios):>14.2f}x"
            )
    finally:
        await lean.aclose()
        await client.aclose(close_connection_pool=True)  # a pool it was given stays open otherwise


def main() -> None:
    """Parse the bounds and run the comparison against a redis-server of our own."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=4000, help="per block (default 4000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per block (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (default 3)")
    opts = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(_run(server, opts.commands, opts.seconds, opts.repeats))


if __name__ == "__main__":
    main()
