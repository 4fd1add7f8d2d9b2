"""A client stream's errors become gRPC status in `mixer.api.status`, as unary calls' do: the
access-log service over a real socket, with every call counted once by its code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from adapters import load_registry
from mixer.api.accesslog_servicer import METHOD, SERVICE, AccessLogService
from mixer.attributes.limits import Limits
from mixer.config import load_config
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.runtime.build import build_runtime
from mixer.runtime.runtime import RuntimeHolder
from mixer.telemetry import ServerMetrics
from tests.mixer_process import ROOT


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, ServerMetrics]]:
    metrics = ServerMetrics.create()
    runtime = await build_runtime(
        load_config(ROOT / "rules", load_registry()), metrics, revision="test"
    )
    holder = RuntimeHolder(runtime)
    service = AccessLogService(holder, metrics, limits=Limits(max_als_entries=2))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", metrics
    finally:
        await server.stop(None)
        await holder.close()


def _message(entries: int, *, bad_start: bool = False) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    for _ in range(entries):
        entry = msg.http_logs.log_entry.add()
        entry.response.response_code.value = 200
        if bad_start:
            entry.common_properties.start_time.seconds = 10**12  # past the year 9999
    return msg


async def _send(
    address: str, *messages: als_pb2.StreamAccessLogsMessage
) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_unary(
            f"/{SERVICE}/{METHOD}",
            request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
        )
        try:
            await call(iter(messages), timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""


def _handled(metrics: ServerMetrics, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": METHOD, "grpc_code": code}
    return metrics.registry.get_sample_value("grpc_server_handled_total", labels) or 0.0


async def test_each_error_of_a_stream_gets_its_status_and_is_counted_once(
    served: tuple[str, ServerMetrics],
) -> None:
    address, metrics = served
    assert await _send(address, _message(1), _message(2)) == (grpc.StatusCode.OK, "")
    assert await _send(address, _message(1), _message(3)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "3 access log entries in one message is more than the limit of 2",
    )
    code, details = await _send(address, _message(1, bad_start=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("access log entry: common_properties"), details
    assert _handled(metrics, "OK") == 1
    assert _handled(metrics, "RESOURCE_EXHAUSTED") == 1
    assert _handled(metrics, "INVALID_ARGUMENT") == 1
    received = metrics.registry.get_sample_value("mixer_reports_received_total", {"api": "als"})
    assert received == 4  # 3 entries of the good stream, 1 before the oversized message


async def test_an_invalid_field_no_rule_reads_does_not_fail_the_stream(tmp_path: Path) -> None:
    # As for a Report's unwanted attributes: with no report rule reading request.time, a
    # start_time past the year 9999 is never read (docs/envoy-attributes.md).
    metrics = ServerMetrics.create()
    runtime = await build_runtime(load_config(tmp_path, load_registry()), metrics, revision="t")
    names = runtime.dispatcher.routes.report_names
    assert names is not None and not {"request.time", "response.time"} & names
    holder = RuntimeHolder(runtime)
    service = AccessLogService(holder, metrics)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        sent = await _send(f"127.0.0.1:{port}", _message(2, bad_start=True), _message(1))
        assert sent == (grpc.StatusCode.OK, "")
    finally:
        await server.stop(None)
        await holder.close()
    received = metrics.registry.get_sample_value("mixer_reports_received_total", {"api": "als"})
    assert received == 3
