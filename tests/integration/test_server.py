"""The service over real sockets: defaults, errors, reports, health, reflection, shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from mixer.client import MixerClient
from mixer.v1 import mixer_pb2
from tests import wire
from tests.mixer_process import FLAVOURS, ROOT, MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


def raw_check(address: str, payload: bytes) -> bytes:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/istio.mixer.v1.Mixer/Check",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        result: bytes = call(payload, timeout=5)
        return result


def test_no_rules_means_ok_for_60s_and_10000_uses(start_mixer: Start, empty_config: Path) -> None:
    mixer = start_mixer(empty_config)
    with MixerClient(mixer.address) as client:
        answer = client.check(
            {"destination.service": "a.b.svc.cluster.local"}, quotas={"requestcount": 3}
        )
    assert answer.status_code == 0
    assert answer.valid_duration.total_seconds() == 60
    assert answer.valid_use_count == 10000
    assert answer.quotas["requestcount"].granted == 3
    assert answer.quotas["requestcount"].valid_duration.total_seconds() == 60


def test_a_client_built_from_istios_field_numbers_is_served(
    start_mixer: Start, empty_config: Path
) -> None:

    mixer = start_mixer(empty_config)
    # CompressedAttributes{words=["a.b.svc.cluster.local"], strings={destination.service(9): -1}}
    attrs = wire.field_bytes(1, b"a.b.svc.cluster.local") + wire.map_sint32_sint32(2, 9, -1)
    quota_params = wire.field_varint(1, 5)  # amount = 5
    quota_entry = wire.field_bytes(1, b"q1") + wire.field_bytes(2, quota_params)
    request = (
        wire.field_bytes(1, attrs)
        + wire.field_varint(2, 222)
        + wire.field_bytes(3, b"dedup-1")
        + wire.field_bytes(4, quota_entry)
    )
    response = raw_check(mixer.address, request)
    precondition = wire.first(response, 2)
    assert isinstance(precondition, bytes)
    status = wire.first(precondition, 1)
    assert isinstance(status, bytes) and wire.first(status, 1) is None  # code 0 (OK) is omitted
    duration = wire.first(precondition, 2)
    assert isinstance(duration, bytes) and wire.first(duration, 1) == 60
    assert wire.first(precondition, 3) == 10000
    quota_map_entry = wire.first(response, 3)
    assert isinstance(quota_map_entry, bytes)
    assert wire.first(quota_map_entry, 1) == b"q1"
    quota_result = wire.first(quota_map_entry, 2)
    assert isinstance(quota_result, bytes) and wire.first(quota_result, 2) == 5


def test_newer_global_dictionary_gets_internal(start_mixer: Start, empty_config: Path) -> None:
    mixer = start_mixer(empty_config)
    req = mixer_pb2.CheckRequest(global_word_count=500)
    with grpc.insecure_channel(mixer.address) as channel:
        check = channel.unary_unary(
            "/istio.mixer.v1.Mixer/Check",
            request_serializer=mixer_pb2.CheckRequest.SerializeToString,
            response_deserializer=mixer_pb2.CheckResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            check(req, timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == (
        "inconsistent global dictionary versions used: mixer knows 222 words, caller knows 500"
    )


def _bad(field: str) -> mixer_pb2.CheckRequest:
    req = mixer_pb2.CheckRequest(global_word_count=222)
    a = req.attributes
    if field == "global":
        a.int64s[400] = 1
    elif field == "local":
        a.words.append("x")
        a.bools[-2] = True
    elif field == "twice":
        a.strings[17] = 90
        a.int64s[17] = 1
    elif field == "ip":
        a.bytes[0] = b"\x01\x02\x03"
    elif field == "map":
        a.string_maps[15].entries[90] = -4
    return req


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("global", "attributes.int64s: word index 400 is outside the global dictionary "
                   "(222 words)"),
        ("local", "attributes.bools: word index -2 (message word slot 1) is outside the "
                  "message's 1 words"),
        ("twice", "attributes: attribute 'request.path' (word index 17) appears in both "
                  "strings and int64s"),
        ("ip", "attributes.bytes[source.ip]: an IP address must be 4 or 16 bytes, got 3"),
        ("map", "attributes.string_maps[request.headers] value: word index -4 (message word "
                "slot 3) is outside the message's 0 words"),
    ],
)  # fmt: skip
def test_malformed_attributes_get_invalid_argument(
    start_mixer: Start, empty_config: Path, field: str, message: str
) -> None:
    mixer = start_mixer(empty_config)
    with grpc.insecure_channel(mixer.address) as channel:
        check = channel.unary_unary(
            "/istio.mixer.v1.Mixer/Check",
            request_serializer=mixer_pb2.CheckRequest.SerializeToString,
            response_deserializer=mixer_pb2.CheckResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            check(_bad(field), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == message


def test_delta_encoded_report_of_three_entries_is_decoded(
    start_mixer: Start, empty_config: Path
) -> None:
    mixer = start_mixer(empty_config, extra_args=["--log-level", "debug"])
    entries = [
        {"destination.service": "svc-a", "response.code": 200},
        {"destination.service": "svc-a", "response.code": 503},
        {"destination.service": "svc-b", "response.code": 503},
    ]
    with MixerClient(mixer.address) as client:
        client.report(entries, delta=True)
    deadline = time.monotonic() + 5
    logged: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(logged) < 3:
        logged = [
            json.loads(line)
            for line in mixer.log().splitlines()
            if line.startswith("{") and "report entry" in line
        ]
        time.sleep(0.05)
    assert [entry["msg"] for entry in logged] == [
        "report entry 0: {'destination.service': 'svc-a', 'response.code': 200}",
        "report entry 1: {'destination.service': 'svc-a', 'response.code': 503}",
        "report entry 2: {'destination.service': 'svc-b', 'response.code': 503}",
    ]


def test_health_is_serving_and_reflection_lists_mixer(
    start_mixer: Start, empty_config: Path
) -> None:
    mixer = start_mixer(empty_config)
    with grpc.insecure_channel(mixer.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "istio.mixer.v1.Mixer"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert "istio.mixer.v1.Mixer" in names
    assert "grpc.health.v1.Health" in names


def test_admin_port_serves_metrics_health_and_version(
    start_mixer: Start, empty_config: Path
) -> None:
    mixer = start_mixer(empty_config)
    with MixerClient(mixer.address) as client:
        for _ in range(3):
            client.check({"request.path": "/"})
    assert mixer.admin_get("/healthz")[0] == 200
    assert mixer.admin_get("/readyz")[0] == 200
    status, body = mixer.admin_get("/version")
    assert status == 200 and json.loads(body)["version"]
    status, text = mixer.admin_get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    handled = {
        (s.labels["grpc_method"], s.labels["grpc_code"]): s.value
        for s in families["grpc_server_handled"].samples
        if s.name == "grpc_server_handled_total"
        and s.labels["grpc_service"] == "istio.mixer.v1.Mixer"
    }
    assert handled[("Check", "OK")] == 3
    latency = [
        s
        for s in families["grpc_server_handling_seconds"].samples
        if s.name.endswith("_count")
        and s.labels["grpc_method"] == "Check"
        and s.labels["grpc_service"] == "istio.mixer.v1.Mixer"
    ]
    assert latency[0].value == 3


def test_cli_check_prints_the_answer_as_json(start_mixer: Start, empty_config: Path) -> None:
    mixer = start_mixer(empty_config)
    out = subprocess.run(
        [sys.executable, "-m", "mixer", "check", "--address", mixer.address,
         "--attr", "destination.service=a.b.svc.cluster.local", "--attr", "source.ip=10.0.0.1",
         "--attr", "request.headers[x-user]=bob"],
        capture_output=True, text=True, timeout=30, cwd=ROOT, check=True,
    )  # fmt: skip
    answer = json.loads(out.stdout)
    assert answer["status"]["code"] == 0
    assert answer["valid_duration"] == 60
    assert answer["valid_use_count"] == 10000


SLOW_RULE = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: slow, namespace: istio-system}
spec:
  compiledAdapter: sleepy
  params: {delay: 1.0}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec:
  compiledTemplate: checknothing
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: slow, namespace: istio-system}
spec:
  actions:
  - {handler: slow, instances: [nothing]}
"""


def test_sigterm_finishes_in_flight_calls_and_exits_0(
    start_mixer: Start, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    rules = tmp_path / "slow-rules"
    rules.mkdir()
    (rules / "slow.yaml").write_text(SLOW_RULE)
    mixer = start_mixer(rules, extra_args=["--handler-timeout", "5"], env=plugin_env)
    results: list[object] = []

    def one() -> None:
        with MixerClient(mixer.address, timeout=10) as client:
            try:
                results.append(client.check({"request.id": "x"}).status_code)
            except grpc.RpcError as err:
                results.append(f"{err.code()}: {err.details()}")

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.4)  # every call is now inside the 1 s handler
    mixer.signal(signal.SIGTERM)
    assert mixer.proc is not None
    code = mixer.proc.wait(15)
    for t in threads:
        t.join(15)
    assert results == [0] * 8
    assert code == 0, mixer.log()
    assert "shutting down" in mixer.log()
    with pytest.raises(grpc.RpcError) as err, MixerClient(mixer.address, timeout=2) as client:
        client.check({})
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_sigterm_under_load_exits_0_with_only_refusals(
    start_mixer: Start, empty_config: Path
) -> None:
    mixer = start_mixer(empty_config)
    errors: list[str] = []
    done = [0]

    def load() -> None:
        with MixerClient(mixer.address, timeout=5) as client:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and done[0] < 50_000:
                try:
                    client.check({"destination.service": "a"})
                    done[0] += 1
                except grpc.RpcError as err:
                    # Calls racing the shutdown are refused; nothing may fail otherwise.
                    if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                        errors.append(f"{err.code()}: {err.details()}")
                    return

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    served_before = done[0]
    mixer.signal(signal.SIGTERM)
    assert mixer.proc is not None
    code = mixer.proc.wait(15)
    for t in threads:
        t.join(15)
    assert served_before > 0
    assert errors == []
    assert code == 0, mixer.log()
