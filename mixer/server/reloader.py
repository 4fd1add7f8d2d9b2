"""Hot reload: watch the config directory, debounce, load, validate, build, swap.

A config that fails to load keeps the last good one serving; every error is logged, counted
(`mixer_config_errors_total`, `mixer_config_last_reload_success 0`) and shown on /debug/config.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from watchfiles import Change, DefaultFilter

from mixer.config.cache import ConfigCache
from mixer.config.source import TEST_FILE_SUFFIXES, config_files
from mixer.errors import ConfigError
from mixer.redact import mask_credentials
from mixer.runtime.build import build_runtime, load_snapshot
from mixer.runtime.runtime import Runtime, RuntimeHolder
from mixer.settings import Settings
from mixer.telemetry import ServerMetrics
from mixer.templates import Variety

logger = logging.getLogger(__name__)


def config_revision(directory: Path) -> str:
    """The git commit of the config's work tree (``+dirty`` if modified), else a content hash."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "sha256:" + content_fingerprint(directory)[:16]


def content_fingerprint(directory: Path) -> str:
    """A hash of every config file's path and content (rule test files are not config: editing
    one triggers no reload)."""
    digest = hashlib.sha256()
    for path in config_files(directory):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class _ConfigFilter(DefaultFilter):
    """watchfiles' default filter (editors' swap files, .git …), and no rule test files."""

    def __call__(self, change: Change, path: str) -> bool:
        return not path.endswith(TEST_FILE_SUFFIXES) and super().__call__(change, path)


class Reloader:
    """Owns the runtime holder's lifecycle with respect to the config directory."""

    def __init__(
        self, settings: Settings, metrics: ServerMetrics, adapter_registry: CollectorRegistry
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._adapter_registry = adapter_registry
        self._dir = settings.config_dir
        self.holder: RuntimeHolder | None = None
        self._event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._fingerprint = ""
        self._cache = ConfigCache()
        """Parsed files and compiled programs of the last load; one load at a time uses it."""
        self._cache_lock = asyncio.Lock()
        self.last_errors: list[str] = []
        self.last_attempt = 0.0
        self.last_success = 0.0
        self.reloads = 0

    async def _load(self, previous: Runtime | None) -> Runtime:
        async with self._cache_lock:
            snapshot = await asyncio.to_thread(
                functools.partial(
                    load_snapshot,
                    self._dir,
                    self._settings.cel_libraries,
                    merge_ratelimit_domains=self._settings.ratelimit_merge_domains,
                    cache=self._cache,
                )
            )
        revision = await asyncio.to_thread(config_revision, self._dir)
        return await build_runtime(
            snapshot,
            self._metrics,
            revision=revision,
            previous=previous,
            handler_timeout=self._settings.handler_timeout,
            cache_size=self._settings.check_cache_size,
            cache_bytes=self._settings.check_cache_bytes,
            max_series=self._settings.max_series,
            max_quota_bytes=self._settings.max_quota_bucket_bytes,
            metrics_registry=self._adapter_registry,
            redis_url=self._settings.redis_url,
            ratelimit_epoch_windows=self._settings.ratelimit_epoch_windows,
        )

    async def initial(self) -> RuntimeHolder:
        """Load the first config; an invalid one stops start-up with every error listed."""
        self._fingerprint = await asyncio.to_thread(content_fingerprint, self._dir)
        try:
            runtime = await self._load(None)
        except ConfigError as exc:
            self._record_failure(exc.errors)
            raise
        self.holder = RuntimeHolder(runtime)
        self._record_success(runtime)
        return self.holder

    def trigger(self) -> None:
        """Ask for a reload (SIGHUP, file change)."""
        self._event.set()

    def start_watching(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._reload_loop())]
        if self._settings.watch:
            self._tasks += [loop.create_task(self._watch()), loop.create_task(self._poll())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch(self) -> None:
        from watchfiles import awatch

        try:
            async for _ in awatch(
                self._dir,
                debounce=int(self._settings.reload_debounce * 1000),
                watch_filter=_ConfigFilter(),
            ):
                self.trigger()
        except Exception as exc:  # inotify may be unavailable; the poller still runs
            logger.warning("file watching stopped (%s); relying on polling", exc)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._settings.poll_interval)
            fingerprint = await asyncio.to_thread(content_fingerprint, self._dir)
            if fingerprint != self._fingerprint:
                self.trigger()

    async def _reload_loop(self) -> None:
        while True:
            await self._event.wait()
            await asyncio.sleep(self._settings.reload_debounce)
            self._event.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Load and swap in the config on disk; keep the current one if it fails."""
        assert self.holder is not None
        self.last_attempt = time.time()
        started = time.perf_counter()
        self._fingerprint = await asyncio.to_thread(content_fingerprint, self._dir)
        try:
            runtime = await self._load(self.holder.current)
        except ConfigError as exc:
            self._metrics.config_load_seconds.set(time.perf_counter() - started)
            self._record_failure(exc.errors)
            return False
        except Exception as exc:
            self._metrics.config_load_seconds.set(time.perf_counter() - started)
            logger.exception("config reload failed")
            self._record_failure([f"{type(exc).__name__}: {exc}"])
            return False
        old = self.holder.current
        await self.holder.swap(runtime)
        self._metrics.config_load_seconds.set(time.perf_counter() - started)
        if old.revision != runtime.revision:
            self._metrics.config_info.remove(old.revision)
        self._record_success(runtime)
        return True

    def _record_success(self, runtime: Runtime) -> None:
        self.last_errors = []
        self.last_success = time.time()
        self.reloads += 1
        self._metrics.config_reload_success.set(1)
        self._metrics.config_reloads.labels("success").inc()
        self._metrics.config_info.labels(runtime.revision).set(1)
        logger.info(
            "config active",
            extra={"revision": runtime.revision, **{k: v for k, v in runtime.summary.items()}},
        )

    def _record_failure(self, errors: list[str]) -> None:
        # Shown on /debug/config and logged: a YAML error may quote a line holding a password.
        self.last_errors = [mask_credentials(error) for error in errors]
        self._metrics.config_reload_success.set(0)
        self._metrics.config_errors.inc(max(1, len(errors)))
        self._metrics.config_reloads.labels("failure").inc()
        for error in self.last_errors:
            logger.error("config error: %s", error)
        if self.holder is not None:
            logger.error("config rejected; the last good config keeps serving")

    def describe(self) -> dict[str, Any]:
        current = self.holder.current if self.holder is not None else None
        return {
            "config_dir": str(self._dir),
            "revision": current.revision if current else None,
            "summary": dict(current.summary) if current else {},
            "last_reload_success": not self.last_errors,
            "last_errors": self.last_errors,
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
        }

    def describe_routes(self) -> dict[str, Any]:
        if self.holder is None:
            return {}
        routes = self.holder.current.dispatcher.routes
        return {
            "rules": [
                {
                    "name": r.name,
                    "namespace": r.namespace,
                    "match": r.match.text if r.match is not None else "",
                    "actions": [
                        {
                            "handler": a.handler.name,
                            "adapter": a.handler.adapter,
                            "variety": a.variety.value,
                            "instances": [i.name for i in a.instances],
                            **(
                                {
                                    "bindings": {
                                        i.name: {attr: p.text for attr, p in i.bindings}
                                        for i in a.instances
                                    }
                                }
                                if a.variety is Variety.ATTRIBUTE_GENERATOR
                                else {}
                            ),
                        }
                        for a in r.actions
                    ],
                }
                for r in routes.rules
            ]
        }
