"""Our Envoy subset against Envoy's own generated code (xds-protos, run in a subprocess).

Directions checked:
- schema: every field, enum value and RPC we declare matches Envoy's descriptor;
- Envoy -> us: messages Envoy's code encodes (fully populated) decode identically with ours, and
  the fields we do not declare are exactly the listed ones and survive a re-encode;
- us -> Envoy: our responses decode identically with Envoy's code, with no unknown fields;
- a real gRPC round trip: envoy_client.py (Envoy's stubs) against servicers built on our stubs.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import importlib
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, descriptor_pb2, json_format, message
from google.protobuf.struct_pb2 import Struct
from google.rpc import code_pb2, status_pb2

from mixer.attributes.bag import StringMap
from mixer.attributes.envoy import bag_from_check_request, bags_from_access_logs
from mixer.envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption, QueryParameter
from mixer.envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from mixer.envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from mixer.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from mixer.envoy.type.v3.http_status_pb2 import HttpStatus, StatusCode
from tests.compat.harness import ROOT, run_envoy_client, run_envoy_side

OURS: dict[str, type[message.Message]] = {
    "envoy.service.auth.v3.CheckRequest": external_auth_pb2.CheckRequest,
    "envoy.service.auth.v3.CheckResponse": external_auth_pb2.CheckResponse,
    "envoy.service.accesslog.v3.StreamAccessLogsMessage": als_pb2.StreamAccessLogsMessage,
    "envoy.service.accesslog.v3.StreamAccessLogsResponse": als_pb2.StreamAccessLogsResponse,
    "envoy.service.ratelimit.v3.RateLimitRequest": rls_pb2.RateLimitRequest,
    "envoy.service.ratelimit.v3.RateLimitResponse": rls_pb2.RateLimitResponse,
}

# Fields Envoy sent in each sample that our subset deliberately does not declare. They must be
# exactly these (a new name here means the subset lost a field or the sample grew one).
EXPECTED_DROPPED = {
    "check_full": set(),
    "check_raw": {"envoy.config.core.v3.Address.envoy_internal_address"},
    "als_http_full": {
        "envoy.config.core.v3.Node.extensions",
        "envoy.config.core.v3.Node.client_features",
        "envoy.data.accesslog.v3.AccessLogCommon.filter_state_objects",
        "envoy.data.accesslog.v3.AccessLogCommon.intermediate_log_entry",
    },
    "als_tcp": set(),
    "rls_full": set(),
}


def _dict(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _descriptor_of(cls: type[message.Message]) -> descriptor.Descriptor:
    """The message's descriptor (the stubs type ``DESCRIPTOR`` as a upb/python union)."""
    desc = cls.DESCRIPTOR
    assert isinstance(desc, descriptor.Descriptor)
    return desc


def _is_opaque(desc: descriptor.Descriptor | None) -> bool:
    return desc is None or desc.full_name.startswith("google.protobuf.")


def _prune(data: dict[str, Any], desc: descriptor.Descriptor, dropped: set[str]) -> dict[str, Any]:
    """`data` (a MessageToDict of Envoy's message) without the fields `desc` does not declare."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = desc.fields_by_name.get(key)
        if field is None:
            dropped.add(f"{desc.full_name}.{key}")
            continue
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            value_type = sub.fields_by_name["value"].message_type
            if not _is_opaque(value_type):
                assert value_type is not None
                value = {k: _prune(v, value_type, dropped) for k, v in value.items()}
        elif sub is not None and not _is_opaque(sub):
            if field.is_repeated:
                value = [_prune(v, sub, dropped) for v in value]
            else:
                value = _prune(value, sub, dropped)
        out[key] = value
    return out


def _our_file_descriptors() -> descriptor_pb2.FileDescriptorSet:
    fds = descriptor_pb2.FileDescriptorSet()
    for path in sorted((ROOT / "mixer" / "envoy").rglob("*_pb2.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        importlib.import_module(module).DESCRIPTOR.CopyToProto(fds.file.add())
    return fds


def test_schema_matches_envoy(compat_python: Path) -> None:
    fds = _our_file_descriptors()
    assert len(fds.file) == 10
    answer = run_envoy_side(
        "schema", {"fds_b64": base64.b64encode(fds.SerializeToString()).decode()}
    )
    assert answer["mismatches"] == []
    coverage = answer["coverage"]
    assert len(coverage) >= 40
    # Every message is declared whole except these shared ones (docs/envoy-attributes.md).
    partial = {name: tuple(counts) for name, counts in coverage.items() if counts[0] != counts[1]}
    assert partial == {
        "envoy.config.core.v3.Address": (2, 3),
        "envoy.config.core.v3.SocketAddress": (4, 7),
        "envoy.config.core.v3.Node": (6, 11),
        "envoy.data.accesslog.v3.AccessLogCommon": (31, 33),
    }


@pytest.mark.parametrize("name", sorted(EXPECTED_DROPPED))
def test_envoy_encoded_message_decodes_identically(
    name: str, envoy_samples: dict[str, Any]
) -> None:
    sample = envoy_samples[name]
    cls = OURS[sample["type"]]
    ours = cls.FromString(base64.b64decode(sample["b64"]))
    dropped: set[str] = set()
    expected = _prune(sample["dict"], _descriptor_of(cls), dropped)
    assert _dict(ours) == expected
    assert dropped == EXPECTED_DROPPED[name]
    # Undeclared fields ride along as unknown fields: re-encoding loses nothing Envoy sent.
    [back] = run_envoy_side(
        "decode",
        [{"type": sample["type"], "b64": base64.b64encode(ours.SerializeToString()).decode()}],
    )
    assert back["dict"] == sample["dict"]


def _hvo(key: str, value: str, **kwargs: Any) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=key, value=value), **kwargs)


def _struct(data: dict[str, Any]) -> Struct:
    s = Struct()
    s.update(data)
    return s


def _our_responses() -> list[message.Message]:
    ok = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=external_auth_pb2.OkHttpResponse(
            headers=[
                _hvo("x-user", "alice", append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
                _hvo("x-trace", "1", append_action=HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
                _hvo("x-once", "1", append_action=HeaderValueOption.ADD_IF_ABSENT),
                _hvo("x-only", "2", append_action=HeaderValueOption.OVERWRITE_IF_EXISTS),
                _hvo("x-legacy", "3", keep_empty_value=True),
            ],
            headers_to_remove=["authorization", "cookie"],
            response_headers_to_add=[_hvo("x-decision", "allow")],
            query_parameters_to_set=[QueryParameter(key="tenant", value="acme")],
            query_parameters_to_remove=["debug"],
            dynamic_metadata=_struct({"legacy": True}),
        ),
        dynamic_metadata=_struct({"decision_id": "d-1", "rule": {"name": "r1", "hits": 2}}),
    )
    ok.ok_response.headers[4].append.value = False
    denied = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="denied by rule r2"),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=HttpStatus(code=StatusCode.Unauthorized),
            headers=[_hvo("www-authenticate", 'Bearer realm="api"')],
            body='{"error": "unauthorized"}',
        ),
    )
    errored = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.UNAVAILABLE, message="policy store down"),
        error_response=external_auth_pb2.DeniedHttpResponse(
            status=HttpStatus(code=StatusCode.ServiceUnavailable), body="try later"
        ),
    )
    limit = rls_pb2.RateLimitResponse.RateLimit
    rls = rls_pb2.RateLimitResponse(
        overall_code=rls_pb2.RateLimitResponse.OVER_LIMIT,
        statuses=[
            rls_pb2.RateLimitResponse.DescriptorStatus(
                code=rls_pb2.RateLimitResponse.OVER_LIMIT,
                current_limit=limit(name="per-ip", requests_per_unit=10, unit=limit.SECOND),
                limit_remaining=0,
            ),
            rls_pb2.RateLimitResponse.DescriptorStatus(
                code=rls_pb2.RateLimitResponse.OK,
                current_limit=limit(name="weekly", requests_per_unit=1000, unit=limit.WEEK),
                limit_remaining=999,
                quota=rls_pb2.RateLimitResponse.Quota(requests=5, id="q1"),
            ),
        ],
        response_headers_to_add=[HeaderValue(key="x-ratelimit-remaining", value="0")],
        request_headers_to_add=[HeaderValue(key="x-limited", raw_value=b"yes")],
        raw_body=b"slow down\n",
        dynamic_metadata=_struct({"bucket": "per-ip"}),
        quota=rls_pb2.RateLimitResponse.Quota(requests=1, id="all"),
    )
    rls.statuses[0].duration_until_reset.FromTimedelta(datetime.timedelta(milliseconds=750))
    rls.statuses[1].quota.valid_until.FromDatetime(
        datetime.datetime(2026, 3, 5, tzinfo=datetime.UTC)
    )
    return [ok, denied, errored, rls, als_pb2.StreamAccessLogsResponse()]


def test_our_responses_decode_identically_in_envoy(compat_python: Path) -> None:
    responses = _our_responses()
    answers = run_envoy_side(
        "decode",
        [
            {
                "type": r.DESCRIPTOR.full_name,
                "b64": base64.b64encode(r.SerializeToString()).decode(),
            }
            for r in responses
        ],
    )
    for response, answer in zip(responses, answers, strict=True):
        assert answer["unknown"] is False, response.DESCRIPTOR.full_name
        assert answer["dict"] == _dict(response)
    ok_headers = answers[0]["dict"]["ok_response"]["headers"]
    assert [h.get("append_action") for h in ok_headers] == [
        "OVERWRITE_IF_EXISTS_OR_ADD",
        None,  # APPEND_IF_EXISTS_OR_ADD is the zero value: not on the wire
        "ADD_IF_ABSENT",
        "OVERWRITE_IF_EXISTS",
        None,
    ]
    assert ok_headers[4]["append"] is False
    assert answers[1]["dict"]["denied_response"]["status"]["code"] == "Unauthorized"
    assert answers[3]["dict"]["statuses"][1]["current_limit"]["unit"] == "WEEK"


def test_mapping_of_envoy_encoded_check(envoy_samples: dict[str, Any]) -> None:
    req = external_auth_pb2.CheckRequest.FromString(
        base64.b64decode(envoy_samples["check_full"]["b64"])
    )
    bag = bag_from_check_request(req)
    assert bag["source.ip"] == bytes([10, 1, 2, 3])
    assert bag["destination.ip"] == bytes.fromhex("20010db8000000000000000000000007")
    assert bag["destination.port"] == 8443
    assert bag["source.principal"] == "spiffe://cluster.local/ns/default/sa/frontend"
    assert bag["request.url_path"] == "/v1/items"
    assert bag["request.query_params"] == StringMap({"limit": "10", "q": "a%20b"})
    assert bag["request.id"] == "7c1f0e2a-request"
    assert bag["context.protocol"] == "grpc"
    assert bag["destination.service.host"] == "items.default.svc.cluster.local"
    assert bag["request.time"] == datetime.datetime(2026, 3, 4, 5, 6, 7, 123456, datetime.UTC)
    assert bag["connection.requested_server_name"] == "api.example.com"

    raw = external_auth_pb2.CheckRequest.FromString(
        base64.b64decode(envoy_samples["check_raw"]["b64"])
    )
    raw_bag = bag_from_check_request(raw)
    assert raw_bag["request.headers"] == StringMap({":path": "/raw", "accept": "text/html,*/*"})
    assert "source.ip" not in raw_bag
    assert "destination.ip" not in raw_bag
    assert "request.size" not in raw_bag  # -1: unknown


def test_mapping_of_envoy_encoded_access_logs(envoy_samples: dict[str, Any]) -> None:
    http = als_pb2.StreamAccessLogsMessage.FromString(
        base64.b64decode(envoy_samples["als_http_full"]["b64"])
    )
    first, second = bags_from_access_logs(http)
    assert first["context.reporter.kind"] == "outbound"
    assert first["response.code"] == 503
    assert first["context.proxy_error_code"] == "UH,UF,UAEX,DRR"
    assert first["source.principal"] == "spiffe://cluster.local/ns/default/sa/productpage"
    assert first["destination.ip"] == bytes([10, 0, 0, 77])
    assert first["response.duration"] == datetime.timedelta(microseconds=13500)
    assert first["response.grpc_status"] == "14"
    assert second["request.method"] == "GET"
    assert second["context.proxy_error_code"] == "-"

    tcp = als_pb2.StreamAccessLogsMessage.FromString(
        base64.b64decode(envoy_samples["als_tcp"]["b64"])
    )
    periodic, end = bags_from_access_logs(tcp, identifier=http.identifier)
    assert periodic["source.ip"] == bytes([192, 0, 2, 44])
    assert periodic["connection.event"] == "continue"
    assert end["connection.event"] == "close"
    assert end["connection.sent.bytes"] == 8192
    assert end["context.reporter.uid"] == http.identifier.node.id


class _Authz(external_auth_pb2_grpc.AuthorizationServicer):
    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> external_auth_pb2.CheckResponse:
        user = request.attributes.request.http.headers.get("x-user", "")
        if user == "alice":
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[
                        _hvo(
                            "x-auth-user",
                            user,
                            append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                        )
                    ]
                ),
            )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
            denied_response=external_auth_pb2.DeniedHttpResponse(
                status=HttpStatus(code=StatusCode.Forbidden), body=f"no access for {user!r}"
            ),
        )


class _Rls(rls_pb2_grpc.RateLimitServiceServicer):
    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> rls_pb2.RateLimitResponse:
        over = any(e.value == "hot" for d in request.descriptors for e in d.entries)
        code = rls_pb2.RateLimitResponse.OVER_LIMIT if over else rls_pb2.RateLimitResponse.OK
        return rls_pb2.RateLimitResponse(
            overall_code=code,
            statuses=[
                rls_pb2.RateLimitResponse.DescriptorStatus(
                    code=code, limit_remaining=request.hits_addend
                )
                for _ in request.descriptors
            ],
        )


class _Als(als_pb2_grpc.AccessLogServiceServicer):
    def __init__(self) -> None:
        self.log_names: list[str] = []
        self.codes: list[int] = []

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> als_pb2.StreamAccessLogsResponse:
        identifier = None
        async for msg in request_iterator:
            if msg.HasField("identifier"):
                identifier = msg.identifier
                self.log_names.append(identifier.log_name)
            for bag in bags_from_access_logs(msg, identifier):
                code = bag.get("response.code")
                assert isinstance(code, int)
                self.codes.append(code)
        return als_pb2.StreamAccessLogsResponse()


@pytest.mark.integration
async def test_envoy_client_against_our_servicers(compat_python: Path) -> None:
    server = grpc.aio.server()
    als = _Als()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(_Authz(), server)
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(_Rls(), server)
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(als, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    try:
        checks = [
            {"attributes": {"request": {"http": {"headers": {"x-user": user}}}}}
            for user in ("alice", "mallory")
        ]
        allowed, denied = await asyncio.to_thread(run_envoy_client, address, "check", checks)
        assert allowed["ok"] and denied["ok"]
        assert allowed["response"]["status"]["code"] == 0
        assert allowed["response"]["ok_response"]["headers"][0]["header"]["value"] == "alice"
        assert denied["response"]["status"]["code"] == code_pb2.PERMISSION_DENIED
        assert denied["response"]["denied_response"]["status"]["code"] == "Forbidden"
        assert denied["response"]["denied_response"]["body"] == "no access for 'mallory'"

        rls_req = {
            "domain": "api",
            "hits_addend": 2,
            "descriptors": [{"entries": [{"key": "k", "value": "hot"}]}, {"entries": []}],
        }
        answer = await asyncio.to_thread(run_envoy_client, address, "rls", rls_req)
        assert answer["ok"]
        assert answer["response"]["overall_code"] == "OVER_LIMIT"
        assert [s["limit_remaining"] for s in answer["response"]["statuses"]] == [2, 2]

        def stream(log_name: str, codes: list[int]) -> list[dict[str, Any]]:
            first: dict[str, Any] = {"identifier": {"node": {"id": "n"}, "log_name": log_name}}
            messages = [
                {"http_logs": {"log_entry": [{"response": {"response_code": c}}]}} for c in codes
            ]
            return [first | messages[0], *messages[1:]]

        streams = [stream("inbound_a", [200, 201]), stream("outbound_b", [503])]
        answers = await asyncio.to_thread(run_envoy_client, address, "als", streams, hold_s=0.2)
        assert [a["ok"] for a in answers] == [True, True]
        assert answers[0]["response"] == {}
        assert sorted(als.log_names) == ["inbound_a", "outbound_b"]
        assert sorted(als.codes) == [200, 201, 503]
    finally:
        await server.stop(grace=None)

    # With the server gone the client reports the gRPC failure instead of crashing.
    gone = await asyncio.to_thread(run_envoy_client, address, "rls", rls_req, timeout_s=1.0)
    assert gone["ok"] is False
    assert gone["code"] == "UNAVAILABLE"


def test_main_process_never_loads_xds_protos() -> None:
    # xds-protos would shadow google/* and opentelemetry/proto modules: it must stay isolated.
    assert importlib.util.find_spec("envoy") is None
    assert not [m for m in sys.modules if m == "envoy" or m.startswith("envoy.")]
