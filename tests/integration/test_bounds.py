"""Every input bound, crossed: each answers with a clear status and message."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from mixer.client import MixerClient
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.envoy.service.auth.v3 import external_auth_pb2
from mixer.v1 import mixer_pb2
from tests.mixer_process import FLAVOURS, MixerProcess


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

LIMITS = [
    "--max-attributes", "6",
    "--max-words", "3",
    "--max-string-length", "16",
    "--max-report-entries", "2",
    "--max-als-entries", "2",
    "--max-message-bytes", "4096",
    "--max-concurrent-streams", "4",
]  # fmt: skip


@pytest.fixture
def mixer(start_mixer: Start, empty_config: Path) -> MixerProcess:
    return start_mixer(empty_config, extra_args=LIMITS)


def error_of(fn: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def test_too_many_attributes(mixer: MixerProcess) -> None:
    # global-dictionary names, so that only the attribute count is at stake
    names = ["source.port", "request.size", "response.code", "response.size",
             "destination.port", "request.total_size", "response.total_size"]  # fmt: skip
    with MixerClient(mixer.address) as client:
        assert client.check({n: 1 for n in names[:6]}).status_code == 0
        err = error_of(lambda: client.check({n: 1 for n in names}))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "attributes: 7 attributes and map entries is more than the limit of 6"


def test_map_entries_count_as_attributes(mixer: MixerProcess) -> None:
    with MixerClient(mixer.address) as client:
        # dictionary words only, so that only the entry count is at stake
        headers = {"host": "GET", "accept": "POST", "cookie": "http", "referer": "envoy",
                   "via": "inbound"}  # fmt: skip
        assert client.check({"request.headers": headers}).status_code == 0
        err = error_of(lambda: client.check({"request.headers": {**headers, "age": "outbound"}}))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_too_many_message_words(mixer: MixerProcess) -> None:
    with MixerClient(mixer.address) as client:
        err = error_of(lambda: client.check({"x.a": "p", "x.b": "q"}))  # 4 new words
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "attributes.words: 4 words is more than the limit of 3"


def test_too_long_string(mixer: MixerProcess) -> None:
    with MixerClient(mixer.address) as client:
        assert client.check({"request.path": "/" + "a" * 15}).status_code == 0
        err = error_of(lambda: client.check({"request.path": "/" + "a" * 16}))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "attributes.words[0]: 17 characters is more than the limit of 16"


def test_too_many_report_entries(mixer: MixerProcess) -> None:
    with MixerClient(mixer.address) as client:
        client.report([{"response.code": 200}] * 2)
        err = error_of(lambda: client.report([{"response.code": 200}] * 3))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "attributes: 3 report entries is more than the limit of 2"


def test_too_large_message(mixer: MixerProcess) -> None:
    req = mixer_pb2.CheckRequest(global_word_count=222, deduplication_id="x" * 5000)
    with grpc.insecure_channel(mixer.address) as channel:
        check = channel.unary_unary(
            "/istio.mixer.v1.Mixer/Check",
            request_serializer=mixer_pb2.CheckRequest.SerializeToString,
            response_deserializer=mixer_pb2.CheckResponse.FromString,
        )
        err = error_of(lambda: check(req, timeout=5))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (err.details() or "")


def test_ext_authz_headers_count_against_the_bounds(mixer: MixerProcess) -> None:
    req = external_auth_pb2.CheckRequest()
    for i in range(8):
        req.attributes.request.http.headers[f"h{i}"] = "v"
    with grpc.insecure_channel(mixer.address) as channel:
        check = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=external_auth_pb2.CheckRequest.SerializeToString,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        err = error_of(lambda: check(req, timeout=5))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "attributes and map entries is more than the limit of 6" in (err.details() or "")


def _als_message(entries: int) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    for _ in range(entries):
        msg.http_logs.log_entry.add().response.response_code.value = 200
    return msg


def test_too_many_access_log_entries_in_one_message(mixer: MixerProcess) -> None:
    with grpc.insecure_channel(mixer.address) as channel:
        stream = channel.stream_unary(
            "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
            request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
        )
        stream(iter([_als_message(2)]), timeout=5)
        err = error_of(lambda: stream(iter([_als_message(3)]), timeout=5))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == ("3 access log entries in one message is more than the limit of 2")


async def test_concurrent_streams_per_connection_are_capped(mixer: MixerProcess) -> None:
    async with grpc.aio.insecure_channel(mixer.address) as channel:
        stream = channel.stream_unary(
            "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
            request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
        )
        check = channel.unary_unary(
            "/istio.mixer.v1.Mixer/Check",
            request_serializer=mixer_pb2.CheckRequest.SerializeToString,
            response_deserializer=mixer_pb2.CheckResponse.FromString,
        )
        idle = [stream() for _ in range(4)]  # open, send nothing
        for call in idle:
            await call.write(_als_message(1))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await check(mixer_pb2.CheckRequest(), timeout=1.0)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # another connection is served meanwhile
        separate = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
        async with grpc.aio.insecure_channel(mixer.address, options=separate) as other:
            other_check = other.unary_unary(
                "/istio.mixer.v1.Mixer/Check",
                request_serializer=mixer_pb2.CheckRequest.SerializeToString,
                response_deserializer=mixer_pb2.CheckResponse.FromString,
            )
            resp = await other_check(mixer_pb2.CheckRequest(), timeout=5)
            assert resp.precondition.valid_use_count == 10000
        for call in idle:
            await call.done_writing()
        await asyncio.gather(*idle)
        resp = await check(mixer_pb2.CheckRequest(), timeout=5)
        assert resp.precondition.valid_use_count == 10000


def test_each_crossing_is_counted_under_its_flag(mixer: MixerProcess) -> None:
    """mixer_limit_exceeded_total{limit} names the bound crossed (the flag, underscored)."""
    with MixerClient(mixer.address) as client:
        error_of(lambda: client.check({"request.path": "x" * 17}))
        error_of(
            lambda: client.check(
                {"request.path": "/", "request.host": "h"},
                {"a": 1} | {f"q{i}": 1 for i in range(64)},
            )
        )
    _, text = mixer.admin_get("/metrics")
    assert 'mixer_limit_exceeded_total{limit="max_string_length"} 1.0' in text
    assert 'mixer_limit_exceeded_total{limit="max_quotas"} 1.0' in text
