"""The composition root: settings -> adapters -> config -> runtime -> servers; signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from mixer import __version__
from mixer.api.accesslog_servicer import SERVICE as ALS_SERVICE
from mixer.api.accesslog_servicer import AccessLogService
from mixer.api.authz_servicer import SERVICE as AUTHZ_SERVICE
from mixer.api.authz_servicer import AuthorizationService
from mixer.api.mixer_servicer import SERVICE as MIXER_SERVICE
from mixer.api.mixer_servicer import MixerService
from mixer.api.ratelimit_servicer import SERVICE as RLS_SERVICE
from mixer.api.ratelimit_servicer import RateLimitService
from mixer.api.threaded import LoopBridge
from mixer.attributes.mask import Mask
from mixer.runtime.decision_log import DecisionLog
from mixer.runtime.runtime import RuntimeHolder
from mixer.server.admin import AdminServer, PostRoute
from mixer.server.explain_route import ExplainRoute
from mixer.server.grpc_server import create_server, set_serving
from mixer.server.health import LoopMonitor
from mixer.server.reloader import Reloader
from mixer.settings import Settings, split_address
from mixer.telemetry import ServerMetrics

logger = logging.getLogger(__name__)


# Young-generation collections are what a request pays for: every allocation counts toward
# them. Requests allocate hundreds of short-lived objects that reference counting frees, so the
# default threshold (700) runs a collection every few requests for nothing.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_garbage_collector() -> None:
    """Move everything alive at start-up (modules, libraries, the first config) out of the
    collector's sight, and collect young objects less often.

    Without it, the cyclic collector keeps re-scanning the process's long-lived objects while
    the check cache and metric series grow (docs/benchmarks.md, second round, item 4). The
    objects stay reference-counted; only cycles among them would outlive their last use.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Application:
    """One serving process: gRPC port, admin port, config reloader."""

    def __init__(self, settings: Settings, bridge: LoopBridge | None = None) -> None:
        """`bridge`: serve on a sync grpcio server through it (`mixer.api.threaded`); the
        caller runs the event loop that `bridge.new_loop` made, holding its lock."""
        self.settings = settings
        self.bridge = bridge
        self.metrics = ServerMetrics.create()
        self.metrics.build.labels("mixer", __version__).set(1)
        self.adapter_registry = CollectorRegistry()
        self.reloader = Reloader(settings, self.metrics, self.adapter_registry)
        self.holder: RuntimeHolder | None = None
        self.server: Any = None
        self.admin: AdminServer | None = None
        self.adapter_metrics: AdminServer | None = None
        self.port = 0
        self.loop_monitor = LoopMonitor(self.metrics.registry, max_lag=settings.max_loop_lag)
        self._stopping = asyncio.Event()
        self._ready = False

    async def start(self) -> None:
        """Load the config (failing start-up if it is invalid), then start serving."""
        self.holder = await self.reloader.initial()
        self._decisions = self._decision_log()
        mixer = MixerService(
            self.holder,
            self.metrics,
            limits=self.settings.limits,
            peer_identity=self.settings.tls_client_ca is not None,
            decisions=self._decisions,
        )
        handlers = [mixer.handler(self.bridge)]
        names = [MIXER_SERVICE]
        for extra_handler, name in self._envoy_services(self.holder):
            handlers.append(extra_handler)
            names.append(name)
        self.server, health, self.port = create_server(
            self.settings, handlers, names, sync=self.bridge is not None
        )
        self._health = health
        self._names = names
        host, admin_port = split_address(self.settings.admin_address)
        self.admin = AdminServer(
            host,
            admin_port,
            self.metrics.registry,
            ready=lambda: self._ready,
            live=self.loop_monitor.healthy,
            debug=self._debug_routes() if self.settings.enable_debug else None,
            **self._admin_bounds(),
            posts=self._debug_posts() if self.settings.enable_debug else None,
        )
        mhost, mport = split_address(self.settings.metrics_address)
        self.adapter_metrics = AdminServer(
            mhost,
            mport,
            self.adapter_registry,
            ready=lambda: self._ready,
            live=self.loop_monitor.healthy,
            **self._admin_bounds(),
        )
        self.loop_monitor.start()
        await self.server.start()
        self.admin.start()
        self.adapter_metrics.start()
        await set_serving(health, names, True)
        tune_garbage_collector()
        self._ready = True
        self.reloader.start_watching()
        logger.info(
            "mixer %s serving",
            __version__,
            extra={
                "address": self.settings.address,
                "port": self.port,
                "admin_port": self.admin.port,
                "metrics_port": self.adapter_metrics.port,
                "revision": self.holder.current.revision,
            },
        )

    def _admin_bounds(self) -> dict[str, Any]:
        crossed = self.metrics.limit_exceeded
        return {
            "timeout": self.settings.admin_timeout,
            "max_connections": self.settings.admin_max_connections,
            "on_limit": lambda flag: crossed.labels(flag).inc(),
        }

    def _envoy_services(self, holder: RuntimeHolder) -> list[tuple[grpc.GenericRpcHandler, str]]:
        limits = self.settings.limits
        authz = AuthorizationService(
            holder,
            self.metrics,
            limits=limits,
            peer_identity=self.settings.tls_client_ca is not None,
            dedup_header=self.settings.authz_dedup_header,
            decisions=self._decisions,
        )
        als = AccessLogService(holder, self.metrics, limits=limits)
        rls = RateLimitService(
            holder,
            self.metrics,
            headers=self.settings.ratelimit_headers,
            shadow_mode=self.settings.ratelimit_shadow_mode,
            quota_mode=self.settings.ratelimit_quota_mode,
            dynamic_metadata=self.settings.ratelimit_dynamic_metadata,
            near_limit_ratio=self.settings.ratelimit_near_limit_ratio,
            max_stat_keys=self.settings.ratelimit_max_stat_keys,
            limits=limits,
        )
        return [
            (authz.handler(self.bridge), AUTHZ_SERVICE),
            (als.handler(self.bridge), ALS_SERVICE),
            (rls.handler(self.bridge), RLS_SERVICE),
        ]

    def _debug_routes(self) -> dict[str, Any]:
        return {
            "/debug/config": self.reloader.describe,
            "/debug/routes": self.reloader.describe_routes,
        }

    def _decision_log(self) -> DecisionLog | None:
        if not self.settings.decision_log_handler:
            return None
        return DecisionLog(
            self.settings.decision_log_handler,
            self.settings.decision_log_sample,
            Mask.parse(self.settings.decision_log_mask),
            self.metrics.decision_log,
        )

    def _debug_posts(self) -> dict[str, PostRoute]:
        assert self.holder is not None
        explain = ExplainRoute(
            self.holder,
            asyncio.get_running_loop(),
            self.metrics.debug_explain,
            limits=self.settings.limits,
            max_body=self.settings.max_message_bytes,
            timeout=max(self.settings.handler_timeout * 2, 5.0),
        )
        return {"/debug/explain": explain}

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        """Stop accepting, finish in-flight calls within the grace period, flush reports."""
        started = time.monotonic()
        self._ready = False
        if self.server is not None:
            await set_serving(self._health, self._names, False)
            await self.server.stop(self.settings.grace_period)
        await self.reloader.stop()
        if self.holder is not None:
            left = max(0.5, self.settings.grace_period - (time.monotonic() - started))
            await self.holder.close(flush_timeout=left)
        await self.loop_monitor.stop()
        if self.admin is not None:
            self.admin.stop()
        if self.adapter_metrics is not None:
            self.adapter_metrics.stop()
        logger.info("mixer stopped", extra={"seconds": round(time.monotonic() - started, 3)})


def run(settings: Settings) -> int:
    """`serve` on the server flavour `settings.server_flavour` names; returns the exit code."""
    if settings.server_flavour != "sync":
        return asyncio.run(serve(settings))
    bridge = LoopBridge(max_streams=settings.max_concurrent_streams)
    # This thread runs the loop: it holds the bridge's lock except while the loop waits for I/O.
    with bridge.lock, asyncio.Runner(loop_factory=bridge.new_loop) as runner:
        return runner.run(serve(settings, bridge))


async def serve(settings: Settings, bridge: LoopBridge | None = None) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the config. Returns the exit code."""
    app = Application(settings, bridge)
    try:
        await app.start()
    except Exception as exc:
        logger.error("start-up failed: %s", exc)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    loop.add_signal_handler(signal.SIGHUP, app.reloader.trigger)
    await app.wait()
    logger.info("signal received, shutting down", extra={"grace": settings.grace_period})
    with contextlib.suppress(Exception):
        await app.stop()
    return 0
