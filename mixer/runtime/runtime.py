"""The runtime: one immutable (config, handlers, routes) triple per snapshot, swapped whole.

Each request takes the current runtime once and uses it to the end. A swap installs the new
runtime, waits for requests still using the old one to drain, then closes the handlers the new
one did not reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer.runtime.dispatcher import Dispatcher
from mixer.runtime.quota_specs import QuotaSelector
from mixer.runtime.ratelimit import RateLimitTable
from mixer.runtime.reporting import ReportWorker
from mixer.runtime.routing import HandlerEntry

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Runtime:
    """A built config: its dispatcher, handlers (by signature) and report workers."""

    revision: str
    dispatcher: Dispatcher
    handlers: Mapping[str, HandlerEntry] = field(default_factory=dict)
    workers: Mapping[str, ReportWorker] = field(default_factory=dict)
    config: Any = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    quota_selector: QuotaSelector = field(default_factory=lambda: QuotaSelector((), ()))
    ratelimit: RateLimitTable = field(default_factory=RateLimitTable.empty)
    active: int = 0


class RuntimeHolder:
    """Holds the current runtime and swaps it without dropping a request."""

    def __init__(self, initial: Runtime) -> None:
        self._current = initial
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Runtime:
        return self._current

    @contextlib.contextmanager
    def use(self) -> Iterator[Runtime]:
        """Pin the current runtime for the duration of one request."""
        rt = self._current
        rt.active += 1
        try:
            yield rt
        finally:
            rt.active -= 1

    async def swap(self, new: Runtime, *, drain_timeout: float = 10.0) -> None:
        """Install `new`; close handlers and workers of the old runtime that `new` dropped."""
        async with self._lock:
            old = self._current
            self._current = new
            removed = [e for sig, e in old.handlers.items() if sig not in new.handlers]
            removed_workers = [
                w for name, w in old.workers.items() if new.workers.get(name) is not w
            ]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + drain_timeout
            while old.active > 0 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            for worker in removed_workers:
                await worker.flush(timeout=max(0.0, deadline - loop.time()))
                await worker.stop()
            await old.ratelimit.close()
            for entry in removed:
                try:
                    await entry.handler.close()
                except Exception:
                    logger.exception("closing handler %s failed", entry.name)

    async def close(self, *, flush_timeout: float = 5.0) -> None:
        """Flush report queues and close every handler (shutdown)."""
        rt = self._current
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_timeout
        for worker in rt.workers.values():
            await worker.flush(timeout=max(0.0, deadline - loop.time()))
            await worker.stop()
            logger.info(
                "report handler %s: final counts",
                worker.handler_name,
                extra={"handler": worker.handler_name, **worker.stats()},
            )
        await rt.ratelimit.close()
        for entry in rt.handlers.values():
            try:
                await entry.handler.close()
            except Exception:
                logger.exception("closing handler %s failed", entry.name)
