"""redisquota's replies are parsed by hiredis (the C parser, a dependency of mixer), not by
redis-py's pure-Python fallback, which a missing wheel would silently select."""

from __future__ import annotations

import redis.asyncio.connection
from redis._parsers.hiredis import _AsyncHiredisParser


def test_the_async_redis_client_parses_with_hiredis() -> None:
    assert redis.asyncio.connection.DefaultParser is _AsyncHiredisParser
