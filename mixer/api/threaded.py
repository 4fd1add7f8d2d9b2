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
awaits an asyncio future, the thread releases the lock and sleeps; the thread that completes
the future (the loop thread: a Redis reply, a timer) continues the coroutine itself, as it
would a task, and wakes the handler thread only when the call is over, so that it returns the
answer without taking the lock again. A bare ``yield`` (``asyncio.sleep(0)``) gives the others
a turn at the lock. A coroutine that awaits `unlocked(fn, ...)` has ``fn(...)`` run by its
handler thread without the lock (the blocking read of a stream's next message). Whatever a
handler thread's step scheduled on the loop (callbacks, tasks, timers) wakes the loop thread.

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
import time
from asyncio import events
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from typing import Any, TypeVar

import grpc

T = TypeVar("T")

# The longest a handler thread giving its turn waits for a waiting thread to take the lock.
_TURN_WAIT = 0.005
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
    """The selector's poll object: the lock is released while the loop thread waits in it.

    When taking the lock back had to wait (handler threads held it), the loop polls once more
    without waiting: what arrived meanwhile (a Redis reply) is handled in this iteration, before
    the timers that came due while it waited (a liveness watchdog must see the reply first).
    """

    def __init__(self, inner: Any, bridge: LoopBridge) -> None:
        self._inner = inner
        self._bridge = bridge

    def poll(self, *args: Any) -> Any:
        self._bridge.lock.release()
        try:
            ready = self._inner.poll(*args)
        finally:
            waited = self._bridge.acquire()
        if not waited:
            return ready
        events = dict(ready)
        for fd, event in self._inner.poll(0):
            events[fd] = events.get(fd, 0) | event
        return list(events.items())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _locked_selector(bridge: LoopBridge) -> selectors.BaseSelector:
    selector = selectors.DefaultSelector()
    inner = getattr(selector, "_selector", None)
    if inner is None or not hasattr(inner, "poll"):
        raise RuntimeError(f"the sync server flavour needs epoll or poll, not {selector!r}")
    selector._selector = _UnlockingPoller(inner, bridge)  # type: ignore[attr-defined]
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


_DONE = object()
_WAIT = object()
_UNLOCKED = object()
_STOPPED = object()


class _Call:
    """One call driven by a bridge: its coroutine, task stand-in and outcome."""

    __slots__ = ("coro", "done", "error", "pending", "result", "task")

    def __init__(self, coro: Coroutine[Any, Any, Any], task: _ThreadTask) -> None:
        self.coro = coro
        self.task = task
        self.done = threading.Event()  # set by the loop thread: over, or handed back
        self.pending: _Unlocked | None = None
        self.result: Any = None
        self.error: BaseException | None = None


class LoopBridge:
    """The lock and the loop of a sync-flavour server (see the module docstring).

    The thread that runs the loop must hold `lock` whenever it runs anything else of mixer's
    (`mixer.server.app.run` holds it around the loop's whole life).
    """

    def __init__(self, max_streams: int = 1000) -> None:
        """`max_streams`: client streams served at once (each holds a thread of the pool, which
        must have more threads than this, so that unary calls always find one)."""
        self.lock = threading.Lock()
        self.loop: Any = None
        self.max_streams = max_streams
        self.streams = 0  # changed under the lock only
        self._turns = 0  # times the lock was taken (changed under it)
        self._waiters = 0  # threads blocked taking it (changed under _count)
        self._count = threading.Lock()

    def acquire(self) -> bool:
        """Take the lock; True when that had to wait for another thread."""
        lock = self.lock
        if lock.acquire(blocking=False):
            self._turns += 1
            return False
        with self._count:
            self._waiters += 1
        lock.acquire()
        with self._count:
            self._waiters -= 1
        self._turns += 1
        return True

    def _give_turn(self) -> None:
        """Release the lock and, when threads wait for it, let one of them take it before
        this thread may take it again (a plain lock lets the releasing thread win; a long
        sliced call would then hold everyone up). Bounded: at most `_TURN_WAIT` seconds."""
        turns = self._turns
        waiters = self._waiters
        self.lock.release()
        if not waiters:
            return
        deadline = time.monotonic() + _TURN_WAIT
        while self._turns == turns and time.monotonic() < deadline:
            time.sleep(0)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop whose selector releases `lock` while it waits for I/O (a
        `asyncio.Runner` loop factory)."""
        loop = asyncio.SelectorEventLoop(_locked_selector(self))
        self.loop = loop
        return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Drive `coro` to its end from this (handler) thread (see the module docstring)."""
        call = _Call(coro, _ThreadTask(self.loop))
        value: Any = None
        error: BaseException | None = None
        while True:
            self.acquire()
            try:
                state = self._drive(call, value, error)
            except BaseException:
                self.lock.release()
                raise
            if state is _UNLOCKED and call.pending is None:
                self._give_turn()  # asyncio.sleep(0)
                value = error = None
                continue
            self.lock.release()
            if state is _WAIT:
                state = self._wait(call)
                if state is _STOPPED:
                    value, error = None, asyncio.CancelledError("the event loop stopped")
                    continue
            if state is _DONE:
                if call.error is not None:
                    raise call.error
                return call.result  # type: ignore[no-any-return]
            pending = call.pending  # _UNLOCKED: a blocking call for this thread
            call.pending = None
            value = error = None
            if pending is not None:
                try:
                    value = pending.fn(*pending.args)
                except BaseException as exc:
                    error = exc

    def _drive(self, call: _Call, value: Any, error: BaseException | None) -> object:
        """Run `call`'s coroutine under the lock until it ends (_DONE), awaits a future
        (_WAIT: `_resume` continues it on the thread that completes the future, the loop
        thread) or must let go of the lock (_UNLOCKED: `call.pending`, if any, is run by the
        handler thread without it)."""
        loop = self.loop
        on_loop = events._get_running_loop() is loop
        if not on_loop:
            events._set_running_loop(loop)
        ready = loop._ready
        scheduled = loop._scheduled
        timers = len(scheduled)
        task = call.task
        coro = call.coro
        try:
            while True:
                if task.must_cancel:
                    task.must_cancel = False
                    error = asyncio.CancelledError()
                _enter_task(loop, task)
                try:
                    yielded = coro.send(value) if error is None else coro.throw(error)
                except StopIteration as stop:
                    call.result = stop.value
                    return _DONE
                except BaseException as exc:
                    call.error = exc
                    return _DONE
                finally:
                    _leave_task(loop, task)
                value = error = None
                if yielded is None:  # asyncio.sleep(0): give the others a turn
                    if on_loop:
                        loop.call_soon(self._resume, call, None)
                        return _WAIT
                    return _UNLOCKED
                if type(yielded) is _Unlocked:
                    call.pending = yielded
                    if on_loop:
                        call.done.set()  # the handler thread runs it
                    return _UNLOCKED
                if getattr(yielded, "_asyncio_future_blocking", None):
                    yielded._asyncio_future_blocking = False
                    task.waiting = yielded
                    yielded.add_done_callback(functools.partial(self._resume, call))
                    return _WAIT
                error = RuntimeError(f"a handler thread cannot await {yielded!r}")
        finally:
            if not on_loop:
                if ready or len(scheduled) != timers:
                    loop._write_to_self()
                events._set_running_loop(None)

    def _resume(self, call: _Call, _: object) -> None:
        """Continue `call` on the loop thread once what it awaited is done; the handler thread
        is woken only when the call is over or needs it."""
        call.task.waiting = None
        state = self._drive(call, None, None)
        if state is _DONE:
            call.done.set()

    def _wait(self, call: _Call) -> object:
        """Wait without the lock until the loop thread has finished `call` (_DONE) or hands it
        back (_UNLOCKED); _STOPPED when the loop stopped first."""
        done = call.done
        while not done.wait(_WAIT_SLICE):
            if not self.loop.is_running():
                with self.lock:  # the loop stopped: nothing else takes it
                    if not done.is_set():
                        call.task.waiting = None
                        return _STOPPED
        done.clear()
        return _UNLOCKED if call.pending is not None else _DONE

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
