"""The Envoy side of the compatibility tests: runs ONLY inside the isolated venv with xds-protos.

Never import this from the service or the main test process (xds-protos would shadow other
packages' ``google``/``opentelemetry`` modules there). The main process calls it as

    <compat-venv>/bin/python tests/compat/envoy_side.py OP < request.json > answer.json

OPs (request and answer are JSON):

``samples``
    No input. Fully populated Envoy messages built with Envoy's own generated code, including
    fields our subset does not declare. Answer: ``{name: {"type", "b64", "dict"}}`` where ``b64``
    is the wire encoding and ``dict`` is ``MessageToDict(preserving_proto_field_name=True)``.
``decode``
    Input ``[{"type": full message name, "b64": wire bytes}]``. Answer: one ``dict`` per item,
    decoded with Envoy's classes, plus ``"unknown"``: whether Envoy saw fields it does not know.
``schema``
    Input ``{"fds_b64": serialized FileDescriptorSet of our protos}``. Answer:
    ``{"mismatches": [...], "coverage": {message: [declared, envoy_total]}}`` comparing every
    declared field, enum value and RPC with Envoy's descriptors.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc  # noqa: F401 (registers service)
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc  # noqa: F401
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc  # noqa: F401
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message, message_factory

# A DER-less stand-in is enough: Envoy sends the certificate as an opaque URL-encoded string.
_CERT = "-----BEGIN%20CERTIFICATE-----%0AMIIB...%0A-----END%20CERTIFICATE-----%0A"

CHECK_FULL: dict[str, Any] = {
    "attributes": {
        "source": {
            "address": {"socket_address": {"address": "10.1.2.3", "port_value": 45678}},
            "service": "frontend",
            "labels": {"app": "frontend", "version": "v1"},
            "principal": "spiffe://cluster.local/ns/default/sa/frontend",
            "certificate": _CERT,
        },
        "destination": {
            "address": {
                "socket_address": {"protocol": "TCP", "address": "2001:db8::7", "port_value": 8443}
            },
            "service": "items",
            "labels": {"app": "items"},
            "principal": "spiffe://cluster.local/ns/default/sa/items",
        },
        "request": {
            "time": "2026-03-04T05:06:07.123456Z",
            "http": {
                "id": "9876543210",
                "method": "POST",
                "headers": {
                    ":authority": "api.example.com:8443",
                    ":method": "POST",
                    ":path": "/v1/items?limit=10&q=a%20b&limit=20",
                    "content-type": "application/grpc+proto",
                    "user-agent": "grpc-go/1.60",
                    "referer": "https://example.com/start",
                    "x-request-id": "7c1f0e2a-request",
                    "x-forwarded-for": "192.0.2.10",
                },
                "header_map": {
                    "headers": [{"key": "x-raw", "raw_value": base64.b64encode(b"raw").decode()}]
                },
                "path": "/v1/items?limit=10&q=a%20b&limit=20",
                "host": "api.example.com:8443",
                "scheme": "https",
                "query": "",
                "fragment": "",
                "size": 5,
                "protocol": "HTTP/2",
                "body": "hello",
                "raw_body": base64.b64encode(b"\x00hello").decode(),
            },
        },
        "context_extensions": {
            "destination.service.host": "items.default.svc.cluster.local",
            "tenant": "acme",
        },
        "metadata_context": {
            "filter_metadata": {
                "envoy.filters.http.jwt_authn": {"payload": {"sub": "alice", "admin": True}}
            },
            "typed_filter_metadata": {
                "example.typed": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": "typed",
                }
            },
        },
        "route_metadata_context": {"filter_metadata": {"route": {"name": "items-route"}}},
        "tls_session": {"sni": "api.example.com"},
    }
}

# Raw-header mode, a Unix-socket peer and an Envoy-internal destination (a oneof member our
# subset does not declare: it must survive as an unknown field).
CHECK_RAW: dict[str, Any] = {
    "attributes": {
        "source": {"address": {"pipe": {"path": "/run/app.sock", "mode": 438}}},
        "destination": {
            "address": {
                "envoy_internal_address": {
                    "server_listener_name": "internal_listener",
                    "endpoint_id": "ep-1",
                }
            }
        },
        "request": {
            "http": {
                "id": "1",
                "method": "GET",
                "header_map": {
                    "headers": [
                        {"key": ":path", "raw_value": base64.b64encode(b"/raw").decode()},
                        {"key": "Accept", "raw_value": base64.b64encode(b"text/html").decode()},
                        {"key": "accept", "raw_value": base64.b64encode(b"*/*").decode()},
                    ]
                },
                "path": "/raw",
                "host": "raw.example.com",
                "scheme": "http",
                "size": "-1",
                "protocol": "HTTP/1.1",
            }
        },
    }
}

_COMMON_FULL: dict[str, Any] = {
    "sample_rate": 0.5,
    "downstream_remote_address": {"socket_address": {"address": "10.0.0.5", "port_value": 5555}},
    "downstream_local_address": {"socket_address": {"address": "10.0.0.9", "port_value": 8080}},
    "tls_properties": {
        "tls_version": "TLSv1_3",
        "tls_cipher_suite": 4865,
        "tls_sni_hostname": "reviews.example.com",
        "local_certificate_properties": {
            "subject_alt_name": [{"uri": "spiffe://cluster.local/ns/default/sa/reviews"}],
            "subject": "CN=reviews",
            "issuer": "CN=ca",
        },
        "peer_certificate_properties": {
            "subject_alt_name": [
                {"dns": "productpage.default.svc"},
                {"uri": "spiffe://cluster.local/ns/default/sa/productpage"},
            ],
            "subject": "CN=productpage",
            "issuer": "CN=ca",
        },
        "tls_session_id": "abcdef",
        "ja3_fingerprint": "771,4865-4866,0-23,29,0",
    },
    "start_time": "2026-03-04T05:06:07.500Z",
    "time_to_last_rx_byte": "0.001s",
    "time_to_first_upstream_tx_byte": "0.002s",
    "time_to_last_upstream_tx_byte": "0.003s",
    "time_to_first_upstream_rx_byte": "0.010s",
    "time_to_last_upstream_rx_byte": "0.011s",
    "time_to_first_downstream_tx_byte": "0.012s",
    "time_to_last_downstream_tx_byte": "0.0135s",
    "upstream_remote_address": {"socket_address": {"address": "10.0.0.77", "port_value": 9080}},
    "upstream_local_address": {"socket_address": {"address": "10.0.0.9", "port_value": 40000}},
    "upstream_cluster": "outbound|9080|v1|reviews.default.svc.cluster.local",
    "response_flags": {
        "no_healthy_upstream": True,
        "upstream_connection_failure": True,
        "unauthorized_details": {"reason": "EXTERNAL_SERVICE"},
        "downstream_remote_reset": True,
    },
    "metadata": {"filter_metadata": {"envoy.filters.http.ext_authz": {"decision": "d-1"}}},
    "upstream_transport_failure_reason": "tls error",
    "route_name": "reviews-route",
    "downstream_direct_remote_address": {
        "socket_address": {"address": "10.0.0.6", "port_value": 6666}
    },
    "filter_state_objects": {
        "state": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x"}
    },
    "custom_tags": {"team": "reviews"},
    "duration": "0.020s",
    "upstream_request_attempt_count": 2,
    "connection_termination_details": "idle",
    "stream_id": "stream-42",
    "intermediate_log_entry": True,
    "downstream_transport_failure_reason": "none",
    "downstream_wire_bytes_sent": "1000",
    "downstream_wire_bytes_received": "2000",
    "upstream_wire_bytes_sent": "3000",
    "upstream_wire_bytes_received": "4000",
    "access_log_type": "DownstreamEnd",
}

ALS_HTTP_FULL: dict[str, Any] = {
    "identifier": {
        "node": {
            "id": "sidecar~10.0.0.9~reviews-v1.default~default.svc.cluster.local",
            "cluster": "reviews.default",
            "metadata": {"ISTIO_VERSION": "1.4.0"},
            "locality": {"region": "eu", "zone": "eu-1a", "sub_zone": "rack1"},
            "user_agent_name": "envoy",
            "user_agent_version": "1.31.0",
            "extensions": [{"name": "envoy.access_loggers.http_grpc", "category": "x"}],
            "client_features": ["feature"],
        },
        "log_name": "outbound_http",
    },
    "http_logs": {
        "log_entry": [
            {
                "common_properties": _COMMON_FULL,
                "protocol_version": "HTTP2",
                "request": {
                    "request_method": "PATCH",
                    "scheme": "https",
                    "authority": "reviews:9080",
                    "port": 9080,
                    "path": "/reviews/1?full=true&lang=en",
                    "user_agent": "curl/8.0",
                    "referer": "https://example.com/",
                    "forwarded_for": "192.0.2.1",
                    "request_id": "req-1",
                    "original_path": "/api/reviews/1?full=true&lang=en",
                    "request_headers_bytes": "300",
                    "request_body_bytes": "12",
                    "request_headers": {"content-type": "application/json", "X-Tenant": "acme"},
                    "upstream_header_bytes_sent": "310",
                    "downstream_header_bytes_received": "320",
                },
                "response": {
                    "response_code": 503,
                    "response_headers_bytes": "200",
                    "response_body_bytes": "95",
                    "response_headers": {"content-type": "text/plain", "grpc-status": "14"},
                    "response_trailers": {"grpc-message": "unavailable"},
                    "response_code_details": "upstream_reset_before_response_started",
                    "upstream_header_bytes_received": "210",
                    "downstream_header_bytes_sent": "220",
                },
            },
            {
                "common_properties": {"start_time": "2026-03-04T05:06:08Z", "duration": "0.5s"},
                "protocol_version": "HTTP11",
                "request": {"request_method": "GET", "path": "/"},
                "response": {"response_code": 200},
            },
        ]
    },
}

ALS_TCP: dict[str, Any] = {
    "tcp_logs": {
        "log_entry": [
            {
                "common_properties": {
                    "downstream_remote_address": {
                        "socket_address": {"address": "::ffff:192.0.2.44", "port_value": 1234}
                    },
                    "upstream_remote_address": {
                        "socket_address": {"address": "10.9.9.9", "port_value": 6379}
                    },
                    "start_time": "2026-03-04T05:00:00Z",
                    "duration": "10s",
                    "stream_id": "conn-7",
                    "access_log_type": "TcpPeriodic",
                    "upstream_cluster": "redis",
                },
                "connection_properties": {"received_bytes": "1024", "sent_bytes": "2048"},
            },
            {
                "common_properties": {
                    "start_time": "2026-03-04T05:00:00Z",
                    "duration": "12s",
                    "stream_id": "conn-7",
                    "access_log_type": "TcpConnectionEnd",
                },
                "connection_properties": {"received_bytes": "4096", "sent_bytes": "8192"},
            },
        ]
    }
}

RLS_FULL: dict[str, Any] = {
    "domain": "api",
    "descriptors": [
        {
            "entries": [
                {"key": "remote_address", "value": "10.0.0.5"},
                {"key": "path", "value": "/v1/items"},
            ],
            "limit": {"requests_per_unit": 42, "unit": "MINUTE"},
            "hits_addend": "0",
        },
        {"entries": [{"key": "tenant", "value": "acme"}], "hits_addend": "7"},
        {"entries": [{"key": "generic_key", "value": "global"}]},
    ],
    "hits_addend": 3,
}

SAMPLES: dict[str, tuple[type[message.Message], dict[str, Any]]] = {
    "check_full": (external_auth_pb2.CheckRequest, CHECK_FULL),
    "check_raw": (external_auth_pb2.CheckRequest, CHECK_RAW),
    "als_http_full": (als_pb2.StreamAccessLogsMessage, ALS_HTTP_FULL),
    "als_tcp": (als_pb2.StreamAccessLogsMessage, ALS_TCP),
    "rls_full": (rls_pb2.RateLimitRequest, RLS_FULL),
}


def _to_dict(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def samples() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (cls, data) in SAMPLES.items():
        msg = json_format.ParseDict(data, cls())
        out[name] = {
            "type": msg.DESCRIPTOR.full_name,
            "b64": base64.b64encode(msg.SerializeToString()).decode(),
            "dict": _to_dict(msg),
        }
    return out


def decode(items: list[dict[str, str]]) -> list[dict[str, Any]]:
    pool = descriptor_pool.Default()
    out = []
    for item in items:
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(item["type"]))
        msg = cls.FromString(base64.b64decode(item["b64"]))
        out.append({"dict": _to_dict(msg), "unknown": _has_unknown(msg)})
    return out


def _has_unknown(msg: message.Message) -> bool:
    """Whether Envoy's classes met fields they do not declare (anywhere in the tree)."""
    stripped = type(msg)()
    stripped.CopyFrom(msg)
    stripped.DiscardUnknownFields()
    return stripped.ByteSize() != msg.ByteSize()


_LABEL_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED


def _json_name(name: str) -> str:
    """protoc's default JSON name: drop each '_' and upper-case the letter after it."""
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def schema(fds_b64: str) -> dict[str, Any]:
    """Compare our declarations with Envoy's descriptors of the same full names."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(fds_b64))
    pool = descriptor_pool.Default()
    mismatches: list[str] = []
    coverage: dict[str, list[int]] = {}

    def enum(prefix: str, proto: descriptor_pb2.EnumDescriptorProto) -> None:
        name = f"{prefix}.{proto.name}"
        try:
            theirs = pool.FindEnumTypeByName(name)
        except KeyError:
            mismatches.append(f"enum {name}: not in Envoy")
            return
        for value in proto.value:
            their = theirs.values_by_name.get(value.name)
            if their is None or their.number != value.number:
                mismatches.append(
                    f"enum value {name}.{value.name}={value.number}: Envoy has "
                    f"{None if their is None else their.number}"
                )

    def msg(prefix: str, proto: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{proto.name}"
        try:
            theirs = pool.FindMessageTypeByName(name)
        except KeyError:
            mismatches.append(f"message {name}: not in Envoy")
            return
        if not proto.options.map_entry:
            coverage[name] = [len(proto.field), len(theirs.fields)]
        for field in proto.field:
            their = theirs.fields_by_name.get(field.name)
            where = f"field {name}.{field.name}"
            if their is None:
                mismatches.append(f"{where}: not in Envoy")
                continue
            if their.number != field.number:
                mismatches.append(f"{where}: number {field.number} != Envoy {their.number}")
            if their.type != field.type:
                mismatches.append(f"{where}: type {field.type} != Envoy {their.type}")
            if their.is_repeated != (field.label == _LABEL_REPEATED):
                mismatches.append(f"{where}: repeated differs")
            their_type = their.message_type or their.enum_type
            their_name = their_type.full_name if their_type else ""
            ours_type = field.type_name.lstrip(".")
            if their_name != ours_type:
                mismatches.append(f"{where}: type name {ours_type} != Envoy {their_name}")
            json_name = field.json_name if field.HasField("json_name") else _json_name(field.name)
            if their.json_name != json_name:
                mismatches.append(f"{where}: json name {json_name} != {their.json_name}")
            ours_oneof = (
                proto.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None
            )
            their_oneof = their.containing_oneof.name if their.containing_oneof else None
            if ours_oneof != their_oneof:
                mismatches.append(f"{where}: oneof {ours_oneof} != Envoy {their_oneof}")
        for nested in proto.nested_type:
            msg(name, nested)
        for nested_enum in proto.enum_type:
            enum(name, nested_enum)

    for file in fds.file:
        for enum_proto in file.enum_type:
            enum(file.package, enum_proto)
        for msg_proto in file.message_type:
            msg(file.package, msg_proto)
        for service in file.service:
            name = f"{file.package}.{service.name}"
            try:
                theirs = pool.FindServiceByName(name)
            except KeyError:
                mismatches.append(f"service {name}: not in Envoy")
                continue
            for method in service.method:
                their = theirs.methods_by_name.get(method.name)
                shape = (
                    method.input_type.lstrip("."),
                    method.output_type.lstrip("."),
                    method.client_streaming,
                    method.server_streaming,
                )
                their_shape = (
                    (
                        their.input_type.full_name,
                        their.output_type.full_name,
                        their.client_streaming,
                        their.server_streaming,
                    )
                    if their
                    else None
                )
                if shape != their_shape:
                    mismatches.append(f"rpc {name}/{method.name}: {shape} != Envoy {their_shape}")
    return {"mismatches": mismatches, "coverage": coverage}


def main() -> int:
    op = sys.argv[1] if len(sys.argv) > 1 else ""
    if op == "samples":
        answer: Any = samples()
    elif op == "decode":
        answer = decode(json.load(sys.stdin))
    elif op == "schema":
        answer = schema(json.load(sys.stdin)["fds_b64"])
    else:
        print(f"usage: {sys.argv[0]} samples|decode|schema", file=sys.stderr)
        return 2
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
