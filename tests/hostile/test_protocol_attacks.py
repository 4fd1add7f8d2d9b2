"""Protocol-level attacks on a real `mixer serve` over loopback (issue 20, findings 11-14).

Each test runs one attack, bounded in count and time, and asserts the bound that holds it: the
answer's code, what the log contains, what a second server does, what the health endpoints say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from mixer.client import MixerClient
from tests.mixer_process import ROOT, MixerProcess, free_port

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
# A string field holding bytes that are not UTF-8, one per method (field 1 is a string for RLS;
# nested field 1 -> 1 is CompressedAttributes.words for Mixer, source.service for ext_authz,
# identifier.log_name for ALS).
_BAD_UTF8 = {
    "/istio.mixer.v1.Mixer/Check": b"\x0a\x04\x0a\x02\xff\xfe",
    "/istio.mixer.v1.Mixer/Report": b"\x0a\x04\x0a\x02\xff\xfe",
    "/envoy.service.auth.v3.Authorization/Check": b"\x0a\x06\x0a\x04\x12\x02\xff\xfe",
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit": b"\x0a\x02\xff\xfe",
    "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs": b"\x0a\x04\x12\x02\xff\xfe",
}


def _send_raw(channel: grpc.Channel, method: str, streaming: bool, payload: bytes) -> grpc.RpcError:
    """Send undecodable bytes as the (first) message; returns the error the server answered."""
    try:
        if streaming:
            channel.stream_unary(method)(iter([payload]), timeout=5)
        else:
            channel.unary_unary(method)(payload, timeout=5)
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
