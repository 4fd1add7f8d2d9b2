"""The per-handler report queue: bounded in instances, delivered in batches, counted exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

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


class Inline:
    """A report handler that answers inline: it records, fails, or (breaking its promise)
    waits, as told."""

    answers_inline = True

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.fail = False
        self.wait = False

    async def report(self, instances: Sequence[Instance]) -> None:
        if self.wait:
            await asyncio.sleep(0)
        if self.fail:
            raise ValueError("bad value")
        self.batches.append([i.name for i in instances])

    async def close(self) -> None:
        return None


def dropped(metrics: ServerMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "mixer_report_dropped_total", {"handler": "h", "reason": reason}
    )
    return value or 0.0


class Series(Inline):
    """An inline handler that also takes prepared series (`record`)."""

    series_value = "value"

    def prepare(self, instance: Instance) -> object | None:
        return instance.name

    def record(self, items: Sequence[tuple[object | None, Any]]) -> None:
        if self.fail:
            raise ValueError("bad value")
        self.batches.append([f"{h}={v}" for h, v in items])


async def test_prepared_series_are_recorded_in_place_and_counted_as_instances() -> None:
    handler = Series()
    metrics = ServerMetrics.create()
    worker = ReportWorker("h", "a", handler, metrics, inline=True)
    worker.record([("a", 1), ("a", 2)])
    assert handler.batches == [["a=1", "a=2"]]
    handler.fail = True
    worker.record([("a", 3), ("b", 4), ("c", 5)])
    assert worker.stats() == {"accepted": 5, "rejected": 0, "delivered": 2, "dropped": 3}
    assert dropped(metrics, "handler_error") == 3
    await worker.stop()


async def test_an_inline_handler_is_called_in_place_and_counted() -> None:
    handler = Inline()
    metrics = ServerMetrics.create()
    worker = ReportWorker("h", "a", handler, metrics, inline=True)
    assert worker.offer(instances("a", 3)) == 0
    # Delivered before offer returned: no task, nothing queued.
    assert handler.batches == [["a0", "a1", "a2"]]
    assert worker._task is None
    handler.fail = True
    assert worker.offer(instances("b", 2)) == 0
    handler.fail, handler.wait = False, True
    assert worker.offer(instances("c", 4)) == 0  # it waited: dropped, counted, not resumed
    assert handler.batches == [["a0", "a1", "a2"]]
    assert worker.stats() == {"accepted": 9, "rejected": 0, "delivered": 3, "dropped": 6}
    assert dropped(metrics, "handler_error") == 6
    assert await worker.flush(1)
    await worker.stop()
