"""The per-handler report queue: bounded in instances, delivered in batches, counted exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.base import Instance
from mixer.runtime.reporting import ReportWorker
from mixer.telemetry import ServerMetrics


class Recording:
    """A report handler that keeps every batch; it can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def report(self, instances: Sequence[Instance]) -> None:
        await self.gate.wait()
        self.batches.append([i.name for i in instances])

    async def close(self) -> None:
        return None


def instances(prefix: str, n: int) -> list[Instance]:
    return [Instance(f"{prefix}{i}", "metric", {}) for i in range(n)]


async def test_batches_are_cut_at_max_batch_in_offer_order() -> None:
    handler = Recording()
    handler.gate.clear()
    worker = ReportWorker("h", "a", handler, ServerMetrics.create(), max_batch=4)
    worker.offer(instances("a", 3))
    worker.offer(instances("b", 3))
    worker.offer(instances("c", 3))
    handler.gate.set()
    assert await worker.flush(5)
    assert handler.batches == [
        ["a0", "a1", "a2", "b0"],
        ["b1", "b2", "c0", "c1"],
        ["c2"],
    ]
    assert worker.stats() == {"accepted": 9, "rejected": 0, "delivered": 9, "dropped": 0}
    await worker.stop()


async def test_a_full_queue_takes_what_fits_and_counts_the_rest() -> None:
    handler = Recording()
    handler.gate.clear()
    worker = ReportWorker("h", "a", handler, ServerMetrics.create(), max_queue=5, max_batch=100)
    assert worker.offer(instances("a", 3)) == 0
    await asyncio.sleep(0.01)  # the worker takes the first 3 and waits in the handler
    assert worker.offer(instances("b", 4)) == 0
    assert worker.offer(instances("c", 3)) == 2  # 4 queued + 1 room
    handler.gate.set()
    assert await worker.flush(5)
    assert handler.batches == [["a0", "a1", "a2"], ["b0", "b1", "b2", "b3", "c0"]]
    assert worker.stats() == {"accepted": 8, "rejected": 2, "delivered": 8, "dropped": 0}
    await worker.stop()


async def test_stop_counts_what_was_never_delivered() -> None:
    handler = Recording()
    handler.gate.clear()
    worker = ReportWorker("h", "a", handler, ServerMetrics.create(), max_batch=2)
    worker.offer(instances("a", 5))
    await asyncio.sleep(0.01)
    assert not await worker.flush(0.05)
    await worker.stop()
    stats = worker.stats()
    assert stats["delivered"] == 0 and stats["dropped"] == 5
    assert stats["accepted"] == stats["delivered"] + stats["dropped"]
    assert await worker.flush(0.05)
