"""Per-handler report queues: the Report RPC only enqueues; one worker per handler delivers.

A full queue drops (and counts) instead of blocking; a handler that raises or exceeds its
per-call timeout is counted and never delays the others. A handler that answers inline
(`adapters.base.answers_inline`: its `report` never waits, e.g. in-memory metrics) is called
in place instead, with no queue, task or timer: there is nothing a queue could wait for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from adapters.base import Instance, ReportHandler, SeriesReportHandler
from mixer.telemetry import ServerMetrics

logger = logging.getLogger(__name__)


class ReportWorker:
    """Delivers instances to one report handler in batches, off the request path."""

    def __init__(
        self,
        handler_name: str,
        adapter: str,
        handler: ReportHandler,
        metrics: ServerMetrics,
        *,
        max_queue: int = 10_000,
        max_batch: int = 1_000,
        timeout: float = 5.0,
        inline: bool = False,
    ) -> None:
        self.handler_name = handler_name
        self.adapter = adapter
        self._handler = handler
        self._metrics = metrics
        # Offered slices as they came (not instance by instance: a Report of 100 entries is one
        # append), counted in instances against `max_queue`.
        self._pending: collections.deque[Sequence[Instance]] = collections.deque()
        self._queued = 0
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._max_batch = max_batch
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._depth = metrics.report_queue_depth.labels(handler_name)
        self._dropped_full = metrics.report_dropped.labels(handler_name, "queue_full")
        self._dropped_error = metrics.report_dropped.labels(handler_name, "handler_error")
        self._dropped_timeout = metrics.report_dropped.labels(handler_name, "timeout")
        self._ok = metrics.dispatches.labels(adapter, handler_name, "false")
        self._err = metrics.dispatches.labels(adapter, handler_name, "true")
        self._lat_ok = metrics.dispatch_latency.labels(adapter, handler_name, "false")
        self._lat_err = metrics.dispatch_latency.labels(adapter, handler_name, "true")
        self._inflight = 0
        self._inline = inline
        self.accepted = 0
        self.rejected = 0
        self.delivered = 0
        self.dropped = 0

    def offer(self, instances: Sequence[Instance]) -> int:
        """Enqueue without waiting (or, inline, deliver now); returns how many were dropped
        because the queue was full."""
        if self._inline:
            self._deliver_inline(instances)
            return 0
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        room = max(self._max_queue - self._queued, 0)
        taken = instances if len(instances) <= room else instances[:room]
        dropped = len(instances) - len(taken)
        if taken:
            self._pending.append(taken)
            self._queued += len(taken)
            self._idle.clear()
            self._wakeup.set()
        self.accepted += len(taken)
        if dropped:
            self.rejected += dropped
            self._dropped_full.inc(dropped)
        self._depth.set(self._queued)
        return dropped

    def stats(self) -> dict[str, int]:
        """Counts that always add up: offered = accepted + rejected (queue full), and
        accepted = delivered + dropped (handler error, timeout or shutdown)."""
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "delivered": self.delivered,
            "dropped": self.dropped,
        }

    def _next_batch(self) -> list[Instance]:
        batch: list[Instance] = []
        while self._pending and len(batch) < self._max_batch:
            chunk = self._pending.popleft()
            space = self._max_batch - len(batch)
            if len(chunk) > space:
                self._pending.appendleft(chunk[space:])
                chunk = chunk[:space]
            batch.extend(chunk)
        self._queued -= len(batch)
        return batch

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._next_batch()
                self._inflight = len(batch)
                await self._deliver(batch)
                self._inflight = 0
                self._depth.set(self._queued)
            self._idle.set()

    async def _deliver(self, batch: list[Instance]) -> None:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(self._handler.report(batch), self._timeout)
        except TimeoutError:
            self._account_failure(batch, self._dropped_timeout, start)
            logger.warning(
                "report handler %s timed out after %.3fs", self.handler_name, self._timeout
            )
        except Exception:
            self._account_failure(batch, self._dropped_error, start)
            logger.exception("report handler %s failed", self.handler_name)
        else:
            self.delivered += len(batch)
            self._ok.inc()
            self._lat_ok.observe(time.perf_counter() - start)

    def _deliver_inline(self, batch: Sequence[Instance]) -> None:
        self.accepted += len(batch)
        start = time.perf_counter()
        report = self._handler.report(batch)
        try:
            report.send(None)
        except StopIteration:
            self.delivered += len(batch)
            self._ok.inc()
            self._lat_ok.observe(time.perf_counter() - start)
            return
        except Exception:
            self._account_failure(batch, self._dropped_error, start)
            logger.exception("report handler %s failed", self.handler_name)
            return
        # It waited, which an inline handler promised never to do: nothing can resume it here.
        report.close()
        self._account_failure(batch, self._dropped_error, start)
        logger.error("report handler %s answers inline but waited", self.handler_name)

    def record(self, items: Sequence[tuple[object | None, Any]]) -> None:
        """Deliver prepared series and values now (`adapters.base.SeriesReportHandler`, an
        inline handler only), counted as `offer` counts instances."""
        handler = cast(SeriesReportHandler, self._handler)
        self.accepted += len(items)
        start = time.perf_counter()
        try:
            handler.record(items)
        except Exception:
            self._account_failure(items, self._dropped_error, start)
            logger.exception("report handler %s failed", self.handler_name)
            return
        self.delivered += len(items)
        self._ok.inc()
        self._lat_ok.observe(time.perf_counter() - start)

    def _account_failure(self, batch: Sequence[object], counter: object, start: float) -> None:
        self.dropped += len(batch)
        counter.inc(len(batch))  # type: ignore[attr-defined]
        self._err.inc()
        self._lat_err.observe(time.perf_counter() - start)

    async def flush(self, timeout: float) -> bool:
        """Wait until everything accepted so far is delivered or dropped; False on timeout."""
        if self._task is None:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop the worker; anything still queued is counted as dropped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        left = self._queued + self._inflight
        self._pending.clear()
        self._queued = 0
        self._inflight = 0
        self._idle.set()
        if left:
            self.dropped += left
            self._metrics.report_dropped.labels(self.handler_name, "shutdown").inc(left)
