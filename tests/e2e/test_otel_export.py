"""The compose stack's OpenTelemetry export (``deploy/mixer/otel.yaml``), against a real OTLP/gRPC
receiver standing in for the collector: reports become OTLP metrics and log records."""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mixer.client import MixerClient
from tests.mixer_process import ROOT, MixerProcess
from tests.otlp_receiver import GrpcReceiver, attributes

pytestmark = pytest.mark.e2e


def test_reports_reach_the_collector_as_otlp_metrics_and_logs(
    start_mixer: Callable[..., MixerProcess], tmp_path: Path
) -> None:
    receiver = GrpcReceiver()
    try:
        config = tmp_path / "config"
        config.mkdir()
        for name in ("attributes.yaml", "policy.yaml", "telemetry.yaml"):
            shutil.copy(ROOT / "rules" / name, config / name)
        otel = (ROOT / "deploy" / "mixer" / "otel.yaml").read_text()
        # The compose collector's address and export interval, swapped for the test's.
        for old, new in (
            ("endpoint: otel-collector:4317", f"endpoint: {receiver.endpoint}"),
            ("exportInterval: 10s", "exportInterval: 1s"),
        ):
            assert old in otel
            otel = otel.replace(old, new)
        (config / "otel.yaml").write_text(otel)
        mixer = start_mixer(config)
        now = datetime.datetime.now(datetime.UTC)
        with MixerClient(mixer.address) as client:
            client.report(
                [
                    {
                        "context.protocol": "http",
                        "context.reporter.kind": "inbound",
                        "destination.service.host": "sample-app.demo.svc.cluster.local",
                        "source.workload.name": "loadgen",
                        "request.time": now,
                        "response.time": now + datetime.timedelta(milliseconds=20),
                        "response.code": code,
                        "response.duration": datetime.timedelta(milliseconds=20),
                    }
                    for code in (200, 200, 503)
                ]
            )
        received = receiver.received

        def requests_total() -> dict[str, float] | None:
            totals: dict[str, float] = {}
            for resource, metric in received.metric_points():
                if metric.name != "mixer.requests":
                    continue
                assert attributes(resource.attributes)["service.name"] == "mixer"
                for point in metric.sum.data_points:
                    labels = attributes(point.attributes)
                    assert labels["destination_service"] == "sample-app.demo.svc.cluster.local"
                    assert labels["source_workload"] == "loadgen"
                    totals[str(labels["response_code"])] = point.as_double or point.as_int
            return totals if totals.get("503") == 1 and totals.get("200") == 2 else None

        assert received.wait_for(requests_total, timeout=20) == {"200": 2, "503": 1}
        durations = received.wait_for(
            lambda: [m for _, m in received.metric_points() if m.name == "mixer.request.duration"]
        )
        assert sum(p.count for p in durations[-1].histogram.data_points) == 3
        logs = received.wait_for(lambda: list(received.log_records()))
        assert len(logs) >= 3
        # Stop mixer while the receiver still answers, so its exporters flush and exit at once.
        assert mixer.stop() == 0
    finally:
        receiver.stop()
