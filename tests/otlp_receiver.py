"""A real OTLP receiver for tests: the collector's gRPC services and its HTTP endpoints on loopback.

Built from ``opentelemetry-proto``'s service definitions. Every export request is kept, decoded, so
tests can look at the metrics, log records and spans that arrived, waiting a bounded time.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

T = TypeVar("T")


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP KeyValues as a dict."""
    out: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        out[pair.key] = any_value(pair.value)
    return out


class Received:
    """Everything exported to the receiver, with bounded waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def add(self, kind: str, request: Any) -> None:
        with self._cond:
            getattr(self, kind).append(request)
            self._cond.notify_all()

    def wait_for(self, found: Callable[[], T | None], timeout: float = 15.0) -> T:
        """The first non-empty result of `found`, re-checked after each export; fails on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = found()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"nothing matching arrived within {timeout}s")
                self._cond.wait(remaining)

    def metric_points(self) -> Iterator[tuple[Resource, Metric]]:
        for request in list(self.metrics):
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        yield rm.resource, metric

    def log_records(self) -> Iterator[tuple[Resource, LogRecord]]:
        for request in list(self.logs):
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        yield rl.resource, record

    def spans(self) -> Iterator[tuple[Resource, Span]]:
        for request in list(self.traces):
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        yield rs.resource, span


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self._received = received

    def Export(self, request: Any, context: Any) -> Any:
        self._received.add("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, received: Received) -> None:
        self._received = received

    def Export(self, request: Any, context: Any) -> Any:
        self._received.add("logs", request)
        return logs_service_pb2.ExportLogsServiceResponse()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self._received = received

    def Export(self, request: Any, context: Any) -> Any:
        self._received.add("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcReceiver:
    """The OTLP/gRPC collector services on 127.0.0.1 (an ephemeral port)."""

    def __init__(self) -> None:
        self.received = Received()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        # The generated *_pb2_grpc modules have no type stubs.
        add_metrics = metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server
        add_logs = logs_service_pb2_grpc.add_LogsServiceServicer_to_server
        add_traces = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
        add_metrics(_Metrics(self.received), self._server)  # type: ignore[no-untyped-call]
        add_logs(_Logs(self.received), self._server)  # type: ignore[no-untyped-call]
        add_traces(_Traces(self.received), self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)


_HTTP_PATHS = {
    "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest),
    "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest),
    "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest),
}


class HttpReceiver:
    """The OTLP/HTTP protobuf endpoints on 127.0.0.1 (an ephemeral port)."""

    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = _HTTP_PATHS.get(self.path)
                if target is None:
                    self.send_error(404)
                    return
                kind, message = target
                request = message()
                request.ParseFromString(body)
                received.add(kind, request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
