"""One pipelined Redis connection for the quota hot path, RESP packed and parsed by hiredis.

A check sends one EVALSHA and waits for one reply, so this module keeps only what that needs,
without redis-py's pool checkout, per-read timeouts and layered readers (why, and what it saves:
docs/decisions/0003): an `asyncio.Protocol` that writes commands packed by `hiredis.pack_command`
and hands each reply that `hiredis.Reader` parses to the oldest waiting request. Concurrent
checks share the connection: Redis answers in order.

Plain ``redis://`` and ``unix://`` URLs with a password and a database only (`lean_address`);
TLS and redis-py's other URL options stay on redis-py. Errors are redis-py's exception types,
so callers handle both paths alike: an error reply is a `ResponseError` (`NoScriptError` for
NOSCRIPT) in the reply list; a connection that cannot be made or is lost raises
`redis.exceptions.ConnectionError` (`RedisStalled` when Redis stopped answering).

A dead Redis is told from a busy one by the connection's liveness, not by how long one reply
takes: Redis is declared stalled when requests wait and *nothing* has arrived on the connection
for `stall_timeout` seconds. Under a burst, the replies to thousands of queued commands keep
arriving, so no request fails however long the queue, while a stopped Redis fails every waiting
request within `stall_timeout` of the last sign of life. When this process's own event loop was
held up for longer than `stall_timeout` (so its reads may have missed replies), Redis is judged
only after a further `stall_timeout` of a responsive loop. The timeout must still exceed the
pauses Redis itself may see (CPU throttling of its container, a fork for a snapshot): a Redis
that sends nothing for that long cannot be told from a hung one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["LeanAddress", "RedisStalled", "RespConnection", "lean_address"]

Command = tuple[str | int | bytes, ...]

# hiredis's stub types the argument as a one-element tuple.
_pack = cast(Callable[[Command], bytes], hiredis.pack_command)

# What `parse_url` may return for a URL this module serves; anything else (TLS, client name,
# socket options) is left to redis-py.
_LEAN_KEYS = frozenset({"host", "port", "path", "db", "username", "password", "connection_class"})


@dataclass(frozen=True, slots=True)
class LeanAddress:
    """A server this module can talk to: TCP `host`/`port` or a unix socket `path`."""

    host: str = "localhost"
    port: int = 6379
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def lean_address(url: str) -> LeanAddress | None:
    """The address of a plain ``redis://`` or ``unix://`` URL; None for anything else."""
    if not url.startswith(("redis://", "unix://")):
        return None
    try:
        kwargs = parse_url(url)
    except ValueError:
        return None
    if not kwargs.keys() <= _LEAN_KEYS:
        return None
    cls = kwargs.get("connection_class")
    if cls is not None and cls is not UnixDomainSocketConnection:
        return None
    return LeanAddress(
        host=str(kwargs.get("host") or "localhost"),
        port=int(kwargs.get("port") or 6379),
        path=str(kwargs.get("path") or ""),
        db=int(kwargs.get("db") or 0),
        username=kwargs.get("username") or None,
        password=kwargs.get("password") or None,
    )


class RedisStalled(RedisConnectionError):
    """Requests waited and Redis sent nothing for the stall timeout: it is stopped or hung."""


def _reply(value: Any) -> Any:
    """hiredis's reply, with an error reply as redis-py's exception (returned, not raised)."""
    if isinstance(value, hiredis.ReplyError):
        text = str(value)
        return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
    if isinstance(value, list):
        return [_reply(v) for v in value]
    return value


class _Waiter:
    __slots__ = ("count", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []


class _Protocol(asyncio.Protocol):
    """Matches replies to requests in order; fails every waiting request when the line drops,
    or when requests wait and nothing arrives for `stall_timeout` seconds (None: never)."""

    def __init__(self, stall_timeout: float | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self._reader = hiredis.Reader()
        self._waiting: deque[_Waiter] = deque()
        self._stall_timeout = stall_timeout
        self._loop = asyncio.get_running_loop()
        # Loop time of the last bytes received, or of the request that found nothing waiting:
        # the connection's last sign of life while requests wait.
        self._progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # asyncio runs I/O callbacks before the timers due in the same loop iteration, so
        # replies that arrived while the loop was busy count before the watchdog looks.
        self._progress = self._loop.time()
        self._reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as err:
                self._drop(RedisConnectionError(f"Redis sent a malformed reply: {err}"))
                return
            if reply is False:
                return
            if not waiting:
                self._drop(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            waiter = waiting[0]
            waiter.replies.append(reply)
            if len(waiter.replies) == waiter.count:
                waiting.popleft()
                if not waiter.future.done():
                    waiter.future.set_result([_reply(r) for r in waiter.replies])

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.lost is None:
            self.lost = RedisConnectionError(
                f"connection to Redis lost: {exc}" if exc else "Redis closed the connection"
            )
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(self.lost)

    def _drop(self, err: Exception) -> None:
        self.lost = err
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails the waiters

    def send(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Write `commands`; the future gets their replies, in order."""
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise self.lost or RedisConnectionError("connection to Redis is closed")
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        if not self._waiting:
            self._progress = self._loop.time()  # the clock starts with the first request
            if self._watchdog is None and self._stall_timeout is not None:
                self._schedule(self._progress + self._stall_timeout)
        self._waiting.append(_Waiter(future, len(commands)))
        self.transport.write(b"".join([_pack(c) for c in commands]))
        return future

    def _schedule(self, when: float) -> None:
        self._watch_due = when
        self._watchdog = self._loop.call_at(when, self._watch)

    def _watch(self) -> None:
        """The watchdog: drop the connection if requests wait and it has gone silent."""
        self._watchdog = None
        if not self._waiting or self.lost is not None or self._stall_timeout is None:
            return
        deadline = self._progress + self._stall_timeout
        now = self._loop.time()
        if now < deadline:
            self._schedule(deadline)
            return
        if now - self._watch_due > self._stall_timeout:
            # This process, not Redis, was late: the loop (or the whole process) was held up
            # for longer than the stall timeout, so it may not have read what Redis sent
            # meanwhile. Redis is judged only after a stall timeout of a responsive loop; a
            # loop that is never responsive leaves the call to its caller's own deadline.
            self._schedule(now + self._stall_timeout)
            return
        self._drop(
            RedisStalled(
                f"Redis answered nothing for {now - self._progress:.3f}s "
                f"with {len(self._waiting)} requests waiting"
            )
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RespConnection:
    """A pipelined connection to one Redis server, made on first use and remade after a loss.

    `call` retries once on a fresh connection when the connection fails (as the redis-py path
    does): after a Redis restart the old connection is stale. A stall is not retried: with
    `stall_timeout` set, when requests wait and nothing arrives for that long, every waiting
    call fails with `RedisStalled` at once and the connection is dropped (the next call makes a
    new one), so a stopped Redis costs a call at most `stall_timeout` of waiting plus
    `connect_timeout` to reconnect. A call cancelled by its caller leaves the connection alone:
    the replies still owed to it are read and dropped. `connect_timeout` bounds a connection
    attempt (connect, AUTH, SELECT).
    """

    def __init__(
        self,
        address: LeanAddress,
        connect_timeout: float = 5.0,
        *,
        stall_timeout: float | None = None,
    ) -> None:
        self._address = address
        self._connect_timeout = connect_timeout
        self._stall_timeout = stall_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._closed = False

    async def call(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to `commands`, sent in one write; error replies are exception values."""
        for attempt in (1, 2):
            protocol = self._protocol
            if protocol is None or protocol.lost is not None or self._closed:
                protocol = await self._connected()
            try:
                future = protocol.send(commands)
            except RedisConnectionError:
                self._forget(protocol)
                if attempt == 2:
                    raise
                continue
            try:
                return await future
            except RedisStalled:
                self._forget(protocol)
                raise  # a fresh connection to a stopped server would stall again
            except RedisConnectionError:
                self._forget(protocol)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _forget(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    async def _connected(self) -> _Protocol:
        if self._closed:
            raise RedisConnectionError("the Redis connection is closed")
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        connecting = self._connecting
        if connecting is None:
            # Concurrent callers wait for one connection attempt rather than each making one.
            connecting = self._connecting = asyncio.ensure_future(self._connect())
            connecting.add_done_callback(self._attempt_ended)
        # `wait`, not `shield`: a caller's cancellation leaves the attempt running for the
        # others, and an attempt cancelled by `aclose` is not the caller's cancellation.
        await asyncio.wait((connecting,))
        if connecting.cancelled():
            raise RedisConnectionError("the Redis connection is closed")
        return connecting.result()

    def _attempt_ended(self, attempt: asyncio.Future[_Protocol]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved, even when every caller gave up waiting

    async def _connect(self) -> _Protocol:
        address = self._address
        where = address.path or f"{address.host}:{address.port}"
        try:
            async with asyncio.timeout(self._connect_timeout):
                protocol = await self._open()
        except TimeoutError:
            raise RedisConnectionError(
                f"no connection to Redis at {where} within {self._connect_timeout:g}s"
            ) from None
        except OSError as err:
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {err}") from err
        if self._closed:
            protocol.close()
            raise RedisConnectionError("the Redis connection is closed")
        self._protocol = protocol
        return protocol

    async def _open(self) -> _Protocol:
        """Connect, then AUTH and SELECT as the URL asks; the protocol is closed on failure."""
        loop = asyncio.get_running_loop()
        address = self._address

        def factory() -> _Protocol:
            return _Protocol(self._stall_timeout)

        if address.path:
            _, protocol = await loop.create_unix_connection(factory, address.path)
        else:
            _, protocol = await loop.create_connection(factory, address.host, address.port)
        setup: list[Command] = []
        if address.password is not None:
            if address.username:
                setup.append(("AUTH", address.username, address.password))
            else:
                setup.append(("AUTH", address.password))
        if address.db:
            setup.append(("SELECT", address.db))
        if not setup:
            return protocol
        try:
            replies = await protocol.send(setup)
        except BaseException:
            protocol.close()
            raise
        for command, reply in zip(setup, replies, strict=True):
            if isinstance(reply, Exception):
                protocol.close()
                raise RedisConnectionError(f"Redis refused {command[0]!r}: {reply}")
        return protocol

    async def aclose(self) -> None:
        """Close the connection; later calls fail."""
        self._closed = True
        connecting = self._connecting
        if connecting is not None:
            connecting.cancel()
            # The attempt closes its socket as it unwinds: by our return, not a loop turn later.
            await asyncio.wait((connecting,))
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None
