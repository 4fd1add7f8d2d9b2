"""mixer.attributes.envoy: Envoy ext_authz / ALS messages -> Istio-named attribute bags."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.envoy import (
    bag_from_check_request,
    bags_from_access_logs,
    proxy_error_code,
    reporter_kind,
)
from mixer.envoy.config.core.v3.address_pb2 import Address, Pipe, SocketAddress
from mixer.envoy.config.core.v3.base_pb2 import HeaderValue
from mixer.envoy.data.accesslog.v3.accesslog_pb2 import ResponseFlags
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.envoy.service.auth.v3.attribute_context_pb2 import AttributeContext
from mixer.envoy.service.auth.v3.external_auth_pb2 import CheckRequest

UTC = datetime.UTC
DOC = Path(__file__).resolve().parents[2] / "docs" / "envoy-attributes.md"


def _check(**attributes: object) -> CheckRequest:
    return json_format.ParseDict({"attributes": attributes}, CheckRequest())


def _als(data: dict[str, object]) -> StreamAccessLogsMessage:
    return json_format.ParseDict(data, StreamAccessLogsMessage())


def _sock(address: str, port: int) -> dict[str, object]:
    return {"socket_address": {"address": address, "port_value": port}}


FULL_CHECK = _check(
    source={
        "address": _sock("10.1.2.3", 45678),
        "principal": "spiffe://cluster.local/ns/default/sa/frontend",
        "labels": {"app": "frontend"},
        "service": "frontend",
    },
    destination={
        "address": _sock("2001:db8::7", 8443),
        "principal": "spiffe://cluster.local/ns/default/sa/items",
        "labels": {"app": "items", "version": "v2"},
    },
    request={
        "time": "2026-03-04T05:06:07.250Z",
        "http": {
            "id": "12345",
            "method": "POST",
            "headers": {
                "Content-Type": "application/json",
                "user-agent": "curl/8.0",
                "referer": "https://example.com/",
                "x-request-id": "req-abc",
                ":authority": "api.example.com:8443",
            },
            "path": "/v1/items?limit=10&q=a%20b&limit=20&flag&=x#frag",
            "host": "api.example.com:8443",
            "scheme": "https",
            "size": "42",
            "protocol": "HTTP/1.1",
        },
    },
    context_extensions={"tenant": "acme", "destination.service.namespace": "shop"},
    tls_session={"sni": "api.example.com"},
)


def test_check_request_full() -> None:
    bag = bag_from_check_request(FULL_CHECK)
    assert dict(bag) == {
        "context.reporter.kind": "inbound",
        "source.ip": bytes([10, 1, 2, 3]),
        "source.port": 45678,
        "source.principal": "spiffe://cluster.local/ns/default/sa/frontend",
        "source.labels": StringMap({"app": "frontend"}),
        "destination.ip": bytes.fromhex("20010db8000000000000000000000007"),
        "destination.port": 8443,
        "destination.principal": "spiffe://cluster.local/ns/default/sa/items",
        "destination.labels": StringMap({"app": "items", "version": "v2"}),
        "connection.mtls": True,
        "connection.requested_server_name": "api.example.com",
        "request.time": datetime.datetime(2026, 3, 4, 5, 6, 7, 250000, UTC),
        "context.extensions": StringMap(
            {"tenant": "acme", "destination.service.namespace": "shop"}
        ),
        "destination.service.namespace": "shop",
        "request.headers": StringMap(
            {
                "content-type": "application/json",
                "user-agent": "curl/8.0",
                "referer": "https://example.com/",
                "x-request-id": "req-abc",
                ":authority": "api.example.com:8443",
            }
        ),
        "request.method": "POST",
        "request.scheme": "https",
        "request.host": "api.example.com:8443",
        "request.path": "/v1/items?limit=10&q=a%20b&limit=20&flag&=x#frag",
        "request.url_path": "/v1/items",
        "request.query_params": StringMap({"limit": "10", "q": "a%20b", "flag": "", "": "x"}),
        "request.id": "req-abc",
        "request.size": 42,
        "request.useragent": "curl/8.0",
        "request.referer": "https://example.com/",
        "context.protocol": "http",
        "destination.service.host": "api.example.com",
    }
    assert isinstance(bag, Bag)
    assert isinstance(bag["request.time"], datetime.datetime)
    assert bag["request.time"].utcoffset() == datetime.timedelta(0)


def test_check_request_empty_has_only_constants() -> None:
    bag = bag_from_check_request(CheckRequest())
    assert dict(bag) == {
        "context.reporter.kind": "inbound",
        "connection.mtls": False,
        "context.protocol": "tcp",
    }


def test_check_grpc_protocol_and_request_id_fallback() -> None:
    req = _check(
        request={
            "http": {
                "id": "777",
                "headers": {"content-type": "application/grpc+proto"},
                "size": "-1",
            }
        }
    )
    bag = bag_from_check_request(req)
    assert bag["context.protocol"] == "grpc"
    assert bag["request.id"] == "777"
    assert "request.size" not in bag
    assert "request.path" not in bag
    assert "destination.service.host" not in bag


def test_check_raw_header_map_merges_duplicates() -> None:
    req = CheckRequest()
    http = req.attributes.request.http
    http.header_map.headers.extend(
        [
            HeaderValue(key="Accept", raw_value=b"text/html"),
            HeaderValue(key="accept", raw_value=b"*/*"),
            HeaderValue(key="x-bad", raw_value=b"\xff"),
            HeaderValue(key="x-plain", value="v"),
        ]
    )
    bag = bag_from_check_request(req)
    assert bag["request.headers"] == StringMap(
        {"accept": "text/html,*/*", "x-bad": "\ufffd", "x-plain": "v"}
    )


def _ip(address: str, port: int = 1) -> Address:
    return Address(socket_address=SocketAddress(address=address, port_value=port))


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (_ip("::ffff:192.0.2.9"), bytes([192, 0, 2, 9])),
        (_ip("::1"), bytes(15) + b"\x01"),
        (_ip("fe80::1%eth0"), bytes.fromhex("fe800000000000000000000000000001")),
        (_ip("svc.local"), None),
        (_ip("192.0.2.9"), bytes([192, 0, 2, 9])),
        (_ip("192.0.2.09"), None),  # leading zeros are ambiguous (octal?); ipaddress refuses
        (_ip("192.0.2"), None),
        (_ip("2001:db\x00::7"), None),
        (_ip("10.0.0.1\x00"), None),
        (Address(socket_address=SocketAddress(address="10.0.0.1", named_port="http")), b"\n\0\0\1"),
        (Address(pipe=Pipe(path="/run/x.sock")), None),
        (Address(), None),
    ],
)
def test_peer_address_forms(address: Address, expected: bytes | None) -> None:
    req = CheckRequest()
    req.attributes.source.address.CopyFrom(address)
    bag = bag_from_check_request(req)
    assert bag.get("source.ip") == expected
    has_port = address.socket_address.WhichOneof("port_specifier") == "port_value"
    assert ("source.port" in bag) == (expected is not None and has_port)


def test_check_mtls_from_certificate_only() -> None:
    assert bag_from_check_request(_check(source={"certificate": "PEM"}))["connection.mtls"] is True
    assert bag_from_check_request(_check(source={"service": "x"}))["connection.mtls"] is False


@pytest.mark.parametrize(
    ("host", "service_host"),
    [
        ("example.com", "example.com"),
        ("example.com:80", "example.com"),
        ("[2001:db8::1]:443", "[2001:db8::1]"),
        ("[2001:db8::1]", "[2001:db8::1]"),
        ("2001:db8::1", "2001:db8::1"),
        ("example.com:http", "example.com:http"),
    ],
)
def test_destination_service_host_from_host(host: str, service_host: str) -> None:
    bag = bag_from_check_request(_check(request={"http": {"host": host}}))
    assert bag["destination.service.host"] == service_host


def test_context_extension_wins_for_service_host() -> None:
    req = _check(
        request={"http": {"host": "public.example.com"}},
        context_extensions={"destination.service.host": "items.shop.svc.cluster.local"},
    )
    assert bag_from_check_request(req)["destination.service.host"] == (
        "items.shop.svc.cluster.local"
    )


HTTP_ENTRY = {
    "common_properties": {
        "downstream_remote_address": _sock("10.0.0.5", 5555),
        "downstream_direct_remote_address": _sock("10.0.0.6", 6666),
        "downstream_local_address": _sock("10.0.0.9", 8080),
        "upstream_remote_address": _sock("10.0.0.77", 9080),
        "tls_properties": {
            "tls_sni_hostname": "reviews.example.com",
            "local_certificate_properties": {
                "subject_alt_name": [{"uri": "spiffe://td/ns/default/sa/reviews"}],
            },
            "peer_certificate_properties": {
                "subject_alt_name": [{"dns": "pp.svc"}, {"uri": "spiffe://td/ns/default/sa/pp"}],
                "subject": "CN=pp",
            },
        },
        "start_time": "2026-03-04T05:06:07.500Z",
        "time_to_last_downstream_tx_byte": "0.0135s",
        "duration": "0.020s",
        "upstream_cluster": "inbound|9080|http|reviews.default.svc.cluster.local",
        "response_flags": {"no_route_found": True, "failed_local_healthcheck": True},
    },
    "request": {
        "request_method": "PATCH",
        "scheme": "https",
        "authority": "reviews:9080",
        "path": "/reviews/1?full=true",
        "user_agent": "curl/8.0",
        "referer": "https://example.com/",
        "forwarded_for": "192.0.2.1",
        "request_id": "req-1",
        "request_headers_bytes": "300",
        "request_body_bytes": "12",
        "request_headers": {"X-Tenant": "acme", "user-agent": "logged-ua"},
    },
    "response": {
        "response_code": 201,
        "response_headers_bytes": "200",
        "response_body_bytes": "95",
        "response_headers": {"Content-Type": "text/plain"},
        "response_code_details": "via_upstream",
    },
}


def test_http_entry_full_inbound() -> None:
    msg = _als(
        {
            "identifier": {
                "node": {"id": "sidecar~10.0.0.9~reviews", "user_agent_version": "1.31.0"},
                "log_name": "inbound_http",
            },
            "http_logs": {"log_entry": [HTTP_ENTRY]},
        }
    )
    [bag] = bags_from_access_logs(msg)
    start = datetime.datetime(2026, 3, 4, 5, 6, 7, 500000, UTC)
    assert dict(bag) == {
        "context.reporter.kind": "inbound",
        "context.reporter.uid": "sidecar~10.0.0.9~reviews",
        "context.proxy_version": "1.31.0",
        "source.ip": bytes([10, 0, 0, 5]),
        "source.port": 5555,
        "destination.ip": bytes([10, 0, 0, 9]),
        "destination.port": 8080,
        "source.principal": "spiffe://td/ns/default/sa/pp",
        "destination.principal": "spiffe://td/ns/default/sa/reviews",
        "connection.mtls": True,
        "connection.requested_server_name": "reviews.example.com",
        "request.time": start,
        "response.duration": datetime.timedelta(microseconds=13500),
        "response.time": start + datetime.timedelta(microseconds=13500),
        "context.proxy_error_code": "LH,NR",
        "destination.service.host": "reviews.default.svc.cluster.local",
        "request.headers": StringMap(
            {
                "x-tenant": "acme",
                "user-agent": "logged-ua",
                "referer": "https://example.com/",
                "x-forwarded-for": "192.0.2.1",
                "x-request-id": "req-1",
            }
        ),
        "request.method": "PATCH",
        "request.scheme": "https",
        "request.host": "reviews:9080",
        "request.path": "/reviews/1?full=true",
        "request.url_path": "/reviews/1",
        "request.query_params": StringMap({"full": "true"}),
        "request.useragent": "curl/8.0",
        "request.referer": "https://example.com/",
        "request.id": "req-1",
        "request.size": 12,
        "request.total_size": 312,
        "response.headers": StringMap({"content-type": "text/plain"}),
        "response.code": 201,
        "response.code_details": "via_upstream",
        "response.size": 95,
        "response.total_size": 295,
        "context.protocol": "http",
    }


def test_http_entry_outbound_uses_upstream_as_destination() -> None:
    msg = _als(
        {"identifier": {"log_name": "istio.outbound"}, "http_logs": {"log_entry": [HTTP_ENTRY]}}
    )
    [bag] = bags_from_access_logs(msg)
    assert bag["context.reporter.kind"] == "outbound"
    assert bag["destination.ip"] == bytes([10, 0, 0, 77])
    assert bag["destination.port"] == 9080
    assert "destination.principal" not in bag
    assert bag["source.principal"] == "spiffe://td/ns/default/sa/pp"


def test_http_entry_minimal_and_fallbacks() -> None:
    entry = {
        "common_properties": {
            "downstream_direct_remote_address": _sock("10.0.0.6", 6666),
            "upstream_remote_address": _sock("10.0.0.77", 9080),
            "start_time": "2026-03-04T05:06:07Z",
            "duration": "2s",
            "tls_properties": {"peer_certificate_properties": {"subject": "CN=legacy"}},
            "upstream_cluster": "plain-cluster",
        },
        "request": {
            "authority": "api.example.com:443",
            "request_headers": {"content-type": "application/grpc"},
        },
        "response": {"response_trailers": {"grpc-status": "0", "grpc-message": "ok"}},
    }
    [bag] = bags_from_access_logs(_als({"http_logs": {"log_entry": [entry]}}))
    assert bag["context.reporter.kind"] == "inbound"
    assert bag["source.ip"] == bytes([10, 0, 0, 6])  # direct address when no remote one
    assert bag["destination.ip"] == bytes([10, 0, 0, 77])  # upstream when no local one
    assert bag["source.principal"] == "CN=legacy"
    assert bag["response.duration"] == datetime.timedelta(seconds=2)
    assert bag["response.time"] == datetime.datetime(2026, 3, 4, 5, 6, 9, tzinfo=UTC)
    assert bag["context.proxy_error_code"] == "-"
    assert bag["destination.service.host"] == "api.example.com"
    assert bag["response.grpc_status"] == "0"
    assert bag["response.grpc_message"] == "ok"
    assert bag["context.protocol"] == "grpc"
    for absent in ("response.code", "request.method", "request.path", "context.reporter.uid"):
        assert absent not in bag
    assert bag["request.size"] == 0


def test_grpc_status_in_headers_for_trailers_only_response() -> None:
    entry = {"response": {"response_code": 200, "response_headers": {"grpc-status": "14"}}}
    [bag] = bags_from_access_logs(_als({"http_logs": {"log_entry": [entry]}}))
    assert bag["response.grpc_status"] == "14"
    assert bag["context.protocol"] == "grpc"


def test_tcp_entries_events_and_bytes() -> None:
    def entry(kind: str, received: int, sent: int) -> dict[str, object]:
        return {
            "common_properties": {
                "downstream_remote_address": _sock("192.0.2.44", 1234),
                "downstream_local_address": _sock("10.1.1.1", 6379),
                "start_time": "2026-03-04T05:00:00Z",
                "duration": "10s",
                "stream_id": "conn-7",
                "access_log_type": kind,
            },
            "connection_properties": {"received_bytes": str(received), "sent_bytes": str(sent)},
        }

    msg = _als(
        {
            "tcp_logs": {
                "log_entry": [
                    entry("TcpUpstreamConnected", 0, 0),
                    entry("TcpPeriodic", 10, 20),
                    entry("TcpConnectionEnd", 30, 40),
                    entry("NotSet", 50, 60),
                ]
            }
        }
    )
    identifier = StreamAccessLogsMessage.Identifier(log_name="tcp_outbound")
    identifier.node.id = "gw-1"
    bags = bags_from_access_logs(msg, identifier=identifier)
    assert [b["connection.event"] for b in bags] == ["open", "continue", "close", "close"]
    periodic = bags[1]
    assert periodic["context.protocol"] == "tcp"
    assert periodic["context.reporter.kind"] == "outbound"
    assert periodic["context.reporter.uid"] == "gw-1"
    assert periodic["connection.received.bytes"] == 10
    assert periodic["connection.received.bytes_total"] == 10
    assert periodic["connection.sent.bytes"] == 20
    assert periodic["connection.sent.bytes_total"] == 20
    assert periodic["connection.id"] == "conn-7"
    assert periodic["connection.duration"] == datetime.timedelta(seconds=10)
    assert periodic["connection.mtls"] is False
    # Outbound: the destination is the upstream side; there is none here, so the local one.
    assert periodic["destination.ip"] == bytes([10, 1, 1, 1])
    assert "response.code" not in periodic


def test_message_identifier_wins_over_remembered_one() -> None:
    msg = _als({"identifier": {"log_name": "inbound"}, "tcp_logs": {"log_entry": [{}]}})
    remembered = StreamAccessLogsMessage.Identifier(log_name="outbound")
    [bag] = bags_from_access_logs(msg, identifier=remembered)
    assert bag["context.reporter.kind"] == "inbound"


def test_message_without_entries() -> None:
    assert bags_from_access_logs(StreamAccessLogsMessage()) == []
    assert bags_from_access_logs(_als({"http_logs": {}})) == []


@pytest.mark.parametrize(
    ("log_name", "kind"),
    [
        ("outbound", "outbound"),
        ("outbound_http", "outbound"),
        ("istio.Outbound-ALS", "outbound"),
        ("outboundish", "inbound"),
        ("inbound_http", "inbound"),
        ("inbound-and-outbound", "inbound"),
        ("", "inbound"),
    ],
)
def test_reporter_kind(log_name: str, kind: str) -> None:
    assert reporter_kind(log_name) == kind


def test_proxy_error_code_all_flags_in_envoy_order() -> None:
    flags = ResponseFlags()
    for field in flags.DESCRIPTOR.fields:
        if field.name != "unauthorized_details":
            setattr(flags, field.name, True)
    flags.unauthorized_details.reason = ResponseFlags.Unauthorized.EXTERNAL_SERVICE
    assert proxy_error_code(flags) == (
        "LH,UH,UT,LR,UR,UF,UC,UO,NR,DI,FI,RL,UAEX,RLSE,DC,URX,SI,IH,DPE,UMSDR,RFCF,NFCF,DT,UPE,"
        "NC,OM,DF,DRR"
    )
    assert proxy_error_code(ResponseFlags()) == "-"
    unspecified = ResponseFlags()
    unspecified.unauthorized_details.SetInParent()
    assert proxy_error_code(unspecified) == "-"


def test_every_produced_attribute_is_documented() -> None:
    documented: set[str] = set()
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            documented.update(re.findall(r"`([a-z][a-z0-9._]*)`", line.split("|")[1]))
    produced: set[str] = set(bag_from_check_request(FULL_CHECK))
    produced |= set(bag_from_check_request(_check(request={"http": {"host": "h"}})))
    grpc_entry = {"response": {"response_trailers": {"grpc-status": "1", "grpc-message": "m"}}}
    http = _als(
        {
            "identifier": {"node": {"id": "n", "user_agent_version": "1"}, "log_name": "x"},
            "http_logs": {"log_entry": [HTTP_ENTRY, grpc_entry]},
        }
    )
    for bag in bags_from_access_logs(http):
        produced |= set(bag)
    tcp_entry = {"common_properties": {"stream_id": "c", "duration": "1s"}}
    tcp = _als({"tcp_logs": {"log_entry": [tcp_entry]}})
    for bag in bags_from_access_logs(tcp):
        produced |= set(bag)
    assert produced - documented == set()


def test_timestamp_conversion_is_utc_aware() -> None:
    req = CheckRequest()
    ts = Timestamp()
    ts.FromDatetime(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    req.attributes.request.time.CopyFrom(ts)
    assert bag_from_check_request(req)["request.time"] == datetime.datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=UTC
    )


def test_attribute_context_peer_labels_are_copied() -> None:
    peer = AttributeContext.Peer(labels={"a": "1"})
    req = CheckRequest()
    req.attributes.destination.CopyFrom(peer)
    bag = bag_from_check_request(req)
    peer.labels["a"] = "2"
    req.attributes.destination.labels["a"] = "3"
    assert bag["destination.labels"] == StringMap({"a": "1"})


def test_check_dynamic_and_route_metadata_are_reachable_as_string_maps() -> None:
    req = CheckRequest()
    meta = req.attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"]
    meta.update({"sub": "alice", "groups": ["a", "b"], "admin": True})
    req.attributes.route_metadata_context.filter_metadata["mixer"].update({"tier": "gold"})
    bag = bag_from_check_request(req)
    assert bag["context.metadata"] == StringMap(
        {
            "envoy.filters.http.jwt_authn.sub": "alice",
            "envoy.filters.http.jwt_authn.groups": '["a","b"]',
            "envoy.filters.http.jwt_authn.admin": "true",
        }
    )
    assert bag["context.route_metadata"] == StringMap({"mixer.tier": "gold"})


ISTIO_NODE = {
    "id": "sidecar~10.44.0.9~reviews-v2-56c4-k9q.default~default.svc.cluster.local",
    "metadata": {
        "NAME": "reviews-v2-56c4-k9q",
        "NAMESPACE": "default",
        "WORKLOAD_NAME": "reviews-v2",
        "OWNER": "kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v2",
        "LABELS": {"app": "reviews", "version": "v2"},
        "SERVICE_ACCOUNT": "bookinfo-reviews",
        "ISTIO_VERSION": "1.4.10",
    },
}
NODE_IDENTITY = {
    "name": "reviews-v2-56c4-k9q",
    "namespace": "default",
    "workload.namespace": "default",
    "workload.name": "reviews-v2",
    "owner": "kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v2",
    "serviceAccount": "bookinfo-reviews",
    "labels": StringMap({"app": "reviews", "version": "v2"}),
    "uid": "kubernetes://reviews-v2-56c4-k9q.default",
    "workload.uid": "istio://default/workloads/reviews-v2",
}


@pytest.mark.parametrize(
    ("log_name", "side"), [("inbound_http", "destination"), ("outbound", "source")]
)
def test_istio_node_metadata_names_the_reporting_side(log_name: str, side: str) -> None:
    msg = _als(
        {
            "identifier": {"node": ISTIO_NODE, "log_name": log_name},
            "http_logs": {"log_entry": [HTTP_ENTRY]},
        }
    )
    [bag] = bags_from_access_logs(msg)
    for suffix, expected in NODE_IDENTITY.items():
        assert bag[f"{side}.{suffix}"] == expected, suffix
    other = "source" if side == "destination" else "destination"
    assert not any(f"{other}.{suffix}" in bag for suffix in NODE_IDENTITY)


def test_node_metadata_labels_as_json_text_and_partial_metadata() -> None:
    node = {"id": "n", "metadata": {"NAMESPACE": "shop", "LABELS": '{"app": "cart", "n": 1}'}}
    msg = _als(
        {"identifier": {"node": node, "log_name": "inbound"}, "tcp_logs": {"log_entry": [{}]}}
    )
    [bag] = bags_from_access_logs(msg)
    assert bag["destination.labels"] == StringMap({"app": "cart"})
    assert bag["destination.namespace"] == "shop"
    # Without NAME and WORKLOAD_NAME there is no uid to build.
    assert "destination.uid" not in bag and "destination.workload.uid" not in bag
    assert "destination.workload.name" not in bag
