"""Envoy's access-log service v3 (`StreamAccessLogs`) feeding the report pipeline.

Each Envoy worker keeps one client stream open. The identifier arrives in a stream's first
message and is remembered for the rest of it. Entries become attribute bags and go to the
current runtime's report rules; enqueueing never waits, so reading never stalls a stream (a
full handler queue drops and counts).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from mixer.api.status import stream_unary_handler
from mixer.api.threaded import LoopBridge
from mixer.attributes.envoy import bags_from_access_logs
from mixer.attributes.lazy import LazyStreamAccessLogsMessage
from mixer.attributes.limits import DEFAULT_LIMITS, Limits
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.errors import BadRequest, LimitExceeded
from mixer.runtime.report_plan import ReportSession
from mixer.runtime.runtime import Runtime, RuntimeHolder
from mixer.telemetry import ServerMetrics

logger = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
METHOD = "StreamAccessLogs"

Context = grpc.aio.ServicerContext[
    als_pb2.StreamAccessLogsMessage, als_pb2.StreamAccessLogsResponse
]


class AccessLogService:
    """ALS v3 served from the current runtime."""

    def __init__(
        self, holder: RuntimeHolder, metrics: ServerMetrics, *, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._holder = holder
        self._metrics = metrics
        self._limits = limits
        self._received = metrics.reports_received.labels("als")

    def handler(self, bridge: LoopBridge | None = None) -> grpc.GenericRpcHandler:
        """The generic handler serving the ALS stream method."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: stream_unary_handler(
                    self._metrics,
                    SERVICE,
                    METHOD,
                    self.stream,
                    # Addresses and TLS blocks stay bytes until read (`lazy`).
                    LazyStreamAccessLogsMessage,
                    bridge=bridge,
                )
            },
        )

    async def stream(
        self, requests: AsyncIterator[als_pb2.StreamAccessLogsMessage], context: Context
    ) -> als_pb2.StreamAccessLogsResponse:
        """Read the stream to its end; raises `LimitExceeded` for a message over the entry
        bound and `BadRequest` for an entry that cannot be read (`mixer.api.status` maps them).
        Entries of earlier messages have been reported by then."""
        identifier: als_pb2.StreamAccessLogsMessage.Identifier | None = None
        # Consecutive entries of a stream repeat most attributes: they are evaluated from what
        # changed (`ReportSession`), across messages, while the runtime stays the same.
        session: ReportSession | None = None
        session_of: Runtime | None = None
        async for message in requests:
            if message.HasField("identifier"):
                identifier = message.identifier
            entries = len(message.http_logs.log_entry) + len(message.tcp_logs.log_entry)
            if entries > self._limits.max_als_entries:
                raise LimitExceeded(
                    f"{entries} access log entries in one message is more than the limit of "
                    f"{self._limits.max_als_entries}",
                    "max_als_entries",
                )
            with self._holder.use() as rt:
                try:
                    # Only what some report rule may read, as for Mixer Reports.
                    bags = bags_from_access_logs(
                        message, identifier, wanted=rt.dispatcher.routes.report_names
                    )
                except (ValueError, BadRequest) as exc:
                    raise BadRequest(f"access log entry: {exc}") from exc
                self._received.inc(len(bags))
                if rt is not session_of:
                    session, session_of = rt.dispatcher.report_session(), rt
                if session is None:
                    rt.dispatcher.report(await rt.dispatcher.generate_report(bags))
                    continue
                for bag in bags:
                    # One conversion makes every bag: a name's values are of one type.
                    session.add_whole(bag, fixed_types=True)
                session.flush()
        return als_pb2.StreamAccessLogsResponse()
