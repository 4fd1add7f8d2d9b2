"""Envoy's access-log service v3 (`StreamAccessLogs`) feeding the report pipeline.

Each Envoy worker keeps one client stream open. The identifier arrives in a stream's first
message and is remembered for the rest of it. Entries become attribute bags and go to the
current runtime's report rules; enqueueing never waits, so reading never stalls a stream (a
full handler queue drops and counts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc

from mixer.attributes.envoy import bags_from_access_logs
from mixer.attributes.limits import DEFAULT_LIMITS, Limits
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.errors import MixerError
from mixer.runtime.runtime import RuntimeHolder
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
        self._latency = metrics.latency.labels(SERVICE, METHOD)

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler serving the ALS stream method."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.stream_unary_rpc_method_handler(
                    self.stream,
                    request_deserializer=als_pb2.StreamAccessLogsMessage.FromString,
                    response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
                )
            },
        )

    async def stream(
        self, requests: AsyncIterator[als_pb2.StreamAccessLogsMessage], context: Context
    ) -> als_pb2.StreamAccessLogsResponse:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        identifier: als_pb2.StreamAccessLogsMessage.Identifier | None = None
        try:
            async for message in requests:
                if message.HasField("identifier"):
                    identifier = message.identifier
                entries = len(message.http_logs.log_entry) + len(message.tcp_logs.log_entry)
                if entries > self._limits.max_als_entries:
                    code = grpc.StatusCode.RESOURCE_EXHAUSTED
                    await context.abort(
                        code,
                        f"{entries} access log entries in one message is more than the limit of "
                        f"{self._limits.max_als_entries}",
                    )
                try:
                    bags = bags_from_access_logs(message, identifier)
                except (ValueError, MixerError) as exc:
                    code = grpc.StatusCode.INVALID_ARGUMENT
                    await context.abort(code, f"access log entry: {exc}")
                self._received.inc(len(bags))
                with self._holder.use() as rt:
                    rt.dispatcher.report(bags)
            return als_pb2.StreamAccessLogsResponse()
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            logger.exception("access log stream failed")
            await context.abort(code, f"internal error: {type(exc).__name__}")
            raise
        finally:
            self._latency.observe(time.perf_counter() - start)
            self._metrics.handled.labels(SERVICE, METHOD, code.name).inc()
