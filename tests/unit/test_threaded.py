"""`mixer.api.threaded`: handler threads drive coroutines under the bridge's lock, the loop
thread holds it except while it waits for I/O, and whatever a handler thread schedules on the
loop runs without delay."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from mixer.api.threaded import LoopBridge, unlocked

T = TypeVar("T")


@pytest.fixture
def bridge() -> Iterator[LoopBridge]:
    """A bridge whose loop runs in a thread of its own, holding the lock as `app.run` does."""
    bridge = LoopBridge()
    started = threading.Event()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        started.set()
        await stop[0].wait()

    def run() -> None:
        with bridge.lock, asyncio.Runner(loop_factory=bridge.new_loop) as runner:
            runner.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield bridge
    finally:
        bridge.loop.call_soon_threadsafe(stop[0].set)
        thread.join(5)
        assert not thread.is_alive()


def bounded(bridge: LoopBridge, coro: Coroutine[Any, Any, T], seconds: float = 10.0) -> T:
    """`bridge.run(coro)` on a thread of its own, failing (not hanging) after `seconds`."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(bridge.run, coro).result(timeout=seconds)
    finally:
        # Not waiting for a stuck call: it ends when the fixture stops the loop.
        pool.shutdown(wait=False)


def test_a_call_that_never_suspends_runs_on_the_calling_thread_under_the_lock(
    bridge: LoopBridge,
) -> None:
    async def call() -> tuple[int, bool, object]:
        return threading.get_ident(), bridge.lock.locked(), asyncio.get_running_loop()

    ident, locked, loop = bridge.run(call())  # cannot hang: it never waits
    assert ident == threading.get_ident()
    assert locked
    assert loop is bridge.loop
    assert bridge.lock.acquire(timeout=2)  # given back (the idle loop thread waits in poll)
    bridge.lock.release()


def test_awaiting_the_loop_resumes_once_the_loop_thread_completes_the_future(
    bridge: LoopBridge,
) -> None:
    async def call() -> float:
        start = time.monotonic()
        # A timer scheduled from this thread: the loop thread must be woken to see it.
        await asyncio.sleep(0.05)
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0.01, "done"))
        assert await asyncio.wait_for(task, 2) == "done"
        return time.monotonic() - start

    elapsed = bounded(bridge, call())
    assert 0.05 <= elapsed < 1.0


def test_an_exception_of_an_awaited_future_reaches_the_coroutine(bridge: LoopBridge) -> None:
    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("from the loop thread")

    async def call() -> str:
        task = asyncio.get_running_loop().create_task(fail())
        try:
            await task
        except ValueError as exc:
            return str(exc)
        return "no error"

    assert bounded(bridge, call()) == "from the loop thread"


def test_unlocked_runs_without_the_lock_and_its_errors_are_raised_in_the_coroutine(
    bridge: LoopBridge,
) -> None:
    def free() -> bool:
        got = bridge.lock.acquire(timeout=2)
        if got:
            bridge.lock.release()
        return got

    def boom() -> None:
        raise KeyError("x")

    async def call() -> tuple[bool, bool]:
        was_free = await unlocked(free)
        try:
            await unlocked(boom)
        except KeyError:
            return was_free, bridge.lock.locked()
        return was_free, False

    assert bounded(bridge, call()) == (True, True)


def test_handler_threads_and_loop_callbacks_never_overlap(bridge: LoopBridge) -> None:
    """Eight threads drive coroutines that hold a flag across suspensions of other threads'
    steps, while the loop runs a callback every millisecond that checks the flag: no step of
    either may see the other half-done."""
    state = {"busy": 0, "overlaps": 0, "ticks": 0}
    stop = threading.Event()

    def tick() -> None:
        if state["busy"]:
            state["overlaps"] += 1
        state["ticks"] += 1
        if not stop.is_set():
            bridge.loop.call_later(0.001, tick)

    bridge.loop.call_soon_threadsafe(tick)

    async def call(i: int) -> int:
        for _ in range(20):
            state["busy"] += 1
            for _ in range(2000):  # some work, long enough to be preempted by the GIL
                pass
            if state["busy"] != 1:
                state["overlaps"] += 1
            state["busy"] -= 1
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
        return i

    deadline = time.monotonic() + 30
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # preempt often: an unprotected step would be caught mid-way
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(bridge.run, call(i)) for i in range(32)]
        try:
            results = [f.result(timeout=max(0.1, deadline - time.monotonic())) for f in futures]
        finally:
            sys.setswitchinterval(switch)
    stop.set()
    assert time.monotonic() < deadline
    assert results == list(range(32))
    assert state["ticks"] > 10
    assert state["overlaps"] == 0


def test_asyncio_timeout_cancels_what_a_handler_thread_waits_for(bridge: LoopBridge) -> None:
    async def call() -> tuple[bool, float, bool]:
        fut = asyncio.get_running_loop().create_future()
        start = time.monotonic()
        try:
            async with asyncio.timeout(0.05):
                await fut
        except TimeoutError:
            pass
        elapsed = time.monotonic() - start
        # Not expired: the result comes through.
        async with asyncio.timeout(5):
            ok = await asyncio.sleep(0.01, True)
        return fut.cancelled(), elapsed, ok

    cancelled, elapsed, ok = bounded(bridge, call())
    assert cancelled
    assert 0.05 <= elapsed < 1.0
    assert ok


def test_the_loop_thread_continues_a_call_and_hands_blocking_work_back(
    bridge: LoopBridge,
) -> None:
    """After a future, the rest of the call runs on the thread that completed it (no second
    hand-over to take the lock back); `unlocked` work still runs on the handler thread."""

    async def call() -> tuple[int, int, int, int]:
        first = threading.get_ident()
        await asyncio.sleep(0.01)
        after_future = threading.get_ident()
        in_unlocked = await unlocked(threading.get_ident)
        await asyncio.sleep(0.01)
        return first, after_future, in_unlocked, threading.get_ident()

    loop_thread: list[int] = []
    bridge.loop.call_soon_threadsafe(lambda: loop_thread.append(threading.get_ident()))
    first, after_future, in_unlocked, last = bounded(bridge, call())
    assert first == in_unlocked != loop_thread[0]
    assert after_future == last == loop_thread[0]
