"""redisquota's replies are parsed by hiredis (the C parser), which mixer depends on: the pure
Python parser cost the Redis path about half of its server CPU in the benchmarks."""

from __future__ import annotations

import redis.asyncio.connection
from redis._parsers.hiredis import _AsyncHiredisParser


def test_the_async_redis_client_parses_with_hiredis() -> None:
    assert redis.asyncio.connection.DefaultParser is _AsyncHiredisParser
