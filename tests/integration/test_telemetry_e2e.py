"""Reports (Mixer API and Envoy's ALS) become Istio's standard metrics on the adapter port."""

from __future__ import annotations

import datetime
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mixer.client import MixerClient
from tests.compat.harness import run_envoy_client
from tests.mixer_process import ROOT, MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


def wait_for(port: int, name: str, expected: float, **labels: str) -> dict[Any, float]:
    deadline = time.monotonic() + 10
    samples = scrape(port)
    while time.monotonic() < deadline and total(samples, name, **labels) < expected:
        time.sleep(0.1)
        samples = scrape(port)
    return samples


def http_entry(i: int) -> dict[str, object]:
    return {
        "context.protocol": "http",
        "context.reporter.kind": "inbound",
        "destination.service.host": "reviews.default.svc.cluster.local",
        "destination.service.name": "reviews",
        "destination.workload.name": "reviews-v1",
        "response.code": 503 if i % 10 == 0 else 200,
        "response.duration": datetime.timedelta(milliseconds=5 + i % 50),
        "request.size": 100 + i,
        "response.size": 1000,
        "request.time": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        "request.useragent": "curl/8",
    }


def test_mixer_report_of_100_requests_yields_istio_requests_total(
    start_mixer: Start,
) -> None:
    mixer = start_mixer(ROOT / "rules")
    with MixerClient(mixer.address) as client:
        for start in range(0, 100, 25):
            client.report([http_entry(i) for i in range(start, start + 25)])
    samples = wait_for(mixer.metrics_port, "istio_requests_total", 100)
    assert total(samples, "istio_requests_total") == 100
    ok = total(
        samples,
        "istio_requests_total",
        response_code="200",
        destination_service="reviews.default.svc.cluster.local",
        reporter="destination",
    )
    assert ok == 90
    assert total(samples, "istio_requests_total", response_code="503") == 10
    assert total(samples, "istio_request_duration_seconds_count") == 100
    assert total(samples, "istio_request_duration_seconds_sum") == pytest.approx(
        sum(0.005 + (i % 50) / 1000 for i in range(100))
    )
    assert total(samples, "istio_request_bytes_count") == 100
    assert total(samples, "istio_response_bytes_sum") == 100_000


def test_als_stream_of_100_requests_yields_the_same_metrics(start_mixer: Start) -> None:
    mixer = start_mixer(ROOT / "rules")
    entries = [
        {
            "common_properties": {
                "start_time": "2026-01-01T00:00:00Z",
                "time_to_last_downstream_tx_byte": f"0.{10 + i % 50:03d}s",
                "upstream_cluster": "outbound|9080||ratings.default.svc.cluster.local",
                "downstream_remote_address": {
                    "socket_address": {"address": "10.0.0.1", "port_value": 5000}
                },
            },
            "request": {
                "request_method": "GET",
                "path": f"/ratings/{i}",
                "authority": "ratings:9080",
                "user_agent": "curl/8",
                "request_headers_bytes": 100,
            },
            "response": {"response_code": 404 if i % 4 == 0 else 200, "response_body_bytes": 10},
            "protocol_version": "HTTP11",
        }
        for i in range(100)
    ]
    stream = [
        {"identifier": {"node": {"id": "sidecar~10.0.0.1~ratings"}, "log_name": "outbound"},
         "http_logs": {"log_entry": entries[:50]}},
        {"http_logs": {"log_entry": entries[50:]}},
    ]  # fmt: skip
    result = run_envoy_client(mixer.address, "als", stream, hold_s=0.2)
    assert result["ok"], result
    samples = wait_for(mixer.metrics_port, "istio_requests_total", 100)
    assert total(samples, "istio_requests_total") == 100
    assert total(samples, "istio_requests_total", reporter="source", response_code="404") == 25
    assert total(samples, "istio_requests_total", response_code="200") == 75
    assert (
        total(
            samples,
            "istio_requests_total",
            destination_service="ratings.default.svc.cluster.local",
        )
        == 100
    )
    assert total(samples, "istio_request_duration_seconds_count") == 100


def test_hanging_report_adapter_delays_neither_reports_nor_other_adapters(
    start_mixer: Start, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    record = tmp_path / "recorded.txt"
    (rules / "telemetry.yaml").write_text(
        (ROOT / "rules/telemetry.yaml").read_text()
        + f"""
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: hang, namespace: istio-system}}
spec:
  compiledAdapter: sleepy
  params: {{delay: 30}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: recorder, namespace: istio-system}}
spec:
  compiledAdapter: sleepy
  params: {{recordTo: "{record}"}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: hang, namespace: istio-system}}
spec:
  actions:
  - {{handler: hang, instances: [requestcount]}}
  - {{handler: recorder, instances: [requestcount]}}
"""
    )
    mixer = start_mixer(rules, env=plugin_env)
    with MixerClient(mixer.address, timeout=2) as client:
        started = time.monotonic()
        for start in range(0, 100, 10):
            client.report([http_entry(i) for i in range(start, start + 10)])
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"reports waited on the hanging adapter: {elapsed:.2f}s"
    samples = wait_for(mixer.metrics_port, "istio_requests_total", 100)
    assert total(samples, "istio_requests_total") == 100
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        not record.exists() or len(record.read_text().splitlines()) < 100
    ):
        time.sleep(0.1)
    assert len(record.read_text().splitlines()) == 100
