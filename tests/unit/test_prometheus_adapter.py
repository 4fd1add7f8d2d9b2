"""The prometheus adapter: params as Mixer read them, series as a scrape shows them, swaps."""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import pathlib
import re
import urllib.request
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters import prometheus
from adapters.base import Env, Instance, ParamError, SeriesReportHandler
from mixer.server.admin import AdminServer
from tests.shared_data import require_shared


def corpus(relative: str) -> pathlib.Path:
    """A file of the Istio corpus (skips, naming its source, when the corpus is missing)."""
    return require_shared(f"corpus/istio/{relative}")


HTTP_LABELS = [
    "reporter",
    "source_app",
    "source_principal",
    "source_workload",
    "source_workload_namespace",
    "source_version",
    "destination_app",
    "destination_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "permissive_response_code",
    "permissive_response_policyid",
    "connection_security_policy",
]
TCP_LABELS = [*HTTP_LABELS[:14], "connection_security_policy", "response_flags"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def load_helm_docs(path: pathlib.Path, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The YAML documents of a Helm template, with the given values filled in."""
    text = path.read_text()
    for placeholder, value in values.items():
        text = text.replace("{{ " + placeholder + " }}", value)
    lines = [line for line in text.splitlines() if not line.strip().startswith("{{-")]
    text = re.sub(r"\{\{.*?\}\}", "templated", "\n".join(lines))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def istio_14_prometheus_params() -> dict[str, Any]:
    docs = load_helm_docs(
        corpus("helm-mixer/config-1.4.10.yaml.tpl"),
        {
            ".Release.Namespace": "istio-system",
            ".Values.adapters.prometheus.metricsExpiryDuration": "10m",
        },
    )
    (handler,) = [
        d for d in docs if d["kind"] == "handler" and d["metadata"]["name"] == "prometheus"
    ]
    params: dict[str, Any] = handler["spec"]["params"]
    return params


def make_env(registry: CollectorRegistry, clock: FakeClock | None = None) -> Env:
    return Env(
        handler_name="prometheus.handler.istio-system",
        logger=logging.getLogger("test.prometheus"),
        registry=registry,
        clock=clock or FakeClock(),
    )


def scrape(registry: CollectorRegistry) -> dict[str, Any]:
    """Families by name, parsed from the real text exposition."""
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def http_dims(**overrides: object) -> dict[str, object]:
    dims: dict[str, object] = {label: "unknown" for label in HTTP_LABELS}
    dims.update(reporter="destination", response_code=200, destination_service="reviews")
    dims.update(overrides)
    return dims


def request_instances(code: int, duration: datetime.timedelta, size: int) -> list[Instance]:
    """The four HTTP metric instances Istio 1.4 builds for one request."""
    dims = http_dims(response_code=code)
    ns = "istio-system"
    return [
        Instance(f"requestcount.instance.{ns}", "metric", {"value": "1", "dimensions": dims}),
        Instance(
            f"requestduration.instance.{ns}", "metric", {"value": duration, "dimensions": dims}
        ),
        Instance(f"requestsize.instance.{ns}", "metric", {"value": size, "dimensions": dims}),
        Instance(f"responsesize.instance.{ns}", "metric", {"value": size * 2, "dimensions": dims}),
    ]


def samples(family: Any, name: str | None = None, **labels: str) -> list[Any]:
    return [
        s
        for s in family.samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]


# ----------------------------------------------------------------------------------------------
# Params


def test_istio_14_standard_config_yields_istio_metric_names_and_labels() -> None:
    params = prometheus.parse_params(istio_14_prometheus_params())

    by_name = {m.name: m for m in params.metrics}
    assert list(by_name) == [
        "istio_requests_total",
        "istio_request_duration_seconds",
        "istio_request_bytes",
        "istio_response_bytes",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
    ]
    for http in list(by_name)[:4]:
        assert list(by_name[http].label_names) == HTTP_LABELS
    for tcp in list(by_name)[4:]:
        assert list(by_name[tcp].label_names) == TCP_LABELS
        assert by_name[tcp].kind is prometheus.Kind.COUNTER
    duration = by_name["istio_request_duration_seconds"]
    assert duration.kind is prometheus.Kind.DISTRIBUTION
    assert duration.buckets == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    assert by_name["istio_request_bytes"].buckets == tuple(10.0**i for i in range(9))
    assert by_name["istio_requests_total"].instance_name == "requestcount.instance.istio-system"
    assert params.expiration == prometheus.ExpirationPolicy(expiry=600.0, check_interval=300.0)


def test_bookinfo_snake_case_handler_parses() -> None:
    docs = list(yaml.safe_load_all((corpus("bookinfo-telemetry/metrics.yaml")).read_text()))
    (handler,) = [d for d in docs if d and d["kind"] == "handler"]

    params = prometheus.parse_params(handler["spec"]["params"])

    (metric,) = params.metrics
    assert metric.name == "istio_double_request_count"
    assert metric.instance_name == "doublerequestcount.instance.istio-system"
    assert metric.label_names == ("reporter", "source", "destination", "message")
    assert params.expiration is None


def test_istio_10_legacy_handler_parses_with_default_buckets() -> None:
    docs = yaml.safe_load_all((corpus("mixer-testdata-config/prometheus.yaml")).read_text())
    (handler,) = [d for d in docs if d and d["kind"] == "handler"]

    params = prometheus.parse_params(handler["spec"]["params"])

    assert params.metrics[0].instance_name == "requestcount.metric.istio-system"
    assert "connection_mtls" in params.metrics[0].label_names


def test_names_are_sanitised_and_namespace_replaces_istio() -> None:
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "/my.metric-name x",
                    "namespace": "acme.corp",
                    "instanceName": "a.instance.ns",
                    "kind": "GAUGE",
                    "labelNames": ["source.app", "dest-ination"],
                },
                {"instance_name": "b.instance.ns", "kind": "DISTRIBUTION"},
            ]
        }
    )
    gauge, hist = params.metrics
    assert gauge.name == "acme_corp_my_metricname_x"
    assert gauge.label_names == ("source_app", "destination")
    assert gauge.dimension_keys == ("source.app", "dest-ination")
    # No name: the instance name is used, as Mixer did; no buckets: Go's DefBuckets.
    assert hist.name == "istio_b_instance_ns"
    assert hist.buckets == prometheus.GO_DEFAULT_BUCKETS


def test_linear_buckets_have_num_finite_plus_one_bounds() -> None:
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "lat",
                    "instanceName": "a.instance.ns",
                    "kind": "DISTRIBUTION",
                    "buckets": {
                        "linear_buckets": {"num_finite_buckets": 3, "width": 2, "offset": 1}
                    },
                }
            ]
        }
    )
    assert params.metrics[0].buckets == (1.0, 3.0, 5.0, 7.0)


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"metricz": []}, "metricz", "unknown field"),
        ({"metrics": {}}, "metrics", "expected a list"),
        ({"metrics": [{"name": "x", "kind": "COUNTER"}]}, "metrics[0].instanceName", "required"),
        (
            {"metrics": [{"name": "x", "instanceName": "i.instance.ns", "kind": "HISTOGRAM"}]},
            "metrics[0].kind",
            "GAUGE, COUNTER, DISTRIBUTION",
        ),
        (
            {
                "metrics": [
                    {"name": "x", "instanceName": "i.instance.ns", "kind": "GAUGE", "lables": []}
                ]
            },
            "metrics[0].lables",
            "unknown field",
        ),
        (
            {
                "metrics": [
                    {
                        "name": "x",
                        "instanceName": "i.instance.ns",
                        "kind": "GAUGE",
                        "labelNames": ["ok", "9bad"],
                    }
                ]
            },
            "metrics[0].labelNames[1]",
            "not a valid Prometheus label name",
        ),
        (
            {
                "metrics": [
                    {
                        "name": "x",
                        "instanceName": "i.instance.ns",
                        "kind": "DISTRIBUTION",
                        "buckets": {"linearBuckets": {"numFiniteBuckets": 3, "width": 0}},
                    }
                ]
            },
            "metrics[0].buckets.linearBuckets.width",
            "must be > 0",
        ),
        (
            {
                "metrics": [
                    {
                        "name": "x",
                        "instanceName": "i.instance.ns",
                        "kind": "DISTRIBUTION",
                        "buckets": {"explicitBuckets": {"bounds": [1, 1]}},
                    }
                ]
            },
            "metrics[0].buckets.explicitBuckets.bounds",
            "strictly increasing",
        ),
        (
            {
                "metrics": [
                    {"name": "x_total", "instanceName": "a.instance.ns", "kind": "COUNTER"},
                    {"name": "x", "instanceName": "b.instance.ns", "kind": "GAUGE"},
                ]
            },
            "metrics[1].name",
            "clashes with metrics[0]",
        ),
        (
            {"metricsExpirationPolicy": {"expiryCheckIntervalDuration": "1m"}},
            "metricsExpirationPolicy.metricsExpiryDuration",
            "required",
        ),
        (
            {"metricsExpirationPolicy": {"metricsExpiryDuration": "soon"}},
            "metricsExpirationPolicy.metricsExpiryDuration",
            "duration",
        ),
    ],
)
def test_bad_params_name_the_field(raw: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ParamError) as caught:
        prometheus.parse_params(raw)
    assert caught.value.path == path
    assert fragment in caught.value.message


# ----------------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime.timedelta(0), "0s"),
        (datetime.timedelta(microseconds=1), "1µs"),
        (datetime.timedelta(microseconds=1500), "1.5ms"),
        (datetime.timedelta(milliseconds=150), "150ms"),
        (datetime.timedelta(seconds=1.5), "1.5s"),
        (datetime.timedelta(minutes=2), "2m0s"),
        (datetime.timedelta(hours=1, seconds=2.25), "1h0m2.25s"),
        (datetime.timedelta(seconds=-3), "-3s"),
    ],
)
def test_go_duration_text(value: datetime.timedelta, text: str) -> None:
    assert prometheus.go_duration(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        (None, ""),
        (True, "true"),
        (404, "404"),
        (1.0, "1"),
        (0.25, "0.25"),
        (1e21, "1000000000000000000000"),
        (bytes([10, 0, 0, 1]), "10.0.0.1"),
        (bytes(10) + b"\xff\xff" + bytes([192, 168, 1, 2]), "192.168.1.2"),
        (bytes.fromhex("20010db8000000000000000000000001"), "2001:db8::1"),
        (datetime.timedelta(milliseconds=20), "20ms"),
        (
            datetime.datetime(2020, 1, 2, 3, 4, 5, 600, tzinfo=datetime.UTC),
            "2020-01-02T03:04:05.000600Z",
        ),
        ({"b": "2", "a": "1"}, "a=1&b=2"),
    ],
)
def test_label_values_are_stringified_like_mixer(value: object, text: str) -> None:
    assert prometheus.label_value(value) == text


# ----------------------------------------------------------------------------------------------
# Reporting and scraping


async def test_hundred_requests_show_in_the_scrape_split_by_response_code() -> None:
    registry = CollectorRegistry()
    handler = prometheus.build(
        prometheus.parse_params(istio_14_prometheus_params()), make_env(registry)
    )
    batch: list[Instance] = []
    for i in range(100):
        code = 200 if i < 70 else (404 if i < 90 else 503)
        batch += request_instances(code, datetime.timedelta(milliseconds=20 * (i % 10)), 100 * i)
    await handler.report(batch)

    families = scrape(registry)
    requests = families["istio_requests"]
    assert requests.type == "counter"
    totals = {s.labels["response_code"]: s.value for s in samples(requests, "istio_requests_total")}
    assert totals == {"200": 70.0, "404": 20.0, "503": 10.0}
    assert set(samples(requests)[0].labels) == set(HTTP_LABELS)
    assert {s.labels["reporter"] for s in samples(requests)} == {"destination"}
    assert {s.labels["destination_service"] for s in samples(requests)} == {"reviews"}
    assert not [s for s in requests.samples if s.name.endswith("_created")]

    duration = families["istio_request_duration_seconds"]
    count = sum(s.value for s in samples(duration, "istio_request_duration_seconds_count"))
    assert count == 100
    # Durations 0..180 ms, ten of each per 10 requests: 0 and 20 ms fall in le=0.025 (with 0 and
    # 0.005 in lower buckets too), everything is <= 0.25.
    le_0025 = sum(
        s.value for s in samples(duration, "istio_request_duration_seconds_bucket", le="0.025")
    )
    le_025 = sum(
        s.value for s in samples(duration, "istio_request_duration_seconds_bucket", le="0.25")
    )
    assert (le_0025, le_025) == (20, 100)
    total_seconds = sum(s.value for s in samples(duration, "istio_request_duration_seconds_sum"))
    assert total_seconds == pytest.approx(10 * sum(0.02 * k for k in range(10)))

    request_bytes = families["istio_request_bytes"]
    buckets = [
        s.labels["le"]
        for s in samples(request_bytes, "istio_request_bytes_bucket", response_code="200")
    ]
    assert buckets == [
        "1.0",
        "10.0",
        "100.0",
        "1000.0",
        "10000.0",
        "100000.0",
        "1e+06",
        "1e+07",
        "1e+08",
        "+Inf",
    ]
    le_1000 = samples(request_bytes, "istio_request_bytes_bucket", response_code="200", le="1000.0")
    assert le_1000[0].value == 11  # sizes 0, 100, ..., 1000 of the first seventy
    await handler.close()


async def test_repeated_series_reuse_one_child() -> None:
    registry = CollectorRegistry()
    handler = prometheus.build(
        prometheus.parse_params(istio_14_prometheus_params()), make_env(registry)
    )
    for _ in range(50):
        await handler.report(request_instances(200, datetime.timedelta(milliseconds=5), 10))
    store = prometheus.MetricStore.on(registry, FakeClock())

    assert store.series_count() == 4
    families = scrape(registry)
    assert samples(families["istio_requests"], "istio_requests_total")[0].value == 50
    await handler.close()


async def test_histogram_buckets_count_each_observation_once_at_its_upper_bound() -> None:
    registry = CollectorRegistry()
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "latency",
                    "instanceName": "latency.instance.ns",
                    "kind": "DISTRIBUTION",
                    "labelNames": ["code"],
                    "buckets": {"explicitBuckets": {"bounds": [0.5, 1, 2]}},
                },
                {"name": "plain", "instanceName": "plain.instance.ns", "kind": "COUNTER"},
            ]
        }
    )
    handler = prometheus.build(params, make_env(registry))
    before = scrape(registry)
    # An unlabelled metric is exposed from the start; a labelled one once it has a series.
    assert samples(before["istio_plain"], "istio_plain_total")[0].value == 0
    assert not before["istio_latency"].samples

    values = [0.5, 0.75, 1.0, 1.5, 2.0, 7.0, -3.0]
    await handler.report(
        [
            Instance("latency.instance.ns", "metric", {"value": v, "dimensions": {"code": 200}})
            for v in values
        ]
        + [Instance("plain.instance.ns", "metric", {"value": 2, "dimensions": {}})]
    )
    family = scrape(registry)["istio_latency"]
    buckets = {s.labels["le"]: s.value for s in samples(family, "istio_latency_bucket")}
    # Bounds are inclusive (le), buckets cumulative, and +Inf holds everything.
    assert buckets == {"0.5": 2, "1.0": 4, "2.0": 6, "+Inf": 7}
    assert samples(family, "istio_latency_count")[0].value == 7
    assert samples(family, "istio_latency_sum")[0].value == pytest.approx(sum(values))
    assert samples(scrape(registry)["istio_plain"], "istio_plain_total")[0].value == 2

    # NaN lands in no bucket and makes the sum NaN, as with prometheus_client.
    await handler.report(
        [Instance("latency.instance.ns", "metric", {"value": "NaN", "dimensions": {"code": 200}})]
    )
    family = scrape(registry)["istio_latency"]
    assert samples(family, "istio_latency_count")[0].value == 7
    assert math.isnan(samples(family, "istio_latency_sum")[0].value)
    await handler.close()


async def test_values_and_labels_convert_like_mixer() -> None:
    registry = CollectorRegistry()
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "conn_seconds",
                    "instanceName": "conn.instance.ns",
                    "kind": "GAUGE",
                    "labelNames": ["ip", "mtls", "took", "port"],
                }
            ]
        }
    )
    handler = prometheus.build(params, make_env(registry))
    dims = {
        "ip": bytes([10, 1, 2, 3]),
        "mtls": False,
        "took": datetime.timedelta(milliseconds=1500),
        "port": 8080,
        "ignored": "extra dimensions are not labels",
    }
    await handler.report(
        [
            Instance(
                "conn.instance.ns",
                "metric",
                {"value": datetime.timedelta(seconds=2.5), "dimensions": dims},
            )
        ]
    )

    (sample,) = scrape(registry)["istio_conn_seconds"].samples
    assert sample.labels == {"ip": "10.1.2.3", "mtls": "false", "took": "1.5s", "port": "8080"}
    assert sample.value == 2.5
    await handler.close()


async def test_equal_label_text_is_one_series_whatever_the_value_types() -> None:
    registry = CollectorRegistry()
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "c_total",
                    "instanceName": "c.instance.ns",
                    "kind": "COUNTER",
                    "labelNames": ["code", "headers"],
                }
            ]
        }
    )
    handler = prometheus.build(params, make_env(registry))

    def inst(dims: dict[str, object]) -> Instance:
        return Instance("c.instance.ns", "metric", {"value": 1, "dimensions": dims})

    await handler.report(
        [
            inst({"code": 200, "headers": "a=1"}),
            inst({"code": "200", "headers": "a=1"}),
            inst({"code": 200, "headers": {"a": "1"}}),  # unhashable: takes the slow path
            inst({"code": 200, "headers": {"a": "1"}}),
            inst({"code": 200}),  # missing dimension: empty label
            inst({"headers": ""}),
        ]
    )

    values = {
        (s.labels["code"], s.labels["headers"]): s.value
        for s in samples(scrape(registry)["istio_c"], "istio_c_total")
    }
    assert values == {("200", "a=1"): 4.0, ("200", ""): 1.0, ("", ""): 1.0}
    assert prometheus.MetricStore.on(registry, FakeClock()).series_count() == 3
    await handler.close()


async def test_legacy_and_new_instance_names_match_each_other() -> None:
    registry = CollectorRegistry()
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "requests_total",
                    "instanceName": "requestcount.metric.istio-system",
                    "kind": "COUNTER",
                }
            ]
        }
    )
    handler = prometheus.build(params, make_env(registry))

    await handler.report(
        [
            Instance("requestcount.metric.istio-system", "metric", {"value": 1, "dimensions": {}}),
            Instance(
                "requestcount.instance.istio-system", "metric", {"value": 2, "dimensions": {}}
            ),
        ]
    )

    assert samples(scrape(registry)["istio_requests"], "istio_requests_total")[0].value == 3
    await handler.close()


async def test_bad_instances_are_reported_after_the_good_ones_are_recorded() -> None:
    registry = CollectorRegistry()
    params = prometheus.parse_params(
        {"metrics": [{"name": "c_total", "instanceName": "c.instance.ns", "kind": "COUNTER"}]}
    )
    handler = prometheus.build(params, make_env(registry))

    with pytest.raises(ValueError) as caught:
        await handler.report(
            [
                Instance("other.instance.ns", "metric", {"value": 1, "dimensions": {}}),
                Instance("c.instance.ns", "metric", {"value": "not a number", "dimensions": {}}),
                Instance("c.instance.ns", "metric", {"value": -1, "dimensions": {}}),
                Instance("c.instance.ns", "metric", {"value": 4, "dimensions": {}}),
            ]
        )

    message = str(caught.value)
    assert "no metric configured for instance other.instance.ns" in message
    assert "not a number" in message
    assert "non-negative" in message
    assert samples(scrape(registry)["istio_c"], "istio_c_total")[0].value == 4
    await handler.close()


# ----------------------------------------------------------------------------------------------
# Config swaps


async def test_swap_keeps_counters_monotonic_without_duplicate_errors() -> None:
    registry = CollectorRegistry()
    params = prometheus.parse_params(istio_14_prometheus_params())
    old = prometheus.build(params, make_env(registry))
    for _ in range(5):
        await old.report(request_instances(200, datetime.timedelta(milliseconds=5), 10))

    new = prometheus.build(params, make_env(registry))  # the old handler is still open
    for _ in range(3):
        await new.report(request_instances(200, datetime.timedelta(milliseconds=5), 10))
    for _ in range(2):
        await old.report(request_instances(200, datetime.timedelta(milliseconds=5), 10))
    assert samples(scrape(registry)["istio_requests"], "istio_requests_total")[0].value == 10

    await old.close()
    await new.report(request_instances(200, datetime.timedelta(milliseconds=5), 10))

    families = scrape(registry)
    assert samples(families["istio_requests"], "istio_requests_total")[0].value == 11
    assert (
        samples(families["istio_request_duration_seconds"], "istio_request_duration_seconds_count")[
            0
        ].value
        == 11
    )
    await new.close()
    assert "istio_requests" not in scrape(registry)


async def test_redefined_metric_replaces_the_old_one_and_untouched_ones_keep_counting() -> None:
    registry = CollectorRegistry()
    raw = istio_14_prometheus_params()
    old = prometheus.build(prometheus.parse_params(raw), make_env(registry))
    await old.report(request_instances(200, datetime.timedelta(milliseconds=5), 10))

    raw["metrics"][1]["buckets"] = {"explicitBuckets": {"bounds": [0.1, 1]}}
    del raw["metrics"][3]  # response_bytes dropped from the config
    new = prometheus.build(prometheus.parse_params(raw), make_env(registry))
    await old.close()
    await new.report(request_instances(200, datetime.timedelta(milliseconds=5), 10)[:3])

    families = scrape(registry)
    assert samples(families["istio_requests"], "istio_requests_total")[0].value == 2
    duration = families["istio_request_duration_seconds"]
    assert [s.labels["le"] for s in samples(duration, "istio_request_duration_seconds_bucket")] == [
        "0.1",
        "1.0",
        "+Inf",
    ]
    assert samples(duration, "istio_request_duration_seconds_count")[0].value == 1
    assert "istio_response_bytes" not in families
    await new.close()


# ----------------------------------------------------------------------------------------------
# Expiry


def expiring_counter(registry: CollectorRegistry, clock: FakeClock) -> prometheus.PrometheusHandler:
    """A handler of one counter labelled `k`, whose series expire after 10 s idle."""
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "c_total",
                    "instanceName": "c.instance.ns",
                    "kind": "COUNTER",
                    "labelNames": ["k"],
                }
            ],
            "metricsExpirationPolicy": {
                "metricsExpiryDuration": "10s",
                "expiryCheckIntervalDuration": "1s",
            },
        }
    )
    return prometheus.build(params, make_env(registry, clock))


async def test_idle_series_expire_and_busy_ones_stay() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    handler = expiring_counter(registry, clock)

    def inst(key: str) -> Instance:
        return Instance("c.instance.ns", "metric", {"value": 1, "dimensions": {"k": key}})

    await handler.report([inst("idle"), inst("busy")])
    clock.now += 8
    await handler.report([inst("busy")])
    clock.now += 4  # idle: 12 s unused, busy: 4 s
    await handler.report([inst("new")])

    keys = {s.labels["k"] for s in samples(scrape(registry)["istio_c"], "istio_c_total")}
    assert keys == {"busy", "new"}

    clock.now += 60  # a scrape expires series even when no reports arrive
    assert samples(scrape(registry)["istio_c"], "istio_c_total") == []
    await handler.close()


async def test_shared_read_only_dimensions_find_their_series_again_even_after_expiry() -> None:
    """The instance builder hands out one read-only dimensions object per series; the adapter
    remembers which series that object is, and forgets it when the series expires."""
    registry = CollectorRegistry()
    clock = FakeClock()
    handler = expiring_counter(registry, clock)
    shared = {k: MappingProxyType({"k": k}) for k in ("a", "b")}

    def inst(key: str, value: int = 1) -> Instance:
        return Instance("c.instance.ns", "metric", {"value": value, "dimensions": shared[key]})

    def totals() -> dict[str, float]:
        family = scrape(registry)["istio_c"]
        return {s.labels["k"]: s.value for s in samples(family, "istio_c_total")}

    await handler.report([inst("a"), inst("b"), inst("a", 5), inst("b", 2)])
    assert totals() == {"a": 6, "b": 3}

    clock.now += 8
    await handler.report([inst("b")])
    clock.now += 4  # a: idle for 12 s, expired; b: 4 s
    await handler.report([inst("b")])
    assert totals() == {"b": 5}
    # The same object again: a new series from zero, not the expired one.
    await handler.report([inst("a", 7)])
    assert totals() == {"a": 7, "b": 5}
    await handler.close()


async def test_prepared_series_record_what_the_instances_would() -> None:
    """`prepare` + `record` (what a report session hands the adapter) leave the same scrape
    as `report` of the same instances, mixed with whole instances, and fail the same way."""
    registries = CollectorRegistry(), CollectorRegistry()
    clock = FakeClock()
    whole, prepared = (expiring_counter(r, clock) for r in registries)
    assert isinstance(prepared, SeriesReportHandler) and prepared.series_value == "value"
    shared = MappingProxyType({"k": "a"})

    def inst(value: object, dims: Mapping[str, object] = shared) -> Instance:
        return Instance("c.instance.ns", "metric", {"value": value, "dimensions": dims})

    def series(registry: CollectorRegistry) -> Any:
        return scrape(registry)["istio_c"]

    handle = prepared.prepare(inst(1))
    assert handle is not None
    assert prepared.prepare(Instance("other.instance.ns", "metric", {"value": 1})) is None
    assert series(registries[1]).samples == []  # preparing records nothing

    batches: list[list[tuple[object | None, Any]]] = [
        [(handle, 1), (None, inst(2, {"k": "b"})), (handle, 3.5)],
        [(handle, "not a number"), (handle, -1), (handle, 2), (None, inst(1, {"k": "b"}))],
    ]
    for items, failing in zip(batches, (False, True), strict=True):
        instances = [inst(v) if h is not None else v for h, v in items]
        errors: list[str | None] = [None, None]
        try:
            await whole.report(instances)
        except ValueError as exc:
            errors[0] = str(exc)
        try:
            prepared.record(items)
        except ValueError as exc:
            errors[1] = str(exc)
        assert errors[0] == errors[1]
        assert (errors[1] is not None) == failing
        assert series(registries[0]) == series(registries[1])
    assert samples(series(registries[1]), "istio_c_total", k="a")[0].value == 6.5

    # Recording through the handle keeps its series alive, as reporting it does; the other
    # one goes idle and expires.
    clock.now += 8
    prepared.record([(handle, 1)])
    await whole.report([inst(1)])
    clock.now += 4
    assert series(registries[0]) == series(registries[1])
    assert [s.labels["k"] for s in samples(series(registries[1]), "istio_c_total")] == ["a"]

    # The series expires; the handle finds (a new) one again, as a report would.
    clock.now += 20
    assert series(registries[0]).samples == series(registries[1]).samples == []
    prepared.record([(handle, 4)])
    await whole.report([inst(4)])
    assert series(registries[0]) == series(registries[1])
    assert samples(series(registries[1]), "istio_c_total", k="a")[0].value == 4
    await whole.close()
    await prepared.close()


# ----------------------------------------------------------------------------------------------
# Serving


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body


async def test_the_adapter_port_serves_the_store() -> None:
    registry = CollectorRegistry()
    handler = prometheus.build(
        prometheus.parse_params(istio_14_prometheus_params()), make_env(registry)
    )
    await handler.report(request_instances(503, datetime.timedelta(seconds=2), 10))
    server = AdminServer("127.0.0.1", 0, registry, ready=lambda: True)  # as mixer serves :42422
    server.start()
    try:
        text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()

    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    (total,) = samples(families["istio_requests"], "istio_requests_total")
    assert (total.labels["response_code"], total.value) == ("503", 1.0)
    await handler.close()
