"""Protocol-level attacks on a real `mixer serve` over loopback (issue 20, findings 11-14).

Each test runs one attack, bounded in count and time, and asserts the bound that holds it: the
answer's code, what the log contains, what a second server does, what the health endpoints say.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from mixer.client import MixerClient
from mixer.envoy.service.ratelimit.v3 import rls_pb2
from mixer.v1 import mixer_pb2
from tests.mixer_process import FLAVOURS, ROOT, MixerProcess, free_port

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

# (method path, client-streaming?) for every method mixer serves
_METHODS = [
    ("/istio.mixer.v1.Mixer/Check", False),
    ("/istio.mixer.v1.Mixer/Report", False),
    ("/envoy.service.auth.v3.Authorization/Check", False),
    ("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", False),
    ("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", True),
]
# A length-delimited field 1 whose length runs past the end of the message.
_TRUNCATED = b"\x0a\x7f\x01\x02"
# A string field holding bytes that are not UTF-8, one per method: RLS's domain (1), Mixer's
# attributes.words (1.1), ext_authz's attributes.source.service (1.1.2), ALS's
# identifier.log_name (1.2).
_BAD_UTF8 = {
    "/istio.mixer.v1.Mixer/Check": b"\x0a\x04\x0a\x02\xff\xfe",
    "/istio.mixer.v1.Mixer/Report": b"\x0a\x04\x0a\x02\xff\xfe",
    "/envoy.service.auth.v3.Authorization/Check": b"\x0a\x06\x0a\x04\x12\x02\xff\xfe",
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit": b"\x0a\x02\xff\xfe",
    "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs": b"\x0a\x04\x12\x02\xff\xfe",
}


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def _send_raw(channel: grpc.Channel, method: str, streaming: bool, payload: bytes) -> grpc.RpcError:
    """Send undecodable bytes as the (first) message; returns the error the server answered."""
    try:
        if streaming:
            stream: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(method)
            stream(iter([payload]), timeout=5)
        else:
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
            unary(payload, timeout=5)
    except grpc.RpcError as err:
        return err
    raise AssertionError(f"{method} accepted {payload!r}")


def test_undecodable_messages_get_invalid_argument_and_one_log_line(
    start_mixer: Start, empty_config: Path
) -> None:
    """Finding 11: a corrupt message or a string that is not UTF-8 is INVALID_ARGUMENT on every
    method, unary and streaming, with one log line per call and no traceback."""
    mixer = start_mixer(empty_config)
    before = mixer.log().count("\n")
    calls = 0
    with mixer.channel() as channel:
        for method, streaming in _METHODS:
            for payload in (_TRUNCATED, _BAD_UTF8[method]):
                err = _send_raw(channel, method, streaming, payload)
                calls += 1
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err)
                assert "cannot decode" in (err.details() or ""), (method, err.details())
        # the server still serves after them
        with MixerClient(mixer.address) as client:
            assert client.check({"request.path": "/"}).valid_use_count == 10000
    time.sleep(0.2)  # let the log lines of the last calls reach the file
    lines = mixer.log().splitlines()[before:]
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    decode_lines = [line for line in lines if "cannot decode" in line]
    assert len(decode_lines) == calls, "\n".join(lines)
    for line in decode_lines:
        assert "\n" not in json.loads(line)["msg"]


def _serve_on(address: str, tmp_path: Path, config: Path, *extra: str) -> tuple[int | None, str]:
    """Run a second `mixer serve` on `address` for at most 20 s; (exit code or None, output)."""
    args = [
        sys.executable,
        "-m",
        "mixer",
        "serve",
        "--config-dir",
        str(config),
        "--address",
        address,
        "--admin-address",
        f"127.0.0.1:{free_port()}",
        "--metrics-address",
        f"127.0.0.1:{free_port()}",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / f"second-{len(list(tmp_path.iterdir()))}.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            code: int | None = proc.wait(20)
        except subprocess.TimeoutExpired:
            code = None
            proc.kill()
            proc.wait()
    return code, out.read_text(errors="replace")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_a_used_address_fails(
    start_mixer: Start, empty_config: Path, tmp_path: Path, workers: str
) -> None:
    """Finding 13: SO_REUSEPORT is only for mixer's own workers; a second `mixer serve` (with one
    worker or several) on an address in use exits non-zero saying so, and the first keeps it."""
    first = start_mixer(empty_config)
    code, output = _serve_on(first.address, tmp_path, empty_config, "--workers", workers)
    assert code is not None and code != 0, output
    assert "address already in use" in output.lower(), output
    with MixerClient(first.address) as client:
        assert client.check({"request.path": "/"}).valid_use_count == 10000


_SECRET = "S3cretPassw0rd"
_SECRET_HANDLER = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: secretredis, namespace: istio-system}}
spec:
  compiledAdapter: redisquota
  params:
    redisServerUrl: {url}
    quotas:
    - {{name: secretquota.instance.istio-system, maxAmount: 10, validDuration: 1s}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: secretquota, namespace: istio-system}}
spec:
  compiledTemplate: quota
  params: {{dimensions: {{}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: secretrule, namespace: istio-system}}
spec:
  actions:
  - {{handler: secretredis, instances: [secretquota]}}
"""


def _rls_request() -> bytes:
    req = rls_pb2.RateLimitRequest(domain="edge", hits_addend=1)
    entry = req.descriptors.add().entries.add()
    entry.key, entry.value = "remote_address", "10.0.0.1"
    return req.SerializeToString()


def test_credentials_in_redis_urls_are_never_echoed(start_mixer: Start, tmp_path: Path) -> None:
    """Finding 12: a Redis URL with a password, on a closed port (--redis-url and a redisquota
    handler) and then with a bad port (a reload that fails), never shows its password: not in
    the log, the answers' details, /debug/*, the admin /metrics or the adapter /metrics."""
    config = tmp_path / "rules-secret"
    shutil.copytree(ROOT / "rules", config)
    closed = free_port()
    url = f"redis://admin:{_SECRET}@127.0.0.1:{closed}"
    (config / "secret.yaml").write_text(_SECRET_HANDLER.format(url=url))
    mixer = start_mixer(
        config, extra_args=["--redis-url", f"redis://admin:{_SECRET}@127.0.0.1:{closed}/0"]
    )
    details: list[str] = []
    with mixer.channel() as channel:
        check: grpc.UnaryUnaryMultiCallable[bytes, bytes]
        rls: grpc.UnaryUnaryMultiCallable[bytes, bytes]
        check = channel.unary_unary("/istio.mixer.v1.Mixer/Check")
        rls = channel.unary_unary("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")
        request = mixer_pb2.CheckRequest(global_word_count=0, deduplication_id="d")
        request.quotas["secretquota"].amount = 1
        request.quotas["requestcountquota"].amount = 1
        for i in range(3):
            request.deduplication_id = f"d{i}"
            for call, payload in ((check, request.SerializeToString()), (rls, _rls_request())):
                try:
                    call(payload, timeout=5)
                    details.append("OK")
                except grpc.RpcError as err:
                    details.append(f"{err.code()} {err.details()}")
    # The same URL with a bad port, in a reload: rejected, the old config keeps serving.
    (config / "secret.yaml").write_text(
        _SECRET_HANDLER.format(url=f"redis://admin:{_SECRET}@127.0.0.1:notaport")
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and mixer.debug_config()["last_reload_success"]:
        time.sleep(0.1)
    seen = {
        "answers": "\n".join(details),
        "/debug/config": json.dumps(mixer.debug_config()),
        "/debug/routes": mixer.admin_get("/debug/routes")[1],
        "/metrics": mixer.admin_get("/metrics")[1],
        "adapter /metrics": _get(f"http://127.0.0.1:{mixer.metrics_port}/metrics"),
    }
    assert "redisServerUrl" in seen["/debug/config"], seen["/debug/config"]  # the reload failed
    assert any("UNAVAILABLE" in d for d in details), details  # Redis was really unreachable
    mixer.stop()
    seen["log"] = mixer.log()
    assert "127.0.0.1" in seen["log"]
    leaks = {where: text for where, text in seen.items() if _SECRET in text}
    assert not leaks, (
        "the password shows in "
        + ", ".join(leaks)
        + "\n"
        + "\n".join(
            line for text in leaks.values() for line in text.splitlines() if _SECRET in line
        )
    )


_STALL_RULES = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: stall, namespace: istio-system}
spec: {compiledAdapter: sleepy, params: {block: 3.0}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: stallcheck, namespace: istio-system}
spec: {compiledTemplate: checknothing, params: {}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: stall, namespace: istio-system}
spec:
  match: request.path == "/stall"
  actions:
  - {handler: stall, instances: [stallcheck]}
"""


def test_health_endpoints_fail_while_the_event_loop_is_stalled(
    start_mixer: Start, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    """Finding 14: /healthz and /readyz answer from the event loop's state. A Check that holds
    the loop for 3 s (past the default 1 s bound of --max-loop-lag) makes both answer 503 while
    it runs, the stall is counted, and both are 200 again once the loop turns."""
    config = tmp_path / "stall-rules"
    config.mkdir()
    (config / "stall.yaml").write_text(_STALL_RULES)
    mixer = start_mixer(config, env=plugin_env)
    assert mixer.admin_get("/healthz")[0] == 200
    assert mixer.admin_get("/readyz")[0] == 200

    def stall() -> None:
        with MixerClient(mixer.address, timeout=10) as client, contextlib.suppress(Exception):
            client.check({"request.path": "/stall"})

    worker = threading.Thread(target=stall)
    started = time.monotonic()
    worker.start()
    seen: dict[str, tuple[int, str]] = {}
    while time.monotonic() - started < 2.8 and len(seen) < 2:
        for path in ("/healthz", "/readyz"):
            status, body = mixer.admin_get(path)
            if status != 200:
                seen.setdefault(path, (status, body))
        time.sleep(0.05)
    worker.join(15)
    assert seen.get("/healthz", (200,))[0] == 503, seen
    assert seen.get("/readyz", (200,))[0] == 503, seen
    assert "event loop" in seen["/healthz"][1], seen
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and mixer.admin_get("/healthz")[0] != 200:
        time.sleep(0.05)
    assert mixer.admin_get("/healthz")[0] == 200
    assert mixer.admin_get("/readyz")[0] == 200
    metrics = mixer.admin_get("/metrics")[1]
    stalls = [
        line for line in metrics.splitlines() if line.startswith("mixer_event_loop_stalls_total")
    ]
    assert stalls and float(stalls[0].split()[-1]) >= 1, stalls
