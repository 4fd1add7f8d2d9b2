"""Regenerate the seed corpora in ``tests/fuzz/corpus/<harness>/`` from valid inputs.

Seeds let the fuzzer start deep: real messages, real config files, real expressions. Run from the
repository root after changing a harness's input format::

    .venv/bin/python tests/fuzz/make_corpus.py

Sources: messages built here; the repository's ``rules/`` and ``tests/unit/rules_bad/`` configs and
the Istio samples in ``corpus/istio`` of the shared data directory (``MIXER_SHARED_DIR``, default
``../shared``); the expressions of the expression unit tests and a deterministic sample of the
cel-spec conformance cases (``corpus/cel-spec``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from google.protobuf import json_format

from mixer.attributes.bag import StringMap
from mixer.attributes.compressed import encode, encode_report
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from mixer.v1 import mixer_pb2
from tests.fuzz._harness import CORPUS
from tests.shared_data import shared_path

ROOT = Path(__file__).resolve().parents[2]
SHARED = shared_path("corpus")  # MIXER_SHARED_DIR; tests/shared_data.py
MAX_CONFIG_BYTES = 16 * 1024
CEL_SPEC_SAMPLE = 200

T0 = datetime.datetime(2026, 3, 4, 5, 6, 7, 250000, tzinfo=datetime.UTC)
BAGS: list[dict[str, object]] = [
    {
        "source.ip": bytes([10, 1, 2, 3]),
        "destination.ip": bytes.fromhex("20010db8000000000000000000000007"),
        "source.uid": "kubernetes://productpage-v1-123.default",
        "destination.service.host": "ratings.default.svc.cluster.local",
        "destination.labels": StringMap({"app": "ratings", "version": "v1"}),
        "request.headers": StringMap({":path": "/ratings/0", "x-request-id": "abc", "zz": "q"}),
        "request.size": 120,
        "response.code": 200,
        "connection.mtls": True,
        "request.time": T0,
        "response.duration": datetime.timedelta(milliseconds=13, microseconds=500),
        "context.protocol": "http",
        "custom.ratio": 0.25,
        "custom.blob": b"\x00\x01binary",
    },
    {"context.reporter.kind": "outbound", "request.path": "/", "response.code": 503},
    {},
]


def _sock(address: str, port: int) -> dict[str, object]:
    return {"socket_address": {"address": address, "port_value": port}}


CHECKS: list[dict[str, object]] = [
    {
        "source": {
            "address": _sock("10.1.2.3", 45678),
            "principal": "spiffe://cluster.local/ns/default/sa/frontend",
            "labels": {"app": "frontend"},
        },
        "destination": {"address": _sock("2001:db8::7", 8443), "labels": {"app": "items"}},
        "request": {
            "time": "2026-03-04T05:06:07.250Z",
            "http": {
                "id": "12345",
                "method": "POST",
                "headers": {
                    "content-type": "application/grpc",
                    "user-agent": "curl/8.0",
                    "x-request-id": "req-abc",
                },
                "path": "/v1/items?limit=10&q=a%20b&flag&=x#frag",
                "host": "api.example.com:8443",
                "scheme": "https",
                "size": "42",
            },
        },
        "context_extensions": {"tenant": "acme", "destination.service.host": "items.shop.svc"},
        "tls_session": {"sni": "api.example.com"},
    },
    {
        "source": {"address": _sock("::ffff:192.0.2.9", 1)},
        "request": {
            "http": {
                "header_map": {
                    "headers": [
                        {"key": "Host", "value": "[::1]:80"},
                        {"key": "x-a", "raw_value": "AQI="},
                        {"key": "X-A", "value": "second"},
                    ]
                },
                "path": "/",
            }
        },
    },
    {"source": {"address": {"pipe": {"path": "/tmp/sock"}}, "certificate": "PEM"}},
]

HTTP_ENTRY: dict[str, object] = {
    "common_properties": {
        "downstream_remote_address": _sock("10.0.0.5", 5555),
        "downstream_local_address": _sock("10.0.0.9", 8080),
        "upstream_remote_address": _sock("10.0.0.77", 9080),
        "tls_properties": {
            "tls_sni_hostname": "reviews.example.com",
            "local_certificate_properties": {"subject_alt_name": [{"uri": "spiffe://td/sa/r"}]},
            "peer_certificate_properties": {
                "subject_alt_name": [{"dns": "pp.svc"}, {"uri": "spiffe://td/sa/pp"}],
                "subject": "CN=pp",
            },
        },
        "start_time": "2026-03-04T05:06:07.500Z",
        "time_to_last_downstream_tx_byte": "0.0135s",
        "duration": "0.020s",
        "upstream_cluster": "outbound|9080|v1|reviews.default.svc.cluster.local",
        "response_flags": {
            "no_route_found": True,
            "unauthorized_details": {"reason": "EXTERNAL_SERVICE"},
        },
    },
    "request": {
        "request_method": "PATCH",
        "scheme": "https",
        "authority": "reviews:9080",
        "path": "/reviews/1?full=true",
        "user_agent": "curl/8.0",
        "forwarded_for": "192.0.2.1",
        "request_id": "req-1",
        "request_headers_bytes": "300",
        "request_body_bytes": "12",
        "request_headers": {"X-Tenant": "acme", "content-type": "application/grpc"},
    },
    "response": {
        "response_code": 201,
        "response_headers_bytes": "200",
        "response_body_bytes": "95",
        "response_headers": {"grpc-status": "0"},
        "response_trailers": {"grpc-status": "14", "grpc-message": "unavailable"},
        "response_code_details": "via_upstream",
    },
}
TCP_ENTRY: dict[str, object] = {
    "common_properties": {
        "downstream_direct_remote_address": _sock("10.0.0.6", 6666),
        "upstream_remote_address": _sock("10.0.0.8", 3306),
        "access_log_type": "TcpPeriodic",
        "stream_id": "conn-7",
        "duration": "1.5s",
    },
    "connection_properties": {"received_bytes": "1000", "sent_bytes": "20"},
}
IDENTIFIER = {"node": {"id": "sidecar~10.0.0.9~reviews", "user_agent_version": "1.31"}}
ALS: list[dict[str, object]] = [
    {
        "identifier": {**IDENTIFIER, "log_name": "inbound_http"},
        "http_logs": {"log_entry": [HTTP_ENTRY]},
    },
    {
        "identifier": {**IDENTIFIER, "log_name": "outbound_tcp"},
        "tcp_logs": {"log_entry": [TCP_ENTRY]},
    },
    {"http_logs": {"log_entry": [HTTP_ENTRY, {}]}},
    {},
]


def decoder_seeds() -> Iterator[bytes]:
    """Selector byte + CompressedAttributes / mixer CheckRequest / ReportRequest."""
    for attrs in BAGS:
        yield b"\x00" + encode(attrs).SerializeToString()
        check = mixer_pb2.CheckRequest(attributes=encode(attrs), deduplication_id="d-1")
        check.global_word_count = 151
        check.quotas["requestcount"].amount = 1
        yield b"\x01" + check.SerializeToString()
    for delta in (False, True):
        batch = [BAGS[0], {**BAGS[0], "response.code": 404, "request.size": 7}]
        yield b"\x02" + encode_report(batch, delta=delta).SerializeToString()
    yield b"\x02" + encode_report(BAGS, global_word_count=100).SerializeToString()


def envoy_seeds() -> Iterator[bytes]:
    """Selector byte + ext_authz CheckRequest (0) or ALS StreamAccessLogsMessage (1)."""
    for attributes in CHECKS:
        msg = json_format.ParseDict({"attributes": attributes}, CheckRequest())
        yield b"\x00" + msg.SerializeToString()
    for data in ALS:
        yield b"\x01" + json_format.ParseDict(data, StreamAccessLogsMessage()).SerializeToString()


def config_seeds() -> Iterator[bytes]:
    """Config files: ours, the deliberately broken ones of the unit tests, Istio's samples."""
    roots = [
        ROOT / "rules",
        ROOT / "tests" / "unit" / "rules_bad",
        SHARED / "istio" / "bookinfo-policy",
        SHARED / "istio" / "bookinfo-telemetry",
        SHARED / "istio" / "mixer-testdata-config",
    ]
    for root in roots:
        for path in sorted(root.rglob("*.yaml")):
            data = path.read_bytes()
            if len(data) <= MAX_CONFIG_BYTES:
                yield data


def _expressions() -> Iterator[tuple[str, str]]:
    """(dialect, text) from the expression unit tests and the cel-spec conformance cases."""
    from tests.unit import test_expr_cel, test_expr_mixer

    for text, _ in test_expr_mixer.CASES:
        yield "mixer", text
    for _, text in test_expr_mixer.CORPUS_EXPRESSIONS:
        yield "mixer", text
    for text, _ in test_expr_cel.CASES:
        yield "cel", text
    files = json.loads((SHARED / "cel-spec" / "cases.json").read_text())
    cases = [case["expr"] for file in files for case in file["cases"]]
    step = max(1, len(cases) // CEL_SPEC_SAMPLE)
    for text in cases[::step]:
        yield "cel", text


def expr_seeds() -> Iterator[bytes]:
    """Dialect byte (0 mixer, 1 cel), vocabulary flag byte, expression text."""
    for dialect, text in _expressions():
        head = bytes([0 if dialect == "mixer" else 1, 1])
        yield head + text.encode()


def _write(name: str, seeds: Iterable[bytes]) -> int:
    directory = CORPUS / name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    written = set()
    for data in seeds:
        digest = hashlib.sha1(data).hexdigest()
        if digest not in written:
            (directory / digest).write_bytes(data)
            written.add(digest)
    return len(written)


def main() -> None:
    """Write every harness's seeds, replacing the old ones."""
    for name, seeds in (
        ("decoder", decoder_seeds()),
        ("envoy", envoy_seeds()),
        ("config", config_seeds()),
        ("expr", expr_seeds()),
    ):
        print(f"{name}: {_write(name, seeds)} seeds")


if __name__ == "__main__":
    main()
