"""The ``otel`` adapter: ``metric``, ``logentry`` and ``tracespan`` instances out through OTLP.

Params::

    protocol: grpc                    # grpc (default) | http
    endpoint: localhost:4317          # grpc: host:port or URL; http: base URL (/v1/<signal> added)
    insecure: true                    # grpc only; unset: the exporter's default (TLS unless http://)
    headers: {authorization: "..."}
    timeout: 10s                      # per export call
    exportInterval: 60s               # metrics are collected and exported this often
    cardinalityLimit: 10000           # attribute sets per instrument (the SDK's default is 2000)
    resourceAttributes: {service.name: mixer, deployment.environment: prod}
    metrics:
    - name: istio.requests            # the instrument name (default: the instance's short name)
      instanceName: requestcount.instance.istio-system
      kind: COUNTER                   # COUNTER | UP_DOWN_COUNTER | GAUGE | DISTRIBUTION
      labelNames: [reporter, response_code]   # dimensions kept as attributes (default: all)
      buckets: {explicitBuckets: {bounds: [0.005, 0.01]}}   # or linear/exponential, as prometheus
      description: Requests
      unit: "{request}"

Each handler has its own MeterProvider, LoggerProvider and TracerProvider, never the global ones,
with no atexit hooks; ``close()`` shuts them down, which flushes what is pending. Export runs on the
SDK's background threads (periodic reader, batch processors), so ``report`` only records.

- Metric instances: values as the prometheus adapter reads them (durations in seconds, numeric
  strings parsed); counters take ``add``, gauges ``set``, distributions ``record`` into a histogram
  whose bucket bounds come from a View. Attribute sets beyond ``cardinalityLimit`` are folded by the
  SDK into one ``otel.metric.overflow=true`` point; the adapter logs a warning the first time an
  instrument reaches the limit and counts each folded record in
  ``mixer_series_overflow_total{metric}``, so the overflow is never silent. The server's
  ``--max-series`` (``Env.max_series``) caps ``cardinalityLimit``.
- Log entries become log records: timestamp and severity from the instance (severity numbers from
  stdio's mapping, unknown severities INFO), body the instance name, attributes the variables.
- Trace spans keep their trace, span and parent ids (hex, as in B3 headers; a 64-bit trace id is
  zero-extended); spans whose trace or span id is not valid hex are skipped, as Mixer's OpenCensus
  adapters did. ``client_span`` gives kind CLIENT, otherwise SERVER; ``rewrite_client_span_id``
  rewrites ids as Mixer did; HTTP status ≥ 500 (≥ 400 for client spans) marks the span as an error
  and ``http.status_code`` is added to the span tags.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter, _Gauge
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AnyValue

from adapters.base import TEMPLATES, AdapterInfo, Env, Instance, ParamError
from adapters.toolkit import limit_counter
from adapters.toolkit.params import (
    duration_param,
    histogram_buckets,
    join_path,
    param_fields,
    positive_int_param,
    string_param,
)
from adapters.toolkit.text import go_duration, ip_text, metric_value, zap_time

__all__ = ["INFO", "Kind", "MetricInfo", "Params", "Protocol", "build", "parse_params"]

DEFAULT_CARDINALITY_LIMIT: Final = 10_000
OVERFLOW_METRIC: Final = "mixer_series_overflow"
OVERFLOW_HELP: Final = (
    "Reports recorded in a metric's overflow series (past --max-series), by metric"
)
_INSTRUMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-/]{0,254}$")
_SCOPE: Final = "mixer.adapters.otel"
_HEX = re.compile(r"^[0-9a-fA-F]+$")
# Mixer's rewriteSpanID pad (mixer/pkg/adapter/opencensus/trace.go).
_REWRITE_PAD: Final = 0x3F6A2EC3C810C2AB


class Protocol(enum.Enum):
    """OTLP transport."""

    GRPC = "grpc"
    HTTP = "http"


class Kind(enum.Enum):
    """Which instrument a metric feeds."""

    COUNTER = "COUNTER"
    UP_DOWN_COUNTER = "UP_DOWN_COUNTER"
    GAUGE = "GAUGE"
    DISTRIBUTION = "DISTRIBUTION"


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One configured metric. Empty `label_names` keeps every dimension as an attribute."""

    name: str
    instance_name: str
    kind: Kind
    label_names: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    description: str = ""
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Params:
    """The parsed params of one otel handler."""

    protocol: Protocol = Protocol.GRPC
    endpoint: str = ""
    insecure: bool | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    export_interval: float = 60.0
    cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT
    resource_attributes: Mapping[str, str | bool | int | float] = field(default_factory=dict)
    metrics: tuple[MetricInfo, ...] = ()

    def signal_endpoint(self, signal: str) -> str:
        """The exporter endpoint for ``metrics``, ``logs`` or ``traces``."""
        if self.protocol is Protocol.GRPC:
            return self.endpoint or "localhost:4317"
        return (self.endpoint or "http://localhost:4318").rstrip("/") + f"/v1/{signal}"


# --------------------------------------------------------------------------------------------
# Params


def _positive_seconds(value: object, path: str) -> float:
    seconds = duration_param(value, path).total_seconds()
    if seconds <= 0:
        raise ParamError(path, f"must be > 0, got {value!r}")
    return seconds


def _short_fqn(name: str) -> tuple[str, str] | None:
    """``x.metric.ns`` (Istio 1.0) and ``x.instance.ns`` both give ``("x", "ns")``."""
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or not (parts[1] == "instance" or parts[1] in TEMPLATES):
        return None
    return parts[0], parts[2]


_METRIC_FIELDS: Final = (
    "name",
    "instanceName",
    "kind",
    "labelNames",
    "buckets",
    "description",
    "unit",
)


def _metric(raw: object, path: str) -> MetricInfo:
    fields = param_fields(raw, path, _METRIC_FIELDS)
    instance_name = string_param(fields.get("instanceName", ""), join_path(path, "instanceName"))
    if not instance_name:
        raise ParamError(join_path(path, "instanceName"), "is required")
    short = _short_fqn(instance_name)
    name = string_param(fields.get("name", ""), join_path(path, "name")) or (
        short[0] if short else instance_name
    )
    if not _INSTRUMENT_NAME.match(name):
        raise ParamError(
            join_path(path, "name"), f"{name!r} is not a valid OpenTelemetry instrument name"
        )
    kind_raw = fields.get("kind")
    if not isinstance(kind_raw, str) or kind_raw not in Kind.__members__:
        raise ParamError(
            join_path(path, "kind"),
            f"must be one of {', '.join(Kind.__members__)}, got {kind_raw!r}",
        )
    kind = Kind[kind_raw]
    labels_raw = fields.get("labelNames", [])
    if not isinstance(labels_raw, list):
        raise ParamError(join_path(path, "labelNames"), "expected a list of strings")
    labels = tuple(string_param(v, f"{path}.labelNames[{i}]") for i, v in enumerate(labels_raw))
    buckets: tuple[float, ...] = ()
    if fields.get("buckets") is not None:
        if kind is not Kind.DISTRIBUTION:
            raise ParamError(join_path(path, "buckets"), "only a DISTRIBUTION has buckets")
        buckets = histogram_buckets(fields["buckets"], join_path(path, "buckets"))
    return MetricInfo(
        name=name,
        instance_name=instance_name,
        kind=kind,
        label_names=labels,
        buckets=buckets,
        description=string_param(fields.get("description", ""), join_path(path, "description")),
        unit=string_param(fields.get("unit", ""), join_path(path, "unit")),
    )


_FIELDS: Final = (
    "protocol",
    "endpoint",
    "insecure",
    "headers",
    "timeout",
    "exportInterval",
    "cardinalityLimit",
    "resourceAttributes",
    "metrics",
)


def parse_params(raw: Mapping[str, Any]) -> Params:
    """Parse and validate an otel handler's params (camelCase or snake_case keys)."""
    fields = param_fields(raw, "", _FIELDS)
    protocol_raw = fields.get("protocol", "grpc")
    if not isinstance(protocol_raw, str) or protocol_raw.lower() not in ("grpc", "http"):
        raise ParamError("protocol", f"must be grpc or http, got {protocol_raw!r}")
    protocol = Protocol(protocol_raw.lower())
    insecure = fields.get("insecure")
    if insecure is not None and not isinstance(insecure, bool):
        raise ParamError("insecure", f"expected true or false, got {insecure!r}")
    headers = fields.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ParamError("headers", "expected a map of strings to strings")
    resource = fields.get("resourceAttributes") or {}
    if not isinstance(resource, Mapping):
        raise ParamError("resourceAttributes", "expected a map")
    for key, value in resource.items():
        if not isinstance(value, str | bool | int | float):
            raise ParamError(f"resourceAttributes.{key}", f"expected a scalar, got {value!r}")
    limit = positive_int_param(
        fields.get("cardinalityLimit", DEFAULT_CARDINALITY_LIMIT), "cardinalityLimit"
    )
    metrics_raw = fields.get("metrics", [])
    if not isinstance(metrics_raw, list):
        raise ParamError("metrics", "expected a list")
    metrics = tuple(_metric(m, f"metrics[{i}]") for i, m in enumerate(metrics_raw))
    seen_names: dict[str, int] = {}
    seen_instances: dict[str, int] = {}
    for i, metric in enumerate(metrics):
        if metric.name.lower() in seen_names:
            raise ParamError(
                f"metrics[{i}].name",
                f"{metric.name!r} is already used by metrics[{seen_names[metric.name.lower()]}]",
            )
        if metric.instance_name in seen_instances:
            raise ParamError(
                f"metrics[{i}].instanceName",
                f"instance {metric.instance_name!r} is already used by "
                f"metrics[{seen_instances[metric.instance_name]}]",
            )
        seen_names[metric.name.lower()] = i
        seen_instances[metric.instance_name] = i
    return Params(
        protocol=protocol,
        endpoint=string_param(fields.get("endpoint", ""), "endpoint"),
        insecure=insecure,
        headers=dict(headers),
        timeout=_positive_seconds(fields.get("timeout", "10s"), "timeout"),
        export_interval=_positive_seconds(fields.get("exportInterval", "60s"), "exportInterval"),
        cardinality_limit=limit,
        resource_attributes=dict(resource),
        metrics=metrics,
    )


# --------------------------------------------------------------------------------------------
# Values


AttributeValue = str | bool | int | float


def _attribute(value: object) -> AttributeValue:
    """A bag value as a scalar attribute: IPs as text, durations as Go text, maps ``k=v&k=v``."""
    if isinstance(value, str | bool | int | float):
        return value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return ip_text(value) or value.hex()
    if isinstance(value, datetime.datetime):
        return zap_time(value)
    if isinstance(value, datetime.timedelta):
        return go_duration(value)
    if isinstance(value, Mapping):
        return "&".join(f"{k}={_attribute(v)}" for k, v in sorted(value.items()))
    return str(value)


def _log_attribute(value: object) -> AnyValue:
    """Log attributes may be maps (OTLP ``kvlist``); everything else as for metrics."""
    if isinstance(value, Mapping):
        return {str(k): _attribute(v) for k, v in value.items()}
    return _attribute(value)


def _nanos(value: object) -> int | None:
    if not isinstance(value, datetime.datetime):
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    delta = aware - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta // datetime.timedelta(microseconds=1)) * 1_000


_SEVERITY: Final = {
    "informational": SeverityNumber.INFO,
    "info": SeverityNumber.INFO,
    "notice": SeverityNumber.INFO2,
    "debug": SeverityNumber.DEBUG,
    "trace": SeverityNumber.TRACE,
    "warning": SeverityNumber.WARN,
    "warn": SeverityNumber.WARN,
    "error": SeverityNumber.ERROR,
    "err": SeverityNumber.ERROR,
    "critical": SeverityNumber.FATAL,
    "fatal": SeverityNumber.FATAL,
}


def _hex_id(value: object, bits: int) -> int | None:
    if not isinstance(value, str) or not value or len(value) * 4 > bits or not _HEX.match(value):
        return None
    number = int(value, 16)
    return number or None


# --------------------------------------------------------------------------------------------
# Exporters and providers


def _grpc_args(params: Params) -> dict[str, Any]:
    args: dict[str, Any] = {"headers": dict(params.headers) or None, "timeout": params.timeout}
    if params.insecure is not None:
        args["insecure"] = params.insecure
    return args


def _http_args(params: Params) -> dict[str, Any]:
    return {"headers": dict(params.headers) or None, "timeout": params.timeout}


# Exporters are imported when used: a handler pulls in only its protocol's transport.


def _metric_exporter(params: Params) -> MetricExporter:
    endpoint = params.signal_endpoint("metrics")
    if params.protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, **_grpc_args(params))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )

    return HTTPMetricExporter(endpoint=endpoint, **_http_args(params))


def _log_exporter(params: Params) -> LogRecordExporter:
    endpoint = params.signal_endpoint("logs")
    if params.protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=endpoint, **_grpc_args(params))
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HTTPLogExporter,
    )

    return HTTPLogExporter(endpoint=endpoint, **_http_args(params))


def _span_exporter(params: Params) -> SpanExporter:
    endpoint = params.signal_endpoint("traces")
    if params.protocol is Protocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, **_grpc_args(params))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter(endpoint=endpoint, **_http_args(params))


class _PresetIds(IdGenerator):
    """Hands the SDK the ids of the span being replayed (set just before ``start_span``)."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


@dataclass(slots=True)
class _Binding:
    info: MetricInfo
    record: Callable[[float, Mapping[str, AttributeValue]], None]
    attributes: dict[tuple[object, ...], Mapping[str, AttributeValue]]
    warned: bool = False


class OtelHandler:
    """Records instances into per-handler OTel providers that export over OTLP."""

    def __init__(self, params: Params, env: Env) -> None:
        # The server's --max-series caps what a config asks for: attribute values come from
        # requests, so each instrument's memory must have a bound the operator sets.
        self._limit = min(params.cardinality_limit, env.max_series)
        self._params = params
        self._log = env.logger
        self._registry = env.registry
        self._overflow = limit_counter.acquire(
            env.registry, OVERFLOW_METRIC, OVERFLOW_HELP, "metric"
        )
        resource = Resource.create({"service.name": "mixer", **params.resource_attributes})
        # The SDK's own self-metrics would otherwise go to the global meter provider.
        no_meter = NoOpMeterProvider()

        self._meters: MeterProvider | None = None
        self._bindings: dict[str, _Binding | None] = {}
        self._by_short: dict[tuple[str, str], _Binding] = {}
        if params.metrics:
            limit = self._limit
            reader = PeriodicExportingMetricReader(
                _metric_exporter(params),
                export_interval_millis=params.export_interval * 1000,
                export_timeout_millis=params.timeout * 1000,
                cardinality_limits={
                    Counter: limit,
                    UpDownCounter: limit,
                    Histogram: limit,
                    _Gauge: limit,
                },
            )
            views = [
                View(
                    instrument_name=m.name,
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=m.buckets),
                )
                for m in params.metrics
                if m.kind is Kind.DISTRIBUTION and m.buckets
            ]
            self._meters = MeterProvider(
                metric_readers=[reader], resource=resource, views=views, shutdown_on_exit=False
            )
            meter = self._meters.get_meter(_SCOPE)
            for info in params.metrics:
                record: Callable[[float, Mapping[str, AttributeValue]], None]
                if info.kind is Kind.COUNTER:
                    record = meter.create_counter(info.name, info.unit, info.description).add
                elif info.kind is Kind.UP_DOWN_COUNTER:
                    record = meter.create_up_down_counter(
                        info.name, info.unit, info.description
                    ).add
                elif info.kind is Kind.GAUGE:
                    record = meter.create_gauge(info.name, info.unit, info.description).set
                else:
                    record = meter.create_histogram(info.name, info.unit, info.description).record
                binding = _Binding(info, record, {})
                self._bindings[info.instance_name] = binding
                short = _short_fqn(info.instance_name)
                if short is not None:
                    self._by_short[short] = binding

        self._logs = LoggerProvider(
            resource=resource, shutdown_on_exit=False, meter_provider=no_meter
        )
        self._logs.add_log_record_processor(
            BatchLogRecordProcessor(_log_exporter(params), meter_provider=no_meter)
        )
        self._logger = self._logs.get_logger(_SCOPE)

        self._ids = _PresetIds()
        self._traces = TracerProvider(
            sampler=ALWAYS_ON,
            resource=resource,
            shutdown_on_exit=False,
            id_generator=self._ids,
            meter_provider=no_meter,
        )
        self._traces.add_span_processor(
            BatchSpanProcessor(_span_exporter(params), meter_provider=no_meter)
        )
        self._tracer = self._traces.get_tracer(_SCOPE)
        self._closed = False

    # -- reporting --------------------------------------------------------------------------

    async def report(self, instances: Sequence[Instance]) -> None:
        """Record each instance; problems are collected and raised once the batch is done."""
        errors: list[str] = []
        for instance in instances:
            template = instance.template
            try:
                if template == "metric":
                    self._metric(instance)
                elif template == "logentry":
                    self._log_entry(instance)
                elif template == "tracespan":
                    self._span(instance)
                else:
                    errors.append(f"{instance.name}: template {template} is not supported")
            except ValueError as exc:
                errors.append(f"{instance.name}: {exc}")
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise ValueError("; ".join(errors[:3]) + more)

    def _binding(self, name: str) -> _Binding | None:
        try:
            return self._bindings[name]
        except KeyError:
            short = _short_fqn(name)
            binding = self._by_short.get(short) if short is not None else None
            self._bindings[name] = binding  # bounded by the names in the config
            return binding

    def _metric(self, instance: Instance) -> None:
        binding = self._binding(instance.name)
        if binding is None:
            raise ValueError("no metric configured for this instance")
        fields = instance.fields
        raw = fields.get("value")
        amount = float(raw) if type(raw) is int or type(raw) is float else metric_value(raw)
        if binding.info.kind is Kind.COUNTER and amount < 0:
            raise ValueError(f"counters only take non-negative values, got {amount}")
        dims = fields.get("dimensions") or {}
        names = binding.info.label_names
        key: tuple[object, ...]
        if names:
            key = tuple([v if type(v) is str else _attribute(v) for v in map(dims.get, names)])
        else:
            key = tuple(sorted((str(k), _attribute(v)) for k, v in dims.items()))
        attributes = binding.attributes.get(key)
        if attributes is None:
            attributes = self._new_attributes(binding, key)
        binding.record(amount, attributes)

    def _new_attributes(
        self, binding: _Binding, key: tuple[Any, ...]
    ) -> Mapping[str, AttributeValue]:
        names = binding.info.label_names
        attributes = dict(zip(names, key, strict=True)) if names else dict(key)
        limit = self._limit
        if len(binding.attributes) < limit:
            binding.attributes[key] = attributes
            return attributes
        self._overflow.labels(binding.info.name).inc()
        if not binding.warned:
            binding.warned = True
            self._log.warning(
                "otel metric %s reached cardinalityLimit %d; further attribute sets are folded "
                "into one otel.metric.overflow=true point",
                binding.info.name,
                limit,
            )
        return attributes

    def _log_entry(self, instance: Instance) -> None:
        fields = instance.fields
        severity = fields.get("severity")
        text = severity if isinstance(severity, str) else ""
        variables = fields.get("variables") or {}
        self._logger.emit(
            timestamp=_nanos(fields.get("timestamp")) or time.time_ns(),
            observed_timestamp=time.time_ns(),
            severity_text=text or None,
            severity_number=_SEVERITY.get(text.lower(), SeverityNumber.INFO),
            body=instance.name,
            attributes={str(k): _log_attribute(v) for k, v in variables.items()},
        )

    def _span(self, instance: Instance) -> None:
        fields = instance.fields
        trace_id = _hex_id(fields.get("trace_id"), 128)
        span_id = _hex_id(fields.get("span_id"), 64)
        if trace_id is None or span_id is None:
            raise ValueError("tracespan without a valid trace_id and span_id")
        parent_id = _hex_id(fields.get("parent_span_id"), 64)
        client = fields.get("client_span") is True
        if fields.get("rewrite_client_span_id") is True:
            if client:
                span_id ^= _REWRITE_PAD
            else:
                parent_id = span_id ^ _REWRITE_PAD
        if parent_id is not None:
            parent = trace_api.NonRecordingSpan(
                trace_api.SpanContext(
                    trace_id,
                    parent_id,
                    is_remote=True,
                    trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED),
                )
            )
            ctx = trace_api.set_span_in_context(parent, otel_context.Context())
        else:
            ctx = otel_context.Context()  # never the caller's current span

        tags = fields.get("span_tags") or {}
        attributes: dict[str, AttributeValue] = {str(k): _attribute(v) for k, v in tags.items()}
        status_code = fields.get("http_status_code")
        status = Status(StatusCode.UNSET)
        if isinstance(status_code, int) and not isinstance(status_code, bool) and status_code > 0:
            attributes["http.status_code"] = status_code
            if status_code >= 500 or (client and status_code >= 400):
                status = Status(StatusCode.ERROR)
        start = _nanos(fields.get("start_time")) or time.time_ns()
        end = _nanos(fields.get("end_time")) or start

        self._ids.trace_id = trace_id
        self._ids.span_id = span_id
        span = self._tracer.start_span(
            str(fields.get("span_name") or instance.name),
            context=ctx,
            kind=SpanKind.CLIENT if client else SpanKind.SERVER,
            attributes=attributes,
            start_time=start,
        )
        span.set_status(status)
        span.end(end_time=end)

    # -- lifecycle --------------------------------------------------------------------------

    async def flush(self, timeout: float = 10.0) -> None:
        """Export everything recorded so far (tests and graceful shutdown)."""
        millis = int(timeout * 1000)

        def work() -> None:
            if self._meters is not None:
                self._meters.force_flush(millis)
            self._logs.force_flush(millis)
            self._traces.force_flush(millis)

        await asyncio.to_thread(work)

    async def close(self) -> None:
        """Flush and shut the providers down (on a thread: exporting may wait on the network)."""
        if self._closed:
            return
        self._closed = True
        limit_counter.release(self._registry, OVERFLOW_METRIC, "")

        def work() -> None:
            if self._meters is not None:
                self._meters.shutdown(timeout_millis=self._params.timeout * 1000)
            self._logs.shutdown()
            self._traces.shutdown()

        await asyncio.to_thread(work)


def build(params: Params, env: Env) -> OtelHandler:
    """Build the providers and exporters; connections are made lazily by the exporters."""
    return OtelHandler(params, env)


INFO = AdapterInfo(
    name="otel",
    description="Exports metrics, logs and traces over OTLP (gRPC or HTTP)",
    templates=frozenset({"metric", "logentry", "tracespan"}),
    parse_params=parse_params,
    build=build,
)
