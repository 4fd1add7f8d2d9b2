"""The bench's skeleton servers and sync floor answer real requests over a loopback socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bench import runner, skeletons
from bench.proc import FloorServer
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from mixer.v1 import mixer_pb2

pytestmark = pytest.mark.integration


def _frames() -> dict[str, list[bytes]]:
    return {
        name: list(runner.SCENARIOS[name].frames(2, "skeleton-test"))
        for name in ("check-50", "authz-50", "report-100", "als")
    }


def test_skeletons_read_every_value_of_the_bench_requests() -> None:
    frames = _frames()
    assert skeletons.read_check(frames["check-50"][0]) >= 20
    assert skeletons.read_authz(frames["authz-50"][0]) >= 10
    # Every entry of a report batch carries values; every ALS entry has its fields read.
    assert skeletons.read_report(frames["report-100"][0]) >= runner.REPORT_ENTRIES
    msg = StreamAccessLogsMessage.FromString(frames["als"][0])
    assert skeletons.read_als(msg) >= runner.ALS_ENTRIES * 30


@pytest.mark.parametrize("flavour", ["aio", "sync"])
def test_skeleton_server_answers_over_loopback(tmp_path: Path, flavour: str) -> None:
    server = FloorServer(
        tmp_path / "skeleton.log",
        cpu=None,
        name=f"skeleton-{flavour}",
        module="bench.skeletons",
        args=("--flavour", flavour),
    )
    server.start()
    try:
        assert server.address.startswith("127.0.0.1:")
        frames = _frames()
        with grpc.insecure_channel(server.address) as channel:
            for scenario in ("check-50", "authz-50", "report-100"):
                call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                    runner.SCENARIOS[scenario].path
                )
                raw = call(frames[scenario][0], timeout=10)
                if flavour == "sync":
                    assert raw == b""
                elif scenario == "check-50":
                    resp = mixer_pb2.CheckResponse.FromString(raw)
                    assert resp.precondition.status.code == 0
                    assert resp.precondition.valid_use_count > 0
                elif scenario == "authz-50":
                    assert CheckResponse.FromString(raw).status.code == 0
                else:
                    assert raw == b""
            stream: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
                runner.SCENARIOS["als"].path
            )

            def messages() -> Iterator[bytes]:
                yield from frames["als"]

            assert stream(messages(), timeout=10) == b""
        assert server.counts() == (4, 2)
    finally:
        server.stop()
