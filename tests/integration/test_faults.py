"""Faults under load: config churn, failing adapters, SIGTERM mid-report, idle stream floods.

Each test prints its figures (run with -s to see them) and asserts the service kept answering
within its timeouts, the failure policy held and the counts add up.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from mixer.client import MixerClient
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.v1 import mixer_pb2
from tests.integration.live import RATINGS_FROM_V3, metric, ratings, write_rule
from tests.mixer_process import FLAVOURS, MixerProcess


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_config_replaced_50_times_under_check_load(start_mixer: Start, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rule(rules)
    mixer = start_mixer(rules)
    errors: dict[str, int] = {}
    served = [0]
    stop = threading.Event()

    def load() -> None:
        with MixerClient(mixer.address, timeout=5) as client:
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    client.check(ratings("v3"))
                    served[0] += 1
                except grpc.RpcError as err:
                    errors[err.code().name] = errors.get(err.code().name, 0) + 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    broken = good = 0
    try:
        with MixerClient(mixer.address) as client:
            for i in range(50):
                if i % 5 == 4:
                    write_rule(rules, match="destination.labels[ == broken")
                    broken += 1
                    deadline = time.monotonic() + 3
                    while time.monotonic() < deadline and not mixer.debug_config()["last_errors"]:
                        time.sleep(0.02)
                    assert mixer.debug_config()["last_errors"], f"version {i} not rejected"
                    continue
                version = f"v{3 + i % 2}"
                write_rule(rules, match=RATINGS_FROM_V3.replace("v3", version))
                good += 1
                deadline = time.monotonic() + 3
                while (
                    time.monotonic() < deadline and client.check(ratings(version)).status_code != 7
                ):
                    time.sleep(0.02)
                assert client.check(ratings(version)).status_code == 7, f"version {i} not live"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    print(
        f"\nconfig churn: {good} good + {broken} broken versions, {served[0]} checks served "
        f"during the churn, errors by code: {errors or 'none'}"
    )
    assert served[0] > 0
    assert errors == {}
    assert metric(mixer, "mixer_config_reloads_total", outcome="failure") >= broken


REPORT_RULES = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: {name}, namespace: istio-system}}
spec:
  compiledAdapter: sleepy
  params: {params}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: entry{name}, namespace: istio-system}}
spec:
  compiledTemplate: metric
  params: {{value: "1", dimensions: {{code: response.code | 0}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: {name}, namespace: istio-system}}
spec:
  actions: [{{handler: {name}, instances: [entry{name}]}}]
"""


def report_rules(directory: Path, **handlers: str) -> Path:
    directory.mkdir()
    text = "\n---\n".join(
        REPORT_RULES.format(name=name, params=params) for name, params in handlers.items()
    )
    (directory / "report.yaml").write_text(text)
    return directory


def test_adapter_that_raises_during_report_load_is_counted_and_isolated(
    start_mixer: Start, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    record = tmp_path / "recorded.txt"
    rules = report_rules(
        tmp_path / "rules", failing="{fail: true}", recorder=f'{{recordTo: "{record}"}}'
    )
    mixer = start_mixer(rules, env=plugin_env)
    batches, size = 100, 20
    started = time.monotonic()
    with MixerClient(mixer.address, timeout=5) as client:
        for b in range(batches):
            client.report([{"response.code": 200 + b % 3} for _ in range(size)])
    elapsed = time.monotonic() - started
    total = batches * size
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        not record.exists() or len(record.read_text().splitlines()) < total
    ):
        time.sleep(0.1)
    dropped = metric(mixer, "mixer_report_dropped_total", handler="failing.handler.istio-system")
    recorded = len(record.read_text().splitlines())
    print(
        f"\nfailing adapter: {total} entries reported in {elapsed:.2f}s, "
        f"{recorded} delivered to the healthy adapter, {dropped:.0f} counted as dropped by the "
        "failing one"
    )
    assert recorded == total
    assert dropped == total
    errors = metric(
        mixer,
        "mixer_runtime_dispatches_total",
        handler="failing.handler.istio-system",
        error="true",
    )
    assert errors >= 1


def test_sigterm_during_report_load_loses_nothing_uncounted(
    start_mixer: Start, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    record = tmp_path / "recorded.txt"
    rules = report_rules(tmp_path / "rules", slow=f'{{delay: 0.5, recordTo: "{record}"}}')
    mixer = start_mixer(rules, env=plugin_env, extra_args=["--grace-period", "1"])
    sent_ok = [0]
    refused = [0]
    stop = threading.Event()

    def load() -> None:
        with MixerClient(mixer.address, timeout=5) as client:
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    client.report([{"response.code": 200} for _ in range(50)])
                    sent_ok[0] += 50
                except grpc.RpcError:
                    refused[0] += 1
                    return

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1.0)
    mixer.signal(signal.SIGTERM)
    assert mixer.proc is not None
    code = mixer.proc.wait(20)
    stop.set()
    thread.join(10)
    finals = [
        json.loads(line)
        for line in mixer.log().splitlines()
        if line.startswith("{") and "final counts" in line
    ]
    assert code == 0
    assert len(finals) == 1, mixer.log()
    counts = finals[0]
    recorded = len(record.read_text().splitlines()) if record.exists() else 0
    print(
        f"\nSIGTERM under report load: client saw {sent_ok[0]} entries accepted; server queued "
        f"{counts['accepted']} and refused {counts['rejected']} (queue full, counted); of the "
        f"queued, {counts['delivered']} delivered and {counts['dropped']} dropped at shutdown "
        f"(counted); {recorded} reached the adapter"
    )
    assert counts["accepted"] == counts["delivered"] + counts["dropped"]
    assert recorded == counts["delivered"]
    assert counts["accepted"] + counts["rejected"] >= sent_ok[0]


async def test_a_thousand_idle_streams_do_not_stop_service(
    start_mixer: Start, empty_config: Path
) -> None:
    mixer = start_mixer(empty_config)
    assert mixer.proc is not None
    before = rss_kib(mixer.proc.pid)
    channels = [grpc.aio.insecure_channel(mixer.address) for _ in range(4)]
    calls = []
    try:
        for channel in channels:
            stream = channel.stream_unary(
                "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
                request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
                response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
            )
            calls += [stream(timeout=60) for _ in range(250)]
        await asyncio.sleep(1.0)
        separate = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(mixer.address, options=separate) as other:
            check = other.unary_unary(
                "/istio.mixer.v1.Mixer/Check",
                request_serializer=mixer_pb2.CheckRequest.SerializeToString,
                response_deserializer=mixer_pb2.CheckResponse.FromString,
            )
            latencies = []
            for _ in range(50):
                start = time.monotonic()
                resp = await check(mixer_pb2.CheckRequest(), timeout=2)
                latencies.append(time.monotonic() - start)
                assert resp.precondition.valid_use_count == 10000
        during = rss_kib(mixer.proc.pid)
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()
    print(
        f"\n1,000 idle streams: 50 checks on another connection, worst {max(latencies) * 1000:.1f}"
        f" ms; server RSS {before // 1024} MiB before, {during // 1024} MiB with the streams open"
    )
    assert during - before < 200 * 1024
