import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mixer.series import LabelledCounter, LabelledHistogram, bucket_bounds


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_labelled_counter_is_exposed_as_total_per_label_set() -> None:
    registry = CollectorRegistry()
    counter = LabelledCounter("calls", "Calls.", ["method", "code"], registry)
    counter.labels("Check", "OK").inc()
    counter.labels("Check", "OK").inc(2)
    counter.labels("Report", 7).inc(0.5)  # label values are texts, as in prometheus_client
    samples = scrape(registry)
    assert samples[("calls_total", (("code", "OK"), ("method", "Check")))] == 3.0
    assert samples[("calls_total", (("code", "7"), ("method", "Report")))] == 0.5
    assert not [name for name, _ in samples if name.endswith("_created")]
    assert counter.labels("Check", "OK") is counter.labels("Check", "OK")


def test_a_counter_refuses_negative_amounts_and_wrong_label_counts() -> None:
    counter = LabelledCounter("calls", "Calls.", ["method"], CollectorRegistry())
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("Check").inc(-1)
    with pytest.raises(ValueError, match="2 label values"):
        counter.labels("Check", "OK")


def test_a_labelled_histogram_has_cumulative_buckets_count_and_sum() -> None:
    registry = CollectorRegistry()
    histogram = LabelledHistogram("latency_seconds", "Latency.", ["method"], registry, (0.1, 1.0))
    series = histogram.labels("Check")
    for value in (0.05, 0.1, 0.5, 3.0):
        series.observe(value)
    samples = scrape(registry)
    m = (("method", "Check"),)
    assert samples[("latency_seconds_bucket", (("le", "0.1"), *m))] == 2.0  # bounds are inclusive
    assert samples[("latency_seconds_bucket", (("le", "1.0"), *m))] == 3.0
    assert samples[("latency_seconds_bucket", (("le", "+Inf"), *m))] == 4.0
    assert samples[("latency_seconds_count", m)] == 4.0
    assert samples[("latency_seconds_sum", m)] == pytest.approx(3.65)


def test_a_name_registered_twice_is_refused_as_prometheus_client_does() -> None:
    registry = CollectorRegistry()
    LabelledCounter("calls", "Calls.", ["method"], registry)
    with pytest.raises(ValueError, match="Duplicated"):
        LabelledCounter("calls", "Calls.", ["method"], registry)


def test_bucket_bounds_end_with_inf_once_and_sorted() -> None:
    bounds, le = bucket_bounds((1.0, 0.5, math.inf, 0.5))
    assert bounds == (0.5, 1.0, math.inf)
    assert le == ("0.5", "1.0", "+Inf")
