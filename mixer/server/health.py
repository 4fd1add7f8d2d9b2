"""Liveness and readiness from the serving path's state: how late the event loop is.

A task on the event loop wakes every `interval` and records when it did and how late. The admin
port, in its own thread, reads that record: a loop that has not woken for `interval + max_lag`
is stalled now, whatever the last measurement said, so a loop held by one long request is seen
while it is held, not after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry, Counter, Gauge


class LoopMonitor:
    """Measures the event loop's lag; `lag()` and `healthy()` may be called from any thread."""

    def __init__(
        self, registry: CollectorRegistry, *, max_lag: float, interval: float = 0.1
    ) -> None:
        self.max_lag = max_lag
        self.interval = interval
        self._last_tick = time.monotonic()
        self._last_lag = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lag_gauge = Gauge(
            "mixer_event_loop_lag_seconds",
            "How late the event loop's periodic probe woke, at its last wake-up.",
            registry=registry,
        )
        self._stalls = Counter(
            "mixer_event_loop_stalls",
            "Probe wake-ups later than --max-loop-lag (the loop was held by something).",
            registry=registry,
        )
        self._max_lag_gauge = Gauge(
            "mixer_event_loop_max_lag_seconds",
            "The lag above which /healthz and /readyz fail (--max-loop-lag).",
            registry=registry,
        )
        self._max_lag_gauge.set(max_lag)

    def start(self) -> None:
        """Start probing on the running loop."""
        self._last_tick = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._probe(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _probe(self) -> None:
        while True:
            expected = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            lag = max(0.0, now - expected)
            self._last_lag = lag
            self._last_tick = now
            self._lag_gauge.set(lag)
            if lag > self.max_lag:
                self._stalls.inc()

    def lag(self) -> float:
        """The loop's lag now: the last measured one, or, while the probe is overdue, how
        overdue it is."""
        overdue = time.monotonic() - self._last_tick - self.interval
        return max(self._last_lag, overdue)

    def healthy(self) -> tuple[bool, str]:
        """Whether the loop's lag is within `max_lag`, and a line saying how late it is."""
        lag = self.lag()
        if lag > self.max_lag:
            return False, f"event loop stalled: {lag:.3f}s late (limit {self.max_lag:g}s)"
        return True, f"event loop lag {lag:.3f}s (limit {self.max_lag:g}s)"
