"""The sync server flavour: gRPC calls served on a grpcio thread pool, mixer's state on one thread
at a time.

One lock (`LoopBridge.lock`) is held by whichever thread runs mixer code. The event loop's thread
(the main thread: signals, reloads, report workers, Redis replies) holds it except while it waits
for I/O inside its selector (`LoopBridge.new_loop` installs one that releases the lock around
the wait); a grpc handler thread takes it for each step of its call. Runtime state (dispatcher,
check cache, quota buckets, report queues, handlers) is therefore touched by one thread at a
time, exactly as under `grpc.aio`, and none of it has to be thread-safe.

A handler thread drives its call's coroutine itself (`LoopBridge.run`): a call that never
suspends (no Redis, no handler under a timeout) costs no hand-over at all. When the coroutine
awaits an asyncio future, the thread releases the lock and sleeps until the loop thread has
completed the future, then takes the lock again and resumes the coroutine; a bare ``yield``
(``asyncio.sleep(0)``) only lets the loop thread in. A coroutine that awaits `unlocked(fn, ...)`
runs ``fn(...)`` without the lock (the blocking read of a stream's next message). Callbacks a
step made ready on the loop (a report worker woken by `offer`) are run by the handler thread
itself before it lets go of the lock, as the loop thread would have run them; what they
schedule in turn, and new timers, wake the loop thread.

During a step the loop is the handler thread's running loop, so `asyncio.get_running_loop()`
works, and `asyncio.current_task()` is a stand-in for the call's task (`_ThreadTask`) that
`asyncio.timeout` can cancel: a Redis request under a timeout is sent and awaited from the
handler thread itself, with no task on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
import threading
from asyncio import events
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from typing import Any, TypeVar

import grpc

T = TypeVar("T")

# How often a handler thread waiting for a future checks that the loop still runs (at shutdown
# a stopped loop completes nothing).
_WAIT_SLICE = 1.0


class _Unlocked:
    """Awaited on a handler thread: the bridge runs ``fn(*args)`` without the lock."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self)


def unlocked(fn: Callable[..., T], *args: Any) -> Any:
    """An awaitable whose result is ``fn(*args)``, run by `LoopBridge.run` without the lock; it
    may only be awaited on a bridge's handler thread."""
    return _Unlocked(fn, args)


class _UnlockingPoller:
    """The selector's poll object: the lock is released while the loop thread waits in it."""

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    def poll(self, *args: Any) -> Any:
        self._lock.release()
        try:
            return self._inner.poll(*args)
        finally:
            self._lock.acquire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _locked_selector(lock: threading.Lock) -> selectors.BaseSelector:
    selector = selectors.DefaultSelector()
    inner = getattr(selector, "_selector", None)
    if inner is None or not hasattr(inner, "poll"):
        raise RuntimeError(f"the sync server flavour needs epoll or poll, not {selector!r}")
    selector._selector = _UnlockingPoller(inner, lock)  # type: ignore[attr-defined]
    return selector


_enter_task: Callable[[Any, Any], None] = getattr(asyncio.tasks, "_enter_task")  # noqa: B009
_leave_task: Callable[[Any, Any], None] = getattr(asyncio.tasks, "_leave_task")  # noqa: B009


class _ThreadTask:
    """What `asyncio.current_task()` is during a handler thread's step: enough of a Task for
    `asyncio.timeout` (`cancel`, `cancelling`, `uncancel`). Cancelling it, as a timeout does
    from the loop thread, cancels the future the thread waits for, or else has the next step
    raise `CancelledError`, as cancelling a task would."""

    __slots__ = ("_cancels", "_loop", "must_cancel", "waiting")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._cancels = 0
        self.must_cancel = False
        self.waiting: Any = None

    def get_loop(self) -> Any:
        return self._loop

    def done(self) -> bool:
        return False

    def cancel(self, msg: Any = None) -> bool:
        self._cancels += 1
        waiting = self.waiting
        if waiting is None or not waiting.cancel(msg=msg):
            self.must_cancel = True
        return True

    def cancelling(self) -> int:
        return self._cancels

    def uncancel(self) -> int:
        if self._cancels > 0:
            self._cancels -= 1
        return self._cancels


class LoopBridge:
    """The lock and the loop of a sync-flavour server (see the module docstring).

    The thread that runs the loop must hold `lock` whenever it runs anything else of mixer's
    (`held` around the loop's whole life).
    """

    def __init__(self, max_streams: int = 1000) -> None:
        """`max_streams`: client streams served at once (each holds a thread of the pool, which
        must have more threads than this, so that unary calls always find one)."""
        self.lock = threading.Lock()
        self.loop: Any = None
        self.max_streams = max_streams
        self.streams = 0  # changed under the lock only

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop whose selector releases `lock` while it waits for I/O (a
        `asyncio.Runner` loop factory)."""
        loop = asyncio.SelectorEventLoop(_locked_selector(self.lock))
        self.loop = loop
        return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Drive `coro` to its end on this (handler) thread, holding the lock for every step."""
        loop = self.loop
        lock = self.lock
        task = _ThreadTask(loop)
        lock.acquire()
        events._set_running_loop(loop)
        ready = loop._ready
        scheduled = loop._scheduled
        timers = len(scheduled)
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                if task.must_cancel:
                    task.must_cancel = False
                    error = asyncio.CancelledError()
                _enter_task(loop, task)
                try:
                    yielded = coro.send(value) if error is None else coro.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                finally:
                    _leave_task(loop, task)
                value = error = None
                done: threading.Event | None = None
                if yielded is None:
                    pass  # asyncio.sleep(0): only let the loop thread in
                elif type(yielded) is _Unlocked:
                    pass
                elif getattr(yielded, "_asyncio_future_blocking", None):
                    yielded._asyncio_future_blocking = False
                    done = threading.Event()
                    yielded.add_done_callback(functools.partial(_set, done))
                    task.waiting = yielded
                else:
                    error = RuntimeError(f"a handler thread cannot await {yielded!r}")
                    continue
                if ready:
                    _help(ready)
                if ready or len(scheduled) != timers:
                    loop._write_to_self()
                events._set_running_loop(None)
                lock.release()
                try:
                    if done is not None:
                        while not done.wait(_WAIT_SLICE):
                            if not loop.is_running():
                                error = asyncio.CancelledError("the event loop stopped")
                                break
                    elif yielded is not None:
                        try:
                            value = yielded.fn(*yielded.args)
                        except BaseException as exc:
                            error = exc
                finally:
                    lock.acquire()
                    events._set_running_loop(loop)
                    task.waiting = None
                    timers = len(scheduled)
        finally:
            if ready:
                _help(ready)
            if ready or len(scheduled) != timers:
                loop._write_to_self()
            events._set_running_loop(None)
            lock.release()

    def call(
        self,
        fn: Callable[[Any, Any], Awaitable[T]],
        request: Any,
        context: grpc.ServicerContext,
    ) -> T:
        """``fn(request, context)`` with a context that behaves like grpc.aio's (`ThreadContext`):
        an abort ends the call with its status through the sync context."""
        ctx = ThreadContext(context)
        try:
            return self.run(fn(request, ctx))  # type: ignore[arg-type]
        except grpc.aio.AbortError:
            context.abort(ctx.aborted_code or grpc.StatusCode.UNKNOWN, ctx.aborted_details)
            raise  # abort() raises; this satisfies the type checker

    def messages(self, requests: Iterator[Any]) -> AsyncIterator[Any]:
        """A sync server's request stream as an async iterator read without the lock; a stream
        the client cancelled ends the call as a cancelled task would under grpc.aio."""
        return _messages(requests)


_END = object()


def _help(ready: Any) -> None:
    """Run the callbacks that are ready on the loop now, here, as the loop thread would have
    (under the lock, with the loop running here, no task current): a report queue's worker
    woken by this call delivers on this thread instead of waking the loop thread. Callbacks
    these schedule are left to the loop."""
    for _ in range(len(ready)):
        handle = ready.popleft()
        if not handle._cancelled:
            handle._run()


def _set(event: threading.Event, _: object) -> None:
    event.set()


async def _messages(requests: Iterator[Any]) -> AsyncIterator[Any]:
    while True:
        try:
            item = await unlocked(next, requests, _END)
        except grpc.RpcError:
            raise asyncio.CancelledError("the client cancelled the stream") from None
        if item is _END:
            return
        yield item


class ThreadContext:
    """A sync `grpc.ServicerContext` with the parts of grpc.aio's that mixer's handlers use."""

    __slots__ = ("_context", "aborted_code", "aborted_details")

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self.aborted_code: grpc.StatusCode | None = None
        self.aborted_details = ""

    def peer(self) -> str:
        return self._context.peer()

    def auth_context(self) -> Any:
        return self._context.auth_context()

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def code(self) -> grpc.StatusCode | None:
        return self.aborted_code

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        """Record the status and end the coroutine (`LoopBridge.call` sends it)."""
        self.aborted_code = code
        self.aborted_details = details
        raise grpc.aio.AbortError(details)
