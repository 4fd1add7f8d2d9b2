"""The otel adapter against a real OTLP receiver on loopback (gRPC and HTTP)."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client import CollectorRegistry

from adapters import otel
from adapters.base import Env, Instance, ParamError
from tests.otlp_receiver import GrpcReceiver, HttpReceiver, attributes

pytestmark = pytest.mark.integration

START = datetime.datetime(2020, 5, 6, 7, 8, 9, 250000, tzinfo=datetime.UTC)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
B3_TRACE_ID = "a3ce929d0e0e4736"


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    receiver = GrpcReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.stop()


def make_env(max_series: int = 2000) -> Env:
    return Env(
        handler_name="otel.handler.istio-system",
        logger=logging.getLogger("test.otel"),
        registry=CollectorRegistry(),
        clock=time.monotonic,
        max_series=max_series,
    )


METRICS = [
    {
        "name": "istio.requests",
        "instanceName": "requestcount.instance.istio-system",
        "kind": "COUNTER",
        "labelNames": ["response_code", "source_ip"],
    },
    {
        "name": "istio.request.duration",
        "instance_name": "requestduration.metric.istio-system",
        "kind": "DISTRIBUTION",
        "unit": "s",
        "label_names": ["response_code"],
        "buckets": {"explicit_buckets": {"bounds": [0.01, 0.1, 1]}},
    },
    {"name": "queue.depth", "instanceName": "depth.instance.istio-system", "kind": "GAUGE"},
    {
        "name": "connections.open",
        "instanceName": "open.instance.istio-system",
        "kind": "UP_DOWN_COUNTER",
    },
]


def metric(name: str, value: object, **dims: object) -> Instance:
    return Instance(name, "metric", {"value": value, "dimensions": dims})


def log_entry(**variables: object) -> Instance:
    return Instance(
        "accesslog.instance.istio-system",
        "logentry",
        {"severity": "Warning", "timestamp": START, "variables": variables},
    )


def span(**fields: object) -> Instance:
    base: dict[str, object] = {
        "trace_id": TRACE_ID,
        "span_id": "00f067aa0ba902b7",
        "parent_span_id": "53995c3f42cd8ad8",
        "span_name": "reviews.default.svc.cluster.local:9080/*",
        "start_time": START,
        "end_time": START + datetime.timedelta(milliseconds=35),
        "span_tags": {"http.method": "GET", "destination.ip": bytes([10, 1, 2, 3])},
        "http_status_code": 503,
        "client_span": False,
    }
    base.update(fields)
    return Instance("tracespan.instance.istio-system", "tracespan", base)


def nanos(value: datetime.datetime) -> int:
    return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000


def wait_for_spans(receiver: GrpcReceiver, count: int) -> list[Span]:
    def found() -> list[Span] | None:
        spans = [span for _, span in receiver.received.spans()]
        return spans if len(spans) >= count else None

    return receiver.received.wait_for(found)


def find_metric(receiver: Any, name: str) -> Any:
    def latest() -> Any:
        found = [m for _, m in receiver.received.metric_points() if m.name == name]
        return found[-1] if found else None

    return receiver.received.wait_for(latest)


async def test_metrics_logs_and_spans_arrive_over_grpc(grpc_receiver: GrpcReceiver) -> None:
    params = otel.parse_params(
        {
            "endpoint": grpc_receiver.endpoint,
            "insecure": True,
            "resourceAttributes": {"deployment.environment": "test", "mesh.size": 3},
            "metrics": METRICS,
        }
    )
    handler = otel.build(params, make_env())
    ip = bytes([10, 0, 0, 9])
    await handler.report(
        [metric("requestcount.instance.istio-system", 1, response_code=200, source_ip=ip)] * 7
        + [metric("requestcount.instance.istio-system", "1", response_code=503, source_ip=ip)]
        + [
            metric(
                "requestduration.instance.istio-system",
                datetime.timedelta(milliseconds=ms),
                response_code=200,
            )
            for ms in (5, 50, 500, 5000)
        ]
        + [
            metric("depth.instance.istio-system", 3, pool="a"),
            metric("depth.instance.istio-system", 9, pool="a"),
            metric("open.instance.istio-system", 4),
            metric("open.instance.istio-system", -1),
            log_entry(sourceIp=ip, latency=datetime.timedelta(milliseconds=12), url="/r", code=404),
            span(),
            span(
                span_id="1111111111111111",
                parent_span_id="",
                client_span=True,
                trace_id=B3_TRACE_ID,
            ),
        ]
    )
    await handler.close()

    requests = find_metric(grpc_receiver, "istio.requests")
    assert requests.sum.is_monotonic
    points = {
        attributes(p.attributes)["response_code"]: (p.as_double, attributes(p.attributes))
        for p in requests.sum.data_points
    }
    assert points[200] == (7.0, {"response_code": 200, "source_ip": "10.0.0.9"})
    assert points[503][0] == 1.0

    duration = find_metric(grpc_receiver, "istio.request.duration")
    assert duration.unit == "s"
    (hist,) = duration.histogram.data_points
    assert list(hist.explicit_bounds) == [0.01, 0.1, 1.0]
    assert list(hist.bucket_counts) == [1, 1, 1, 1]
    assert (hist.count, hist.sum) == (4, pytest.approx(5.555))

    (gauge,) = find_metric(grpc_receiver, "queue.depth").gauge.data_points
    assert (gauge.as_double, attributes(gauge.attributes)) == (9.0, {"pool": "a"})
    up_down = find_metric(grpc_receiver, "connections.open").sum
    assert not up_down.is_monotonic
    assert up_down.data_points[0].as_double == 3.0

    resource, _ = next(iter(grpc_receiver.received.metric_points()))
    resource_attributes = attributes(resource.attributes)
    assert resource_attributes["service.name"] == "mixer"
    assert resource_attributes["deployment.environment"] == "test"
    assert resource_attributes["mesh.size"] == 3

    ((_, record),) = grpc_receiver.received.wait_for(
        lambda: list(grpc_receiver.received.log_records())
    )
    assert record.time_unix_nano == nanos(START)
    assert (record.severity_text, record.severity_number) == ("Warning", 13)
    assert record.body.string_value == "accesslog.instance.istio-system"
    assert attributes(record.attributes) == {
        "sourceIp": "10.0.0.9",
        "latency": "12ms",
        "url": "/r",
        "code": 404,
    }

    server, client = sorted(wait_for_spans(grpc_receiver, 2), key=lambda s: s.kind)
    assert server.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert server.trace_id.hex() == TRACE_ID
    assert server.span_id.hex() == "00f067aa0ba902b7"
    assert server.parent_span_id.hex() == "53995c3f42cd8ad8"
    assert server.name == "reviews.default.svc.cluster.local:9080/*"
    assert (server.start_time_unix_nano, server.end_time_unix_nano) == (
        nanos(START),
        nanos(START) + 35_000_000,
    )
    assert attributes(server.attributes) == {
        "http.method": "GET",
        "destination.ip": "10.1.2.3",
        "http.status_code": 503,
    }
    assert server.status.code == Status.STATUS_CODE_ERROR
    assert client.kind == Span.SpanKind.SPAN_KIND_CLIENT
    assert client.trace_id.hex() == "0" * 16 + B3_TRACE_ID
    assert client.parent_span_id == b""


async def test_rewrite_client_span_id_links_server_to_client_as_mixer_did(
    grpc_receiver: GrpcReceiver,
) -> None:
    handler = otel.build(
        otel.parse_params({"endpoint": grpc_receiver.endpoint, "insecure": True}), make_env()
    )
    await handler.report(
        [
            span(client_span=True, rewrite_client_span_id=True, span_name="client"),
            span(client_span=False, rewrite_client_span_id=True, span_name="server"),
        ]
    )
    await handler.close()

    spans = {span.name: span for span in wait_for_spans(grpc_receiver, 2)}
    assert spans["client"].span_id.hex() == "3f9a4969c3b9c01c"  # 00f067aa0ba902b7 ^ Mixer's pad
    assert spans["server"].parent_span_id == spans["client"].span_id
    assert spans["server"].span_id.hex() == "00f067aa0ba902b7"
    assert spans["client"].status.code == Status.STATUS_CODE_ERROR  # 503 on a client span


async def test_signals_arrive_over_http(http_receiver: HttpReceiver) -> None:
    params = otel.parse_params(
        {"protocol": "http", "endpoint": http_receiver.endpoint, "metrics": METRICS[:1]}
    )
    handler = otel.build(params, make_env())
    await handler.report(
        [
            metric("requestcount.instance.istio-system", 2, response_code=200, source_ip="x"),
            log_entry(url="/http"),
            span(),
        ]
    )
    await handler.close()

    (point,) = find_metric(http_receiver, "istio.requests").sum.data_points
    assert point.as_double == 2.0
    ((_, record),) = http_receiver.received.wait_for(
        lambda: list(http_receiver.received.log_records())
    )
    assert attributes(record.attributes) == {"url": "/http"}
    ((_, sent),) = http_receiver.received.wait_for(lambda: list(http_receiver.received.spans()))
    assert sent.trace_id.hex() == TRACE_ID


async def test_metrics_are_exported_periodically_while_the_handler_runs(
    grpc_receiver: GrpcReceiver,
) -> None:
    params = otel.parse_params(
        {
            "endpoint": grpc_receiver.endpoint,
            "insecure": True,
            "exportInterval": "200ms",
            "metrics": METRICS[:1],
        }
    )
    handler = otel.build(params, make_env())
    try:
        await handler.report(
            [metric("requestcount.instance.istio-system", 5, response_code=200, source_ip="a")]
        )
        (point,) = find_metric(grpc_receiver, "istio.requests").sum.data_points
        assert point.as_double == 5.0
    finally:
        await handler.close()


async def test_cardinality_limit_is_raised_and_overflow_is_reported(
    grpc_receiver: GrpcReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    params = otel.parse_params(
        {
            "endpoint": grpc_receiver.endpoint,
            "insecure": True,
            "cardinalityLimit": 5,
            "metrics": METRICS[:1],
        }
    )
    handler = otel.build(params, make_env())
    with caplog.at_level(logging.WARNING, logger="test.otel"):
        await handler.report(
            [
                metric("requestcount.instance.istio-system", 1, response_code=c, source_ip="a")
                for c in range(10)
            ]
        )
    await handler.close()

    points = find_metric(grpc_receiver, "istio.requests").sum.data_points
    overflow = [p for p in points if attributes(p.attributes).get("otel.metric.overflow")]
    assert len(points) == 6  # the limit's five attribute sets plus the overflow point
    assert overflow and overflow[0].as_double == 5.0
    assert any("cardinalityLimit 5" in r.getMessage() for r in caplog.records)


async def test_default_limit_keeps_more_than_the_sdks_2000_series(
    grpc_receiver: GrpcReceiver,
) -> None:
    params = otel.parse_params(
        {"endpoint": grpc_receiver.endpoint, "insecure": True, "metrics": METRICS[:1]}
    )
    # The server's --max-series (default 2000) caps cardinalityLimit; raised here.
    handler = otel.build(params, make_env(max_series=20_000))
    await handler.report(
        [
            metric("requestcount.instance.istio-system", 1, response_code=c, source_ip="a")
            for c in range(3000)
        ]
    )
    await handler.close()

    points = find_metric(grpc_receiver, "istio.requests").sum.data_points
    assert len(points) == 3000
    assert not [p for p in points if attributes(p.attributes).get("otel.metric.overflow")]


async def test_server_max_series_caps_the_limit_and_counts_the_overflow(
    grpc_receiver: GrpcReceiver,
) -> None:
    params = otel.parse_params(
        {"endpoint": grpc_receiver.endpoint, "insecure": True, "metrics": METRICS[:1]}
    )
    env = make_env(max_series=5)
    handler = otel.build(params, env)
    await handler.report(
        [
            metric("requestcount.instance.istio-system", 1, response_code=c, source_ip="a")
            for c in range(10)
        ]
    )
    overflowed = env.registry.get_sample_value(
        "mixer_series_overflow_total", {"metric": "istio.requests"}
    )
    await handler.close()

    points = find_metric(grpc_receiver, "istio.requests").sum.data_points
    assert len(points) == 6  # five attribute sets plus the overflow point
    assert overflowed == 5


async def test_handlers_never_touch_the_global_providers(grpc_receiver: GrpcReceiver) -> None:
    before = (metrics_api.get_meter_provider(), trace_api.get_tracer_provider())
    first = otel.build(
        otel.parse_params(
            {"endpoint": grpc_receiver.endpoint, "insecure": True, "metrics": METRICS}
        ),
        make_env(),
    )
    second = otel.build(
        otel.parse_params(
            {"endpoint": grpc_receiver.endpoint, "insecure": True, "metrics": METRICS}
        ),
        make_env(),
    )
    await first.close()
    await second.report(
        [metric("requestcount.instance.istio-system", 1, response_code=1, source_ip="")]
    )
    await second.close()

    assert (metrics_api.get_meter_provider(), trace_api.get_tracer_provider()) == before
    (point,) = find_metric(grpc_receiver, "istio.requests").sum.data_points
    assert point.as_double == 1.0


async def test_bad_instances_are_reported_after_the_good_ones(grpc_receiver: GrpcReceiver) -> None:
    handler = otel.build(
        otel.parse_params(
            {"endpoint": grpc_receiver.endpoint, "insecure": True, "metrics": METRICS}
        ),
        make_env(),
    )
    with pytest.raises(ValueError) as caught:
        await handler.report(
            [
                metric("unknown.instance.istio-system", 1),
                metric("requestcount.instance.istio-system", -1, response_code=1, source_ip=""),
                span(trace_id="not-hex"),
                metric("requestcount.instance.istio-system", 2, response_code=1, source_ip=""),
            ]
        )
    await handler.close()

    message = str(caught.value)
    assert "no metric configured" in message
    assert "non-negative" in message
    assert "valid trace_id" in message
    (point,) = find_metric(grpc_receiver, "istio.requests").sum.data_points
    assert point.as_double == 2.0


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"protocol": "thrift"}, "protocol", "grpc or http"),
        ({"cardinalityLimit": 0}, "cardinalityLimit", "positive integer"),
        ({"exportInterval": "0s"}, "exportInterval", "must be > 0"),
        (
            {"metrics": [{"instanceName": "a.instance.ns", "kind": "SUMMARY"}]},
            "metrics[0].kind",
            "COUNTER",
        ),
        (
            {"metrics": [{"instanceName": "a.instance.ns", "kind": "GAUGE", "buckets": {}}]},
            "metrics[0].buckets",
            "only a DISTRIBUTION",
        ),
        (
            {"metrics": [{"name": "9x", "instanceName": "a.instance.ns", "kind": "GAUGE"}]},
            "metrics[0].name",
            "instrument name",
        ),
        ({"resourceAttributes": {"k": [1]}}, "resourceAttributes.k", "scalar"),
        ({"exporter": "otlp"}, "exporter", "unknown field"),
    ],
)
def test_bad_params_name_the_field(raw: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ParamError) as caught:
        otel.parse_params(raw)
    assert caught.value.path == path
    assert fragment in caught.value.message


def test_default_instrument_name_is_the_instance_short_name() -> None:
    params = otel.parse_params(
        {"metrics": [{"instanceName": "requestcount.metric.ns", "kind": "COUNTER"}]}
    )
    assert params.metrics[0].name == "requestcount"
    assert params.signal_endpoint("metrics") == "localhost:4317"
    assert (
        otel.parse_params({"protocol": "http"}).signal_endpoint("logs")
        == "http://localhost:4318/v1/logs"
    )
