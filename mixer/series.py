"""Metric series as plain objects, exposed through prometheus_client's metric families.

A prometheus_client child takes a lock and checks its arguments on every update, and a
histogram child walks its buckets in Python. Every request updates several series, from the
event loop only, so a series here is a float (or a list of bucket counts and a float) updated
in place; a scrape, from another thread, copies what it reads in single C-level operations
under the GIL. The text format is still prometheus_client's: collectors yield its
`CounterMetricFamily` and `HistogramMetricFamily`, without ``_created`` samples.

Used by the server's per-request metrics (`mixer.telemetry`) and by the prometheus
adapter's store.
"""

from __future__ import annotations

import itertools
import math
import threading
from abc import abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client import utils as _prometheus_utils
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# prometheus_client's text for a bucket bound; it is untyped.
_le_text: Callable[[float], str] = _prometheus_utils.floatToGoString


class CounterSeries:
    """One counter series. Only the event loop adds to it; a scrape reads `value` whole."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add `amount` (not negative)."""
        if amount < 0:
            raise ValueError(
                f"counters can only be incremented by non-negative amounts, got {amount}"
            )
        self.value += amount


class GaugeSeries:
    """One gauge series: the last value set."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, amount: float) -> None:
        """Make `amount` the value."""
        self.value = amount


class HistogramSeries:
    """One histogram series: a count per bucket (not cumulative) and the sum.

    `bounds` ends with +Inf, so every number lands in a bucket; NaN lands in none and poisons the
    sum, as with prometheus_client.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """Count `amount` in the first bucket whose upper bound is at least `amount`."""
        if amount == amount:  # not NaN
            self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def buckets(self, le: Sequence[str]) -> list[tuple[str, float]]:
        """Cumulative counts by bucket label, from one copy of the counts (so that they agree)."""
        return list(zip(le, itertools.accumulate(list(self.counts)), strict=True))


def bucket_bounds(buckets: Sequence[float]) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Upper bounds ending with +Inf, and their ``le`` label texts as prometheus_client writes
    them (``0.005``, ``10.0``, ``+Inf``)."""
    bounds = (*sorted(set(buckets) - {math.inf}), math.inf)
    return bounds, tuple(_le_text(b) for b in bounds)


S = TypeVar("S", CounterSeries, HistogramSeries)


class _Labelled(Collector, Generic[S]):
    """Series by label values, created on first use and kept for the process's life, as
    prometheus_client keeps a metric's children. Subclasses say how a series is made and
    added to its family."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], S] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: object) -> S:
        """The series for `values` (one per label name, in order)."""
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"{self.name}: {len(values)} label values for labels {self.labelnames}"
                )
            with self._lock:
                series = self._series.setdefault(key, self._new())
        return series

    def describe(self) -> Iterator[Metric]:
        """The family without samples: the registry checks its names against the others'."""
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        """Every series, in one family."""
        family = self._family()
        for values, series in list(self._series.items()):
            self._add(family, values, series)
        yield family

    @abstractmethod
    def _new(self) -> S: ...

    @abstractmethod
    def _family(self) -> Metric: ...

    @abstractmethod
    def _add(self, family: Metric, values: tuple[str, ...], series: S) -> None: ...


class LabelledCounter(_Labelled[CounterSeries]):
    """A counter with labels, drop-in for the ``labels(...).inc(...)`` use of prometheus_client's
    `Counter`; exposed as ``<name>_total``."""

    def _new(self) -> CounterSeries:
        return CounterSeries()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: tuple[str, ...], series: CounterSeries) -> None:
        cast(CounterMetricFamily, family).add_metric(values, series.value)


class LabelledHistogram(_Labelled[HistogramSeries]):
    """A histogram with labels, drop-in for the ``labels(...).observe(...)`` use of
    prometheus_client's `Histogram`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self._bounds, self._le = bucket_bounds(buckets)
        super().__init__(name, documentation, labelnames, registry)

    def _new(self) -> HistogramSeries:
        return HistogramSeries(self._bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: tuple[str, ...], series: HistogramSeries) -> None:
        cast(HistogramMetricFamily, family).add_metric(values, series.buckets(self._le), series.sum)
