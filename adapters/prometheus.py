"""The ``prometheus`` adapter: publishes ``metric`` instances as Prometheus series, as Mixer did.

Params are Mixer's (``mixer/adapter/prometheus/config/config.proto``)::

    metrics:
    - name: requests_total             # exposed as <namespace>_<name>; namespace defaults to istio
      instanceName: requestcount.instance.istio-system
      kind: COUNTER                    # GAUGE | COUNTER | DISTRIBUTION
      labelNames: [reporter, source_app]
      buckets: {explicitBuckets: {bounds: [0.005, 0.01]}}   # or linearBuckets / exponentialBuckets
    metricsExpirationPolicy: {metricsExpiryDuration: 10m, expiryCheckIntervalDuration: 1m}

Where the series live (the design the server relies on):

- Every prometheus handler built with the same ``env.registry`` shares a single `MetricStore`, a
  Collector registered into that registry once (``MetricStore.on(registry)``; the store is kept
  as an attribute of the registry object, so there is no module state). The server owns that
  registry (``mixer.runtime.build``'s ``metrics_registry``), keeps it for the life of the
  process and serves it on Mixer's adapter port (``:42422/metrics``) from its own thread.
  Handlers register nothing else but the one ``mixer_series_overflow_total`` counter they share
  (`adapters.toolkit.limit_counter`), so building a new handler while the old one still runs
  cannot raise ``DuplicateTimeseries``.
- A metric holds at most ``Env.max_series`` label sets (``--max-series``). Reports with a new
  label set past that go to one series whose only label is ``overflow="true"`` (as
  OpenTelemetry's cardinality limit does), each counted in
  ``mixer_series_overflow_total{metric}``; a label set that expires frees its place.
- A metric is identified by its exposed name and its whole definition (kind, labels, buckets,
  help). A new handler with an unchanged definition adopts the existing series, so counters stay
  monotonic across config swaps, provided the new handler is built before the old one is closed.
  A changed definition replaces the old one in the exposition (its series start from zero, as in
  Mixer, which cleared its registry on redefinition). A metric is dropped from the exposition when
  the last handler using it closes.
- ``_created`` samples are left out of the exposition: Mixer's Go client had none, and they double
  the size of every scrape.

Differences from Mixer, on purpose: a counter whose name does not end in ``_total`` is exposed with
``_total`` appended (prometheus_client follows OpenMetrics here); a dimension missing from an
instance gives an empty label value and dimensions that are not label names are ignored, where
Mixer's Go client panicked.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import logging
import math
import operator
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from adapters.base import TEMPLATES, AdapterInfo, Env, Instance, ParamError
from adapters.toolkit import limit_counter
from adapters.toolkit.params import (
    duration_param,
    enum_param,
    histogram_buckets,
    join_path,
    param_fields,
    string_param,
)
from adapters.toolkit.text import go_duration, ip_text, metric_value, zap_time
from mixer.series import CounterSeries, GaugeSeries, HistogramSeries, bucket_bounds

__all__ = [
    "INFO",
    "ExpirationPolicy",
    "Kind",
    "MetricInfo",
    "MetricStore",
    "Params",
    "build",
    "go_duration",
    "label_value",
    "parse_params",
    "safe_name",
]

DEFAULT_NAMESPACE: Final = "istio"

# prometheus.DefBuckets of the Go client Mixer used (not prometheus_client's defaults).
GO_DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SANITIZE = str.maketrans({"/": "_", ".": "_", " ": "_", "-": None})
_STORE_ATTRIBUTE: Final = "_mixer_prometheus_store"
_NO_DIMENSIONS: Final[Mapping[str, Any]] = {}


DEFAULT_MAX_SERIES = 2000
_OVERFLOW = "mixer_series_overflow"
_OVERFLOW_HELP = "Reports recorded in a metric's overflow series (past --max-series), by metric"


class Kind(enum.Enum):
    """How instance values are applied: ``Set``, ``Add`` or ``Observe``."""

    GAUGE = 1
    COUNTER = 2
    DISTRIBUTION = 3


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One configured metric.

    `name` is the full Prometheus name (namespace prefix included); `dimension_keys` are the label
    names as written in the config, used to look dimensions up, and `label_names` their sanitised
    forms used in the exposition.
    """

    name: str
    instance_name: str
    kind: Kind
    label_names: tuple[str, ...]
    dimension_keys: tuple[str, ...]
    buckets: tuple[float, ...]
    description: str

    @property
    def family_name(self) -> str:
        """The name of the metric family in the exposition (counters lose ``_total``)."""
        if self.kind is Kind.COUNTER and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name

    @property
    def definition(self) -> tuple[object, ...]:
        """What makes two configs the same metric: everything but the instance it reads."""
        return (self.name, self.kind, self.label_names, self.buckets, self.description)


@dataclass(frozen=True, slots=True)
class ExpirationPolicy:
    """Series idle for `expiry` seconds are removed, checked every `check_interval` seconds."""

    expiry: float
    check_interval: float


@dataclass(frozen=True, slots=True)
class Params:
    """The parsed params of one prometheus handler."""

    metrics: tuple[MetricInfo, ...]
    expiration: ExpirationPolicy | None = None


# --------------------------------------------------------------------------------------------
# Params


def safe_name(name: str) -> str:
    """Mixer's sanitising of metric and label names: leading ``/`` dropped, ``/ . space`` → ``_``,
    ``-`` removed."""
    return name.removeprefix("/").translate(_SANITIZE)


_METRIC_FIELDS: Final = (
    "name",
    "instanceName",
    "kind",
    "labelNames",
    "buckets",
    "namespace",
    "description",
)


def _metric(raw: object, path: str) -> MetricInfo:
    fields = param_fields(raw, path, _METRIC_FIELDS, string_keys=True)
    instance_name = string_param(fields.get("instanceName", ""), join_path(path, "instanceName"))
    if not instance_name:
        raise ParamError(join_path(path, "instanceName"), "is required")
    base = string_param(fields.get("name", ""), join_path(path, "name")) or instance_name
    namespace = safe_name(string_param(fields.get("namespace", ""), join_path(path, "namespace")))
    name = f"{namespace or DEFAULT_NAMESPACE}_{safe_name(base)}"
    if not _METRIC_NAME.match(name):
        raise ParamError(join_path(path, "name"), f"{name!r} is not a valid Prometheus metric name")
    kind = enum_param(Kind, fields.get("kind"), join_path(path, "kind"))

    raw_labels = fields.get("labelNames", [])
    if not isinstance(raw_labels, list):
        raise ParamError(join_path(path, "labelNames"), "expected a list of strings")
    keys: list[str] = []
    labels: list[str] = []
    for i, raw_label in enumerate(raw_labels):
        where = f"{path}.labelNames[{i}]"
        key = string_param(raw_label, where)
        label = safe_name(key)
        if not _LABEL_NAME.match(label) or label.startswith("__"):
            raise ParamError(where, f"{label!r} is not a valid Prometheus label name")
        if label in labels:
            raise ParamError(where, f"duplicate label {label!r}")
        if kind is Kind.DISTRIBUTION and label == "le":
            raise ParamError(where, "'le' is reserved for histogram buckets")
        keys.append(key)
        labels.append(label)

    buckets: tuple[float, ...] = ()
    if kind is Kind.DISTRIBUTION:
        raw_buckets = fields.get("buckets")
        buckets = (
            GO_DEFAULT_BUCKETS
            if raw_buckets is None
            else histogram_buckets(raw_buckets, join_path(path, "buckets"), string_keys=True)
        )
    description = (
        string_param(fields.get("description", ""), join_path(path, "description")) or base
    )
    return MetricInfo(
        name=name,
        instance_name=instance_name,
        kind=kind,
        label_names=tuple(labels),
        dimension_keys=tuple(keys),
        buckets=buckets,
        description=description,
    )


def _expiration(raw: object, path: str) -> ExpirationPolicy | None:
    fields = param_fields(
        raw, path, ("metricsExpiryDuration", "expiryCheckIntervalDuration"), string_keys=True
    )
    if not fields:
        return None
    where = join_path(path, "metricsExpiryDuration")
    if "metricsExpiryDuration" not in fields:
        raise ParamError(where, "is required when an expiration policy is given")
    expiry = duration_param(fields["metricsExpiryDuration"], where).total_seconds()
    if expiry <= 0:
        raise ParamError(where, f"must be > 0, got {fields['metricsExpiryDuration']!r}")
    interval = expiry / 2
    if "expiryCheckIntervalDuration" in fields:
        where = join_path(path, "expiryCheckIntervalDuration")
        interval = duration_param(fields["expiryCheckIntervalDuration"], where).total_seconds()
        if interval <= 0:
            raise ParamError(where, f"must be > 0, got {fields['expiryCheckIntervalDuration']!r}")
    return ExpirationPolicy(expiry=expiry, check_interval=interval)


def parse_params(raw: Mapping[str, Any]) -> Params:
    """Parse and validate a prometheus handler's params (camelCase or snake_case keys)."""
    fields = param_fields(raw, "", ("metrics", "metricsExpirationPolicy"), string_keys=True)
    raw_metrics = fields.get("metrics", [])
    if not isinstance(raw_metrics, list):
        raise ParamError("metrics", "expected a list")
    metrics = tuple(_metric(m, f"metrics[{i}]") for i, m in enumerate(raw_metrics))
    seen_families: dict[str, int] = {}
    seen_instances: dict[str, int] = {}
    for i, metric in enumerate(metrics):
        if metric.family_name in seen_families:
            raise ParamError(
                f"metrics[{i}].name",
                f"{metric.name!r} clashes with metrics[{seen_families[metric.family_name]}]",
            )
        if metric.instance_name in seen_instances:
            raise ParamError(
                f"metrics[{i}].instanceName",
                f"instance {metric.instance_name!r} is already used by "
                f"metrics[{seen_instances[metric.instance_name]}]",
            )
        seen_families[metric.family_name] = i
        seen_instances[metric.instance_name] = i
    expiration = None
    if fields.get("metricsExpirationPolicy") is not None:
        expiration = _expiration(fields["metricsExpirationPolicy"], "metricsExpirationPolicy")
    return Params(metrics=metrics, expiration=expiration)


# --------------------------------------------------------------------------------------------
# Value conversion (Mixer's promValue and adapter.Stringify)


def _go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``: shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(decimal.Decimal(text), "f")
    return text.removesuffix(".0")


def label_value(value: object) -> str:
    """A bag value as a label string, as Mixer's ``adapter.Stringify`` wrote it.

    IP addresses (4 or 16 bytes) become dotted or colon text, durations Go duration text,
    timestamps ``2006-01-02T15:04:05.000000Z``, string maps ``k=v&k=v`` (sorted), None "".
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, bytes):
        return ip_text(value) or "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, datetime.datetime):
        return zap_time(value)
    if isinstance(value, datetime.timedelta):
        return go_duration(value)
    if isinstance(value, Mapping):
        return "&".join(f"{k}={label_value(v)}" for k, v in sorted(value.items()))
    return str(value)


# --------------------------------------------------------------------------------------------
# The store


_Cell = list[Any]
"""``[operation(amount), last_used, label values, series, live]``: a list so the hot path updates
it in place; `live` turns False when the series expires."""


_Series = CounterSeries | GaugeSeries | HistogramSeries


class _Family:
    """One metric definition and its series.

    The series are plain objects updated by one attribute write per report, not
    prometheus_client children (whose updates take a lock each): only the event loop writes
    them, and a scrape copies what it reads in single C-level operations under the GIL.
    """

    __slots__ = (
        "_bounds",
        "_lock",
        "expiry",
        "info",
        "labelled",
        "le",
        "max_series",
        "next_sweep",
        "on_overflow",
        "overflow",
        "refs",
        "series",
    )

    def __init__(self, info: MetricInfo) -> None:
        self.info = info
        self._bounds, self.le = (
            bucket_bounds(info.buckets) if info.kind is Kind.DISTRIBUTION else ((), ())
        )
        # One cell per series, by label strings; and the same cells by the dimension values as
        # the bag holds them (ints, IP bytes …), so a repeated series is found without converting
        # anything. Only the event loop adds entries; the scrape thread's expiry sweep removes
        # them. Single dict operations are atomic under the GIL.
        self.labelled: dict[tuple[str, ...], _Cell] = {}
        self.series: dict[tuple[Any, ...], _Cell] = {}
        self.refs = 0
        self.expiry: ExpirationPolicy | None = None
        self.next_sweep = 0.0
        self._lock = threading.Lock()
        # Past `max_series` label sets, new ones share `overflow` (exposed with the single
        # label overflow="true", as OpenTelemetry's cardinality limit), never remembered.
        self.max_series = DEFAULT_MAX_SERIES
        self.overflow: _Cell | None = None
        self.on_overflow: Callable[[], None] | None = None
        if not info.label_names:
            self.add_series(None, (), 0.0)  # exposed from the start, as prometheus_client does

    def add_series(self, raw: tuple[Any, ...] | None, labels: tuple[str, ...], now: float) -> _Cell:
        """The cell for `labels`, remembered under the raw dimension values too (if hashable)."""
        cell = self.labelled.get(labels)
        if cell is None and len(self.labelled) >= self.max_series:
            return self._overflow(now)
        if cell is None:
            kind = self.info.kind
            series: _Series
            operation: Callable[[float], None]
            if kind is Kind.COUNTER:
                series = CounterSeries()
                operation = series.inc
            elif kind is Kind.GAUGE:
                series = GaugeSeries()
                operation = series.set
            else:
                series = HistogramSeries(self._bounds)
                operation = series.observe
            cell = [operation, now, labels, series, True]
            self.labelled[labels] = cell
        else:
            cell[1] = now
        if len(self.series) < 2 * self.max_series:  # several raw forms may share one label set
            self.series[raw if raw is not None else labels] = cell
        return cell

    def _overflow(self, now: float) -> _Cell:
        if self.on_overflow is not None:
            self.on_overflow()
        cell = self.overflow
        if cell is None:
            series = self._new_series()
            operation: Callable[[float], None]
            if isinstance(series, HistogramSeries):
                operation = series.observe
            elif isinstance(series, GaugeSeries):
                operation = series.set
            else:
                operation = series.inc
            # cell[4] False: the handler's per-object memo never keeps it (see `report`).
            cell = self.overflow = [operation, now, ("true",), series, False]
        return cell

    def _new_series(self) -> _Series:
        kind = self.info.kind
        if kind is Kind.COUNTER:
            return CounterSeries()
        if kind is Kind.GAUGE:
            return GaugeSeries()
        return HistogramSeries(self._bounds)

    def collect(self) -> Metric:
        """The family as prometheus_client exposes it, without ``_created`` samples."""
        info = self.info
        names = info.label_names
        cells = list(self.labelled.values())
        if info.kind is Kind.COUNTER:
            counter = CounterMetricFamily(info.name, info.description, labels=names)
            for cell in cells:
                counter.add_metric(cell[2], cell[3].value)
            self._add_overflow(counter)
            return counter
        if info.kind is Kind.GAUGE:
            gauge = GaugeMetricFamily(info.name, info.description, labels=names)
            for cell in cells:
                gauge.add_metric(cell[2], cell[3].value)
            self._add_overflow(gauge)
            return gauge
        histogram = HistogramMetricFamily(info.name, info.description, labels=names)
        for cell in cells:
            histogram.add_metric(cell[2], cell[3].buckets(self.le), cell[3].sum)
        self._add_overflow(histogram)
        return histogram

    def _add_overflow(self, family: Metric) -> None:
        """Append the overflow series, whose only label is overflow="true"."""
        cell = self.overflow
        if cell is None:
            return
        info = self.info
        extra: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
        if info.kind is Kind.COUNTER:
            extra = CounterMetricFamily(info.name, info.description, labels=["overflow"])
            extra.add_metric(["true"], cell[3].value)
        elif info.kind is Kind.GAUGE:
            extra = GaugeMetricFamily(info.name, info.description, labels=["overflow"])
            extra.add_metric(["true"], cell[3].value)
        else:
            extra = HistogramMetricFamily(info.name, info.description, labels=["overflow"])
            extra.add_metric(["true"], cell[3].buckets(self.le), cell[3].sum)
        family.samples.extend(extra.samples)

    def sweep(self, now: float) -> int:
        """Remove series unused for the expiry duration; returns how many went.

        Runs on the loop (from ``report``) or the scrape thread (from ``collect``). A report that
        touches a series in the instant the sweep removes it loses that one update; the series
        comes back from zero on its next report, which Prometheus reads as a counter reset.
        """
        policy = self.expiry
        if policy is None or now < self.next_sweep or not self.info.label_names:
            return 0
        if not self._lock.acquire(blocking=False):
            return 0  # another thread is sweeping this family right now
        try:
            self.next_sweep = now + policy.check_interval
            cutoff = now - policy.expiry
            removed = 0
            for raw, cell in list(self.series.items()):
                if cell[1] <= cutoff:
                    self.series.pop(raw, None)
            for labels, cell in list(self.labelled.items()):
                if cell[1] <= cutoff:  # re-read: a report may have just used it
                    self.labelled.pop(labels, None)
                    cell[4] = False
                    removed += 1
            return removed
        finally:
            self._lock.release()


class MetricStore:
    """A Collector holding the metrics of every prometheus handler built on one registry.

    Get it with `MetricStore.on(registry)`: the first call registers the store into the registry
    and later calls return the same store, so it outlives handlers and config swaps.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    @classmethod
    def on(cls, registry: CollectorRegistry, clock: Callable[[], float]) -> MetricStore:
        """The store registered in `registry`, created and registered on first use.

        Call from one thread (config loading); the store itself is thread-safe once created.
        """
        store = getattr(registry, _STORE_ATTRIBUTE, None)
        if isinstance(store, MetricStore):
            return store
        store = cls(clock)
        registry.register(store)
        setattr(registry, _STORE_ATTRIBUTE, store)
        return store

    def acquire(
        self,
        info: MetricInfo,
        expiry: ExpirationPolicy | None,
        log: logging.Logger,
        max_series: int = DEFAULT_MAX_SERIES,
        on_overflow: Callable[[], None] | None = None,
    ) -> _Family:
        """The family for `info`, shared with other handlers if they define it identically;
        it holds at most `max_series` label sets (`on_overflow` counts each report past it)."""
        with self._lock:
            family = self._families.get(info.family_name)
            if family is None or family.info.definition != info.definition:
                if family is not None:
                    log.warning(
                        "prometheus metric %s redefined; its series restart from zero", info.name
                    )
                family = _Family(info)
                self._families[info.family_name] = family
            family.refs += 1
            family.expiry = expiry
            family.max_series = max_series
            family.on_overflow = on_overflow
            return family

    def release(self, family: _Family) -> None:
        """A handler stopped using `family`; the last user takes it out of the exposition."""
        with self._lock:
            family.refs -= 1
            if family.refs <= 0 and self._families.get(family.info.family_name) is family:
                del self._families[family.info.family_name]

    def describe(self) -> Iterator[Metric]:
        """Nothing: names come from config at runtime, so the registry must not pre-check them."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """The current metrics, idle series expired first, without ``_created`` samples."""
        with self._lock:
            families = list(self._families.values())
        now = self._clock()
        for family in families:
            family.sweep(now)
            yield family.collect()

    def series_count(self) -> int:
        """How many series are exposed (for tests and debug pages)."""
        with self._lock:
            families = list(self._families.values())
        return sum(len(f.labelled) for f in families)


# --------------------------------------------------------------------------------------------
# The handler


# Dimension objects remembered per binding (each holds the object, so its id stays unique).
_MAX_VIEWS = 4096


@dataclass(frozen=True, slots=True)
class _Binding:
    family: _Family
    series: dict[tuple[Any, ...], _Cell]
    keys: tuple[str, ...]
    values: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    views: dict[int, tuple[Mapping[str, Any], _Cell]] = field(default_factory=dict)


_Prepared = list[Any]
"""``[instance name, binding, dimensions, cell]``: one series as a report session holds it; the
cell (None until first recorded) is found again if it expired."""


def _getter(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The dimension values for `keys` as a tuple, fetched in C; KeyError if one is missing."""
    if len(keys) > 1:
        return operator.itemgetter(*keys)
    if keys:
        (key,) = keys
        return lambda dims: (dims[key],)
    return lambda dims: ()


def _short_fqn(name: str) -> tuple[str, str] | None:
    """``requestcount.metric.istio-system`` and ``requestcount.instance.istio-system`` both give
    ``("requestcount", "istio-system")``: Istio 1.0 named instances by template, 1.1+ by kind."""
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or not (parts[1] == "instance" or parts[1] in TEMPLATES):
        return None
    return parts[0], parts[2]


class PrometheusHandler:
    """Applies metric instances to the shared store's series."""

    # `report` only updates series in memory: mixer calls it in place, without a queue.
    answers_inline = True

    def __init__(self, params: Params, env: Env) -> None:
        self._store = MetricStore.on(env.registry, env.clock)
        self._clock = env.clock
        self._log = env.logger
        self._expiry = params.expiration
        self._families: list[_Family] = []
        self._bindings: dict[str, _Binding | None] = {}
        self._by_short: dict[tuple[str, str], _Binding] = {}
        self._registry = env.registry
        overflow = limit_counter.acquire(env.registry, _OVERFLOW, _OVERFLOW_HELP, "metric")
        for info in params.metrics:
            family = self._store.acquire(
                info,
                params.expiration,
                env.logger,
                env.max_series,
                overflow.labels(info.name).inc,
            )
            self._families.append(family)
            keys = info.dimension_keys
            binding = _Binding(family, family.series, keys, _getter(keys))
            self._bindings[info.instance_name] = binding
            short = _short_fqn(info.instance_name)
            if short is not None:
                self._by_short[short] = binding
        self._next_sweep = 0.0
        self._closed = False

    def _resolve(self, name: str) -> _Binding | None:
        short = _short_fqn(name)
        binding = self._by_short.get(short) if short is not None else None
        # Instance names come from config, so this cache stays as small as the config.
        self._bindings[name] = binding
        return binding

    series_value = "value"

    async def report(self, instances: Sequence[Instance]) -> None:
        """Record each instance; problems are collected and raised once the batch is done."""
        self.record([(None, instance) for instance in instances])

    def prepare(self, instance: Instance) -> _Prepared | None:
        """The series of `instance` (by its name and dimensions), found when first recorded;
        None for an instance no metric is configured for (`report` says so)."""
        name = instance.name
        try:
            binding = self._bindings[name]
        except KeyError:
            binding = self._resolve(name)
        if binding is None:
            return None
        return [name, binding, instance.fields.get("dimensions") or _NO_DIMENSIONS, None]

    def record(self, items: Sequence[tuple[object | None, Any]]) -> None:
        """Record ``(None, instance)`` and ``(prepared, value)`` items (`prepare`) in order;
        problems are collected and raised once the batch is done."""
        now = self._clock()
        errors: list[str] = []
        bindings = self._bindings
        for handle, raw in items:
            prepared: Any  # None, or a handle `prepare` made (a `_Prepared`)
            if handle is not None:
                # The common case first, in the fewest steps: a live series and a number.
                cell = handle[3]  # type: ignore[index]
                if cell is not None and cell[4]:
                    kind = type(raw)
                    if kind is int:
                        amount = float(raw)
                    elif kind is datetime.timedelta:
                        amount = raw.total_seconds()
                    elif kind is float:
                        amount = raw
                    else:
                        amount = None
                    if amount is not None:
                        cell[1] = now
                        try:
                            cell[0](amount)
                        except ValueError as exc:  # a negative counter increment
                            errors.append(f"{handle[0]}: {exc}")  # type: ignore[index]
                        continue
            if handle is None:
                prepared = None
                name = raw.name
                try:
                    binding = bindings[name]
                except KeyError:
                    binding = self._resolve(name)
                if binding is None:
                    errors.append(f"no metric configured for instance {name}")
                    continue
                fields = raw.fields
                raw = fields.get("value")
            else:
                prepared = handle
                name, binding, dims, cell = prepared
            if type(raw) is float:
                amount = raw
            elif type(raw) is int:
                amount = float(raw)
            elif type(raw) is datetime.timedelta:  # a duration, as `metric_value` reads one
                amount = raw.total_seconds()
            else:
                try:
                    amount = metric_value(raw)
                except ValueError as exc:
                    errors.append(f"{name}: {exc}")
                    continue
            if prepared is None:
                dims = fields.get("dimensions") or _NO_DIMENSIONS
                cell = None
            if cell is not None and cell[4]:
                cell[1] = now
            else:
                seen = binding.views.get(id(dims))
                if seen is not None and seen[0] is dims and seen[1][4]:
                    cell = seen[1]
                    cell[1] = now
                else:
                    cell = self._cell(binding, dims, now)
                if prepared is not None:
                    prepared[3] = cell
            try:
                cell[0](amount)
            except ValueError as exc:  # a negative counter increment
                errors.append(f"{name}: {exc}")
        if self._expiry is not None and now >= self._next_sweep:
            self._next_sweep = now + self._expiry.check_interval
            for family in self._families:
                family.sweep(now)
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise ValueError("; ".join(errors[:3]) + more)

    @staticmethod
    def _cell(binding: _Binding, dims: Mapping[str, Any], now: float) -> _Cell:
        """The series for `dims`: found by their values, or added."""
        raw_key: tuple[Any, ...] | None
        try:
            found = binding.values(dims)
            cell = binding.series.get(found)
            raw_key = found
        except (KeyError, TypeError):  # a dimension is missing, or a value is unhashable
            raw_key = cell = None
        if cell is None:
            labels = tuple([label_value(v) for v in map(dims.get, binding.keys)])
            cell = binding.family.add_series(raw_key, labels, now)
        else:
            cell[1] = now
        if dims.__class__ is MappingProxyType:
            # Read-only dimensions are shared by every instance of one series (the instance
            # builder's memo): next time, the object itself finds the cell.
            views = binding.views
            if len(views) >= _MAX_VIEWS:
                views.clear()
            views[id(dims)] = (dims, cell)
        return cell

    async def close(self) -> None:
        """Stop using the store's metrics; ones no other handler uses leave the exposition."""
        if self._closed:
            return
        self._closed = True
        for family in self._families:
            self._store.release(family)
        # The overflow counts stay (a counter must not restart) until no handler uses them.
        limit_counter.release(self._registry, _OVERFLOW, "")


def build(params: Params, env: Env) -> PrometheusHandler:
    """Build a handler whose series live in the store registered in ``env.registry``."""
    return PrometheusHandler(params, env)


INFO = AdapterInfo(
    name="prometheus",
    description="Publishes prometheus metrics",
    templates=frozenset({"metric"}),
    parse_params=parse_params,
    build=build,
)
