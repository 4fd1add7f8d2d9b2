"""The istio.mixer.v1 Mixer service: Check and Report over compressed attributes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection

import grpc

from mixer import codes
from mixer.api.check_encoding import CheckEncoder
from mixer.api.identity import peer_principal, with_peer_principal
from mixer.api.status import unary_handler
from mixer.api.threaded import LoopBridge
from mixer.attributes.bag import Bag, Value
from mixer.attributes.compressed import (
    check_word_count,
    decode,
    decode_report,
    decode_report_changes,
)
from mixer.attributes.lazy import LazyReportRequest
from mixer.attributes.limits import DEFAULT_LIMITS, Limits
from mixer.errors import LimitExceeded
from mixer.runtime.decision_log import DecisionLog
from mixer.runtime.dispatcher import QuotaRequest
from mixer.runtime.report_plan import ReportSession
from mixer.runtime.runtime import Runtime, RuntimeHolder
from mixer.telemetry import Children, ServerMetrics
from mixer.v1 import mixer_pb2

logger = logging.getLogger(__name__)

SERVICE = "istio.mixer.v1.Mixer"

_REPORT_SLICE = 16
# A Report evaluated from its changes gives others a turn once it has held the event loop this
# long (looked at every `_REPORT_SLICE` entries): each turn costs a thread hand-over on the sync
# server, and one per 16 entries was most of a batch's overhead.
_REPORT_HOLD_SECONDS = 0.001


class MixerService:
    """Mixer v1: decode attributes, run the current runtime, encode the answer."""

    def __init__(
        self,
        holder: RuntimeHolder,
        metrics: ServerMetrics,
        *,
        limits: Limits = DEFAULT_LIMITS,
        peer_identity: bool = False,
        decisions: DecisionLog | None = None,
    ) -> None:
        self._holder = holder
        self._decisions = decisions
        self._metrics = metrics
        self._limits = limits
        self._peer_identity = peer_identity
        self._reports = metrics.reports_received.labels("mixer")
        self._results = Children(metrics.check_results)
        self._encoder = CheckEncoder()

    def handler(self, bridge: LoopBridge | None = None) -> grpc.GenericRpcHandler:
        """The generic handler serving /istio.mixer.v1.Mixer/{Check,Report}."""
        m = self._metrics
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": unary_handler(
                    m,
                    SERVICE,
                    "Check",
                    self.check,
                    mixer_pb2.CheckRequest,
                    encoded=True,
                    bridge=bridge,
                ),
                # Its entries' string maps stay bytes until a rule reads one (`lazy`).
                "Report": unary_handler(
                    m, SERVICE, "Report", self.report, LazyReportRequest, bridge=bridge
                ),
            },
        )

    async def check(
        self,
        request: mixer_pb2.CheckRequest,
        context: grpc.aio.ServicerContext[mixer_pb2.CheckRequest, bytes],
    ) -> bytes:
        """The serialized CheckResponse (`CheckEncoder`)."""
        check_word_count(request.global_word_count)
        requested = request.quotas  # read key by key: a protobuf map's items() is Python-level
        if len(requested) > self._limits.max_quotas:
            raise LimitExceeded(
                f"quotas: {len(requested)} quota names is more than the limit of "
                f"{self._limits.max_quotas}",
                "max_quotas",
            )
        quotas = {
            name: QuotaRequest(requested[name].amount, requested[name].best_effort)
            for name in requested
        }
        # Whole, unlike a Report's entries: a Check is one message, and a malformed value is
        # refused even where no rule reads it.
        bag = decode(request.attributes, limits=self._limits)
        if self._peer_identity:
            bag = with_peer_principal(bag, context)
        with self._holder.use() as rt:
            if self._decisions is None:
                outcome = await rt.dispatcher.check(bag, quotas, request.deduplication_id)
            else:
                start = time.perf_counter()
                outcome = await rt.dispatcher.check(bag, quotas, request.deduplication_id)
                self._decisions.record(rt, "mixer", bag, outcome, time.perf_counter() - start)
        self._results.get(
            "mixer",
            outcome.decided_by if outcome.status_code else "",
            codes.name(outcome.status_code),
        ).inc()
        return self._encoder.encode(outcome, request.global_word_count)

    async def report(
        self,
        request: mixer_pb2.ReportRequest,
        context: grpc.aio.ServicerContext[mixer_pb2.ReportRequest, mixer_pb2.ReportResponse],
    ) -> mixer_pb2.ReportResponse:
        if len(request.attributes) > self._limits.max_report_entries:
            raise LimitExceeded(
                f"attributes: {len(request.attributes)} report entries is more than the limit of "
                f"{self._limits.max_report_entries}",
                "max_report_entries",
            )
        with self._holder.use() as rt:
            debug = logger.isEnabledFor(logging.DEBUG)
            session = None if debug else rt.dispatcher.report_session()
            if session is not None:
                await self._report_changes(rt, session, request, context)
            else:
                await self._report_bags(rt, request, context, debug)
        return mixer_pb2.ReportResponse()

    async def _report_changes(
        self,
        rt: Runtime,
        session: ReportSession,
        request: mixer_pb2.ReportRequest,
        context: grpc.aio.ServicerContext[mixer_pb2.ReportRequest, mixer_pb2.ReportResponse],
    ) -> None:
        """Each entry evaluated from what it changed (`ReportSession`)."""
        delta, changes = decode_report_changes(
            request, wanted=rt.dispatcher.routes.report_names, limits=self._limits
        )
        self._reports.inc(len(changes))
        current: dict[str, Value] = {}
        bag = Bag._adopt(current)  # one bag, updated in place entry by entry (DELTA)
        principal: str | None = None
        turn = time.perf_counter() + _REPORT_HOLD_SECONDS
        for i, change in enumerate(changes):
            if i and not i % _REPORT_SLICE and time.perf_counter() >= turn:
                # In slices, so that a large batch never holds the event loop (and the checks
                # and Redis replies waiting on it) for long.
                session.flush()
                await asyncio.sleep(0)
                turn = time.perf_counter() + _REPORT_HOLD_SECONDS
            if not delta:
                whole = Bag._adopt(change)
                session.add_whole(
                    with_peer_principal(whole, context) if self._peer_identity else whole
                )
                continue
            current.update(change)
            changed: Collection[str] = change.keys()
            if self._peer_identity and "source.principal" not in current:
                if principal is None:
                    principal = peer_principal(context.auth_context()) or ""
                if principal:
                    current["source.principal"] = principal
                    changed = [*changed, "source.principal"]
            session.add(bag, changed)
        session.flush()

    async def _report_bags(
        self,
        rt: Runtime,
        request: mixer_pb2.ReportRequest,
        context: grpc.aio.ServicerContext[mixer_pb2.ReportRequest, mixer_pb2.ReportResponse],
        debug: bool,
    ) -> None:
        """The reference path: a bag per entry, generation, then every rule from scratch."""
        # Only what some report rule may read: Istio's proxies also send headers, times and
        # addresses that no metric looks at.
        bags = decode_report(
            request,
            wanted=None if debug else rt.dispatcher.routes.report_names,
            limits=self._limits,
        )
        if self._peer_identity:
            bags = [with_peer_principal(bag, context) for bag in bags]
        self._reports.inc(len(bags))
        if debug:
            for i, bag in enumerate(bags):
                logger.debug("report entry %d: %s", i, dict(bag))
        for start in range(0, len(bags), _REPORT_SLICE):
            if start:
                await asyncio.sleep(0)
            chunk = await rt.dispatcher.generate_report(bags[start : start + _REPORT_SLICE])
            rt.dispatcher.report(chunk)
