"""Calling handlers: under the handler timeout, counted and timed per handler, the same way for
Check, its quotas and the rate limit service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from adapters.base import Instance, QuotaArgs, QuotaResult
from mixer.runtime.routing import HandlerEntry
from mixer.telemetry import ServerMetrics

T = TypeVar("T")


class HandlerCalls:
    """Runs handler coroutines for one runtime.

    A handler that answers inline (`HandlerEntry.inline`) is awaited in place; any other is cut
    off after `timeout` seconds with `TimeoutError`. Every call is counted and timed in
    ``mixer_dispatches_total`` / ``mixer_dispatch_duration_seconds`` by adapter, handler and
    whether it raised.
    """

    def __init__(self, metrics: ServerMetrics, timeout: float) -> None:
        self._metrics = metrics
        self.timeout = timeout
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def timed(self, entry: HandlerEntry, coro: Awaitable[T]) -> T:
        """`coro`'s result, under the timeout unless `entry` answers inline."""
        start = time.perf_counter()
        error = "true"
        try:
            if entry.inline:
                result = await coro
            else:
                async with asyncio.timeout(self.timeout):
                    result = await coro
            error = "false"
            return result
        finally:
            key = (entry.adapter, entry.name, error)
            children = self._children.get(key)
            if children is None:
                children = (
                    self._metrics.dispatches.labels(*key),
                    self._metrics.dispatch_latency.labels(*key),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)

    async def run_all(self, jobs: Sequence[tuple[HandlerEntry, Awaitable[Any]]]) -> list[object]:
        """Each job's result or exception, in order. A single job, or handlers that all answer
        inline, are awaited in place, one after the other; otherwise all run concurrently."""
        if len(jobs) == 1 or all(entry.inline for entry, _ in jobs):
            out: list[object] = []
            for entry, coro in jobs:
                try:
                    out.append(await self.timed(entry, coro))
                except Exception as exc:
                    out.append(exc)
            return out
        return list(
            await asyncio.gather(
                *(self.timed(entry, coro) for entry, coro in jobs), return_exceptions=True
            )
        )

    async def allocate(
        self, entry: HandlerEntry, requests: Sequence[tuple[Instance, QuotaArgs]]
    ) -> list[QuotaResult]:
        """One `QuotaResult` per request, in order, from `entry`'s quota handler: one
        `quota_many` call when it has one and there is more than one request. Raises the first
        failure (a timeout included); `entry` must allocate quotas."""
        if entry.batch is not None and len(requests) > 1:
            return list(await self.timed(entry, entry.batch.quota_many(requests)))
        quotas = entry.quotas
        if quotas is None:
            raise TypeError(f"handler {entry.name} does not allocate quotas")
        results = await self.run_all([(entry, quotas.quota(i, a)) for i, a in requests])
        out: list[QuotaResult] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            out.append(result)  # type: ignore[arg-type]
        return out
