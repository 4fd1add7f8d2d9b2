"""The lean Redis connection of redisquota (`adapters.redisquota.resp`), against a real
redis-server: pipelined replies reach their own callers, error replies are values, AUTH and
SELECT, restarts, hangs, a malformed peer."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from adapters.redisquota.resp import LeanAddress, RedisStalled, RespConnection, lean_address
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:7001", LeanAddress("127.0.0.1", 7001)),
        ("redis://localhost", LeanAddress("localhost", 6379)),
        ("redis://:secret@h:1/2", LeanAddress("h", 1, db=2, password="secret")),
        ("redis://user:pw@h:1?db=3", LeanAddress("h", 1, db=3, username="user", password="pw")),
        ("redis://[::1]:7002/0", LeanAddress("::1", 7002)),
        ("unix:///run/redis.sock?db=1", LeanAddress(path="/run/redis.sock", db=1)),
        # TLS and redis-py's own options stay on redis-py
        ("rediss://h:1", None),
        ("redis://h:1?client_name=mixer", None),
        ("redis://h:1?socket_timeout=3", None),
        ("http://h:1", None),
    ],
)
def test_lean_address(url: str, expected: LeanAddress | None) -> None:
    assert lean_address(url) == expected


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


@contextlib.asynccontextmanager
async def connection(target: LeanAddress | RespConnection) -> AsyncIterator[RespConnection]:
    conn = target if isinstance(target, RespConnection) else RespConnection(target)
    try:
        yield conn
    finally:
        await conn.aclose()


def address_of(server: RedisServer, **kw: object) -> LeanAddress:
    return LeanAddress(server.host, server.port, **kw)  # type: ignore[arg-type]


async def test_concurrent_callers_get_their_own_replies(server: RedisServer) -> None:
    async with connection(address_of(server)) as conn:

        async def one(i: int) -> list[object]:
            return await conn.call([("SET", f"resp:{i}", i), ("GET", f"resp:{i}"), ("ECHO", i)])

        replies = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 10)
    assert replies == [[b"OK", str(i).encode(), str(i).encode()] for i in range(200)]


async def test_error_replies_are_values_and_the_line_stays_usable(server: RedisServer) -> None:
    async with connection(address_of(server)) as conn:
        missing, wrong, fine = await conn.call(
            [("EVALSHA", "0" * 40, 0), ("NOSUCHCOMMAND",), ("PING",)]
        )
        assert isinstance(missing, NoScriptError)
        assert isinstance(wrong, ResponseError) and not isinstance(wrong, NoScriptError)
        assert "NOSUCHCOMMAND" in str(wrong).upper()
        assert fine == b"PONG"
        (sha,) = await conn.call([("SCRIPT", "LOAD", "return {1, ARGV[1]}")])
        assert await conn.call([("EVALSHA", sha, 0, "x")]) == [[1, b"x"]]


async def test_auth_and_database() -> None:
    with RedisServer() as secured:
        with secured.client() as c:
            c.config_set("requirepass", "s3cret")
        url = f"redis://:s3cret@{secured.host}:{secured.port}/3"
        address = lean_address(url)
        assert address is not None
        async with connection(address) as conn:
            assert await conn.call([("SET", "where", "db3")]) == [b"OK"]
        with secured.client(password="s3cret", db=3) as c:
            assert c.get("where") == b"db3"
        with secured.client(password="s3cret", db=0) as c:
            assert c.get("where") is None
        async with connection(address_of(secured, password="wrong")) as conn:
            with pytest.raises(RedisConnectionError, match="refused 'AUTH'"):
                await conn.call([("PING",)])


async def test_unix_socket() -> None:
    path = Path(tempfile.mkdtemp(prefix="mixer-resp-")) / "redis.sock"
    with RedisServer("--unixsocket", str(path), "--unixsocketperm", "700"):
        address = lean_address(f"unix://{path}")
        assert address is not None
        async with connection(address) as conn:
            assert await conn.call([("PING",)]) == [b"PONG"]


async def test_a_restart_is_survived_by_one_retry() -> None:
    with RedisServer() as restarted:
        async with connection(address_of(restarted)) as conn:
            assert await conn.call([("SET", "k", "before")]) == [b"OK"]
            restarted.restart()  # the old connection is now stale
            assert await conn.call([("GET", "k")]) == [None]


async def test_refused_connection_names_the_address() -> None:
    port = free_port()
    async with connection(LeanAddress("127.0.0.1", port)) as conn:
        with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{port}"):
            await conn.call([("PING",)])


async def test_a_hung_server_stalls_every_waiting_call_then_recovers_on_a_new_connection() -> None:
    with RedisServer() as hung:
        address = address_of(hung)
        async with connection(RespConnection(address, 0.5, stall_timeout=0.1)) as conn:
            (first,) = await conn.call([("CLIENT", "ID")])
            hung.pause()
            try:
                for _ in range(3):
                    start = time.monotonic()
                    waiting = [asyncio.ensure_future(conn.call([("PING",)])) for _ in range(5)]
                    outcomes = await asyncio.wait_for(
                        asyncio.gather(*waiting, return_exceptions=True), 5
                    )
                    # all at once, after the stall timeout, and not retried into a second stall
                    assert all(isinstance(o, RedisStalled) for o in outcomes), outcomes
                    assert 0.09 <= time.monotonic() - start < 0.5
            finally:
                hung.resume()
            echo, second = await conn.call([("ECHO", "back"), ("CLIENT", "ID")])
            assert echo == b"back"
            assert second != first  # the stuck connection was dropped


async def test_without_a_stall_timeout_a_cancelled_call_keeps_the_connection() -> None:
    with RedisServer() as slow:
        async with connection(address_of(slow)) as conn:
            (first,) = await conn.call([("CLIENT", "ID")])
            slow.pause()
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await conn.call([("PING",)])
            finally:
                slow.resume()
            # the PING's reply is read and dropped; the connection serves the next call
            (again,) = await conn.call([("CLIENT", "ID")])
            assert again == first


async def test_replies_that_arrive_while_the_loop_is_busy_are_not_a_stall(
    server: RedisServer,
) -> None:
    async with connection(RespConnection(address_of(server), 0.5, stall_timeout=0.05)) as conn:
        await conn.call([("PING",)])
        calls = [asyncio.ensure_future(conn.call([("INCR", "resp:busy")])) for _ in range(1000)]
        await asyncio.sleep(0)  # all written
        time.sleep(0.2)  # the loop is busy for 4 stall timeouts; Redis answers meanwhile
        replies = await asyncio.wait_for(asyncio.gather(*calls), 10)
    assert sorted(r for (r,) in replies) == list(range(1, 1001))


async def test_a_call_cancelled_while_replies_flow_keeps_the_connection(
    server: RedisServer,
) -> None:
    async with connection(address_of(server)) as conn:
        (first,) = await conn.call([("CLIENT", "ID")])
        # Redis answers a connection's commands in order: the second BLPOP's reply waits behind
        # the first (0.2 s), which arrives while the second call is still waiting.
        earlier = asyncio.ensure_future(conn.call([("BLPOP", "resp:none", 0.2)]))
        await asyncio.sleep(0)  # it writes first
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.6):
                await conn.call([("BLPOP", "resp:none2", 1)])
        assert await earlier == [None]
        (again,) = await conn.call([("CLIENT", "ID")])
        assert again == first


async def test_closed_connection_refuses_calls(server: RedisServer) -> None:
    conn = RespConnection(address_of(server))
    assert await conn.call([("PING",)]) == [b"PONG"]
    await conn.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await conn.call([("PING",)])


@contextlib.asynccontextmanager
async def fake_redis(answer: bytes) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A loopback peer that answers every read with `answer`; the event: a client hung up."""
    hung_up = asyncio.Event()
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        while await reader.read(1024):
            writer.write(answer)
            await writer.drain()
        hung_up.set()
        writer.close()

    fake = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield fake.sockets[0].getsockname()[1], hung_up
    finally:
        fake.close()
        # Our side of every connection is closed before the test's loop ends (a server's close
        # leaves its accepted connections open, and a transport closes a loop turn later).
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await fake.wait_closed()


async def test_a_malformed_reply_fails_the_call() -> None:
    async with (
        fake_redis(b"?what\r\n") as (port, hung_up),
        connection(LeanAddress("127.0.0.1", port)) as conn,
    ):
        with pytest.raises(RedisConnectionError, match="malformed reply"):
            await conn.call([("PING",)])  # the retry meets the same peer
        await asyncio.wait_for(hung_up.wait(), 5)


async def test_an_unasked_reply_drops_the_connection() -> None:
    async with (
        fake_redis(b"+PONG\r\n+EXTRA\r\n") as (port, hung_up),
        connection(LeanAddress("127.0.0.1", port)) as conn,
    ):
        assert await conn.call([("PING",)]) == [b"PONG"]
        await asyncio.wait_for(hung_up.wait(), 5)
        # A fresh connection serves the next call.
        assert await conn.call([("PING",)]) == [b"PONG"]


async def test_a_connection_attempt_is_bounded_and_close_ends_it() -> None:
    async with fake_redis(b"") as (port, _):  # accepts, never answers AUTH
        silent = LeanAddress("127.0.0.1", port, password="pw")
        async with connection(RespConnection(silent, connect_timeout=0.2)) as conn:
            with pytest.raises(RedisConnectionError, match=r"within 0\.2s"):
                await asyncio.wait_for(conn.call([("PING",)]), 10)
        conn = RespConnection(silent)
        waiting = asyncio.ensure_future(conn.call([("PING",)]))
        await asyncio.sleep(0.1)  # connected, waiting for the AUTH reply
        await conn.aclose()
        with pytest.raises(RedisConnectionError, match="closed"):
            await asyncio.wait_for(waiting, 10)
