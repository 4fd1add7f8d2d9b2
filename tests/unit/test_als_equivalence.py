"""The ALS conversion against its frozen slow reference (`tests/als_reference.py`).

`bags_from_access_logs` memoizes, reads fields only when a wanted attribute needs them and
skips protobuf calls where a cheaper read says the same; none of that may change a bag. A
corpus (the mapping tests' messages, the benchmark's stream, the fuzz seeds and randomized
messages: fields set or unset, valid or not, HTTP and TCP, with and without identifiers) is
converted by both:

* without `wanted`, the bags are the reference's: the same names in the same order, equal
  values of the same types, and the same error (type and text) when the reference fails;
* with `wanted`, the bags are the reference's restricted to `wanted`; a message fails only when
  a wanted attribute is made from an invalid field. The reference is run leniently for this
  (an invalid field gives a marker value instead of an error), so "made from" is what the
  reference computes, not a table in this test.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError

import tests.als_reference as ref
from bench import workload
from mixer.attributes import envoy
from mixer.attributes.bag import Bag, StringMap, Value
from mixer.attributes.lazy import LazyStreamAccessLogsMessage
from mixer.envoy.config.core.v3.address_pb2 import Address
from mixer.envoy.config.core.v3.base_pb2 import RequestMethod
from mixer.envoy.data.accesslog.v3.accesslog_pb2 import (
    AccessLogCommon,
    HTTPAccessLogEntry,
    ResponseFlags,
    TCPAccessLogEntry,
)
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.errors import BadRequest
from tests.unit.test_envoy_mapping import HTTP_ENTRY, ISTIO_NODE

Identifier = StreamAccessLogsMessage.Identifier
FUZZ_SEEDS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "envoy"
RANDOM_MESSAGES = 2000

# What the benchmark's telemetry config reads (`RoutingTable.report_names`).
REPORT_NAMES = frozenset(
    [
        "api.protocol",
        "connection.event",
        "connection.mtls",
        "connection.received.bytes",
        "connection.sent.bytes",
        "context.protocol",
        "context.proxy_error_code",
        "context.reporter.kind",
        "destination.labels",
        "destination.namespace",
        "destination.principal",
        "destination.service.host",
        "destination.service.name",
        "destination.service.namespace",
        "destination.workload.name",
        "destination.workload.namespace",
        "request.host",
        "request.size",
        "request.useragent",
        "response.code",
        "response.duration",
        "response.size",
        "source.labels",
        "source.namespace",
        "source.principal",
        "source.workload.name",
        "source.workload.namespace",
    ]
)
IDENTITY_NAMES = [
    "context.reporter.kind",
    "context.reporter.uid",
    "context.proxy_version",
    *(f"{side}.{suffix}" for side in ("source", "destination") for suffix in ("name", "uid")),
    "destination.labels",
    "source.workload.namespace",
]
NAMES = [*envoy._ALS_ATTRIBUTES, *IDENTITY_NAMES, "request.auth.principal", "api.service"]


# ---- the corpus ---------------------------------------------------------------------------


def _random_address(rng: random.Random, msg: Address) -> None:
    choice = rng.randrange(9)
    if choice == 0:
        return  # unset
    if choice == 1:
        msg.pipe.path = "/run/sock"
        return
    sock = msg.socket_address
    sock.address = rng.choice(
        [
            "10.0.0.5", "10.0.0.6", "192.0.2.44", "127.0.0.1", "2001:db8::7", "::ffff:10.1.2.3",
            "010.0.0.1", "host.example", "", "fe80::1%eth0", "10.0.0.256", "1.2.3.4\0",
            f"10.9.{rng.randrange(256)}.{rng.randrange(256)}",
        ]
    )  # fmt: skip
    port = rng.randrange(4)
    if port == 1:
        sock.port_value = rng.choice([80, 9080, 65535])
    elif port == 2:
        sock.port_value = 0  # set, and zero: still a port
    elif port == 3:
        sock.named_port = "http"


def _random_cert(rng: random.Random, cert: Any) -> None:
    for _ in range(rng.randrange(4)):
        san = cert.subject_alt_name.add()
        kind = rng.randrange(4)
        if kind == 0:
            san.uri = rng.choice(["spiffe://td/ns/default/sa/pp", ""])
        elif kind == 1:
            san.dns = rng.choice(["pp.svc", ""])
        elif kind == 2:
            san.uri = "spiffe://td/ns/x/sa/y"
        # kind 3: a SAN with neither
    if rng.random() < 0.5:
        cert.subject = rng.choice(["CN=legacy", ""])


def _random_common(rng: random.Random, common: AccessLogCommon, tcp: bool) -> None:
    for address in (
        common.downstream_remote_address,
        common.downstream_direct_remote_address,
        common.downstream_local_address,
        common.upstream_remote_address,
    ):
        _random_address(rng, address)
    if rng.random() < 0.7:
        tls = common.tls_properties
        if rng.random() < 0.8:
            _random_cert(rng, tls.peer_certificate_properties)
        if rng.random() < 0.5:
            _random_cert(rng, tls.local_certificate_properties)
        if rng.random() < 0.5:
            tls.tls_sni_hostname = rng.choice(["reviews.example.com", ""])
    # Valid, unset, at the edges of the range and out of it (invalid: the message fails when
    # what is made from it is wanted).
    if rng.random() < 0.8:
        common.start_time.seconds = rng.choice(
            [1_772_600_767, 0, -62_135_596_800, 253_402_300_799]
            if rng.random() < 0.95
            else [253_402_300_800, -(2**40)]
        )
        common.start_time.nanos = rng.choice(
            [0, 500_000_000, 999_999_999] if rng.random() < 0.95 else [1_000_000_000, -1]
        )
    for field in ("time_to_last_downstream_tx_byte", "duration"):
        if rng.random() < 0.6:
            span = getattr(common, field)
            span.seconds = rng.choice(
                [0, 2, 86_399_999_999_999, -3] if rng.random() < 0.95 else [10**15, -(10**15)]
            )
            span.nanos = rng.choice([0, 13_500_000, -1_500, 999_999_999])
            if rng.random() < 0.1:
                span.SetInParent()
                span.seconds, span.nanos = 0, 0  # set, and zero
    flags = rng.randrange(4)
    if flags == 1:
        common.response_flags.SetInParent()
    elif flags == 2:
        for flag in rng.sample([f.name for f in ResponseFlags.DESCRIPTOR.fields], 3):
            if flag != "unauthorized_details":
                setattr(common.response_flags, flag, True)
    elif flags == 3:
        common.response_flags.unauthorized_details.reason = rng.randrange(3)  # type: ignore[assignment]
    common.upstream_cluster = rng.choice(
        [
            "", "inbound|9080|http|reviews.default.svc.cluster.local",
            "outbound|9080|v1|ratings.default.svc.cluster.local", "outbound||| ", "plain-cluster",
            "outbound|80||a|b", f"outbound|80||svc-{rng.randrange(3000)}.ns",
        ]
    )  # fmt: skip
    if tcp or rng.random() < 0.3:
        common.stream_id = rng.choice(["conn-7", ""])
        common.access_log_type = rng.randrange(15)  # type: ignore[assignment]


def _random_map(rng: random.Random, target: Any, names: list[str]) -> None:
    for name in rng.sample(names, rng.randrange(len(names) + 1)):
        target[name] = rng.choice(["0", "1", "", "application/grpc+proto", "text/plain", "v"])


def _random_http(rng: random.Random, entry: HTTPAccessLogEntry) -> None:
    _random_common(rng, entry.common_properties, tcp=False)
    req = entry.request
    # 42: no such method
    req.request_method = rng.choice([0, 1, 3, 9] if rng.random() < 0.95 else [42])  # type: ignore[assignment]
    req.scheme = rng.choice(["", "http", "https"])
    req.authority = rng.choice(["", "reviews:9080", "api.example.com", "[2001:db8::1]:443", "a:b"])
    req.path = rng.choice(["", "/", "/a?x=1&y=2&x=3", "/p#frag?no", "/q?=v&&k", "?"])
    for field in ("user_agent", "referer", "forwarded_for", "request_id"):
        if rng.random() < 0.5:
            setattr(req, field, rng.choice(["v", f"{field}-value"]))
    req.request_headers_bytes = rng.randrange(1000)
    req.request_body_bytes = rng.choice([0, 12, 2**40])
    _random_map(
        rng,
        req.request_headers,
        ["Content-Type", "content-type", "User-Agent", "x-request-id", "X-Tenant", "referer"],
    )
    resp = entry.response
    code = rng.randrange(4)
    if code == 1:
        resp.response_code.value = rng.choice([200, 404, 503])
    elif code == 2:
        resp.response_code.SetInParent()  # set, and zero
    resp.response_code_details = rng.choice(["", "via_upstream"])
    resp.response_headers_bytes = rng.randrange(500)
    resp.response_body_bytes = rng.randrange(5000)
    names = ["grpc-status", "Grpc-Status", "grpc-message", "Content-Type", "server"]
    _random_map(rng, resp.response_headers, names)
    _random_map(rng, resp.response_trailers, names)


def _random_tcp(rng: random.Random, entry: TCPAccessLogEntry) -> None:
    _random_common(rng, entry.common_properties, tcp=True)
    if rng.random() < 0.8:
        entry.connection_properties.received_bytes = rng.randrange(10**6)
        entry.connection_properties.sent_bytes = rng.choice([0, 7, 2**50])


def _random_identifier(rng: random.Random) -> Identifier | None:
    if rng.random() < 0.25:
        return None
    ident = Identifier(
        log_name=rng.choice(["", "inbound_http", "outbound", "istio.Outbound-ALS", "x-outbound1"])
    )
    if rng.random() < 0.7:
        ident.node.id = rng.choice(["sidecar~10.0.0.9~reviews", f"node-{rng.randrange(100)}"])
    if rng.random() < 0.5:
        ident.node.user_agent_version = "1.31.0"
    if rng.random() < 0.6:
        metadata: dict[str, Any] = ISTIO_NODE["metadata"]  # type: ignore[assignment]
        keys = rng.sample(sorted(metadata), rng.randrange(8))
        json_format.ParseDict({key: metadata[key] for key in keys}, ident.node.metadata)
        if rng.random() < 0.2:
            ident.node.metadata.fields["LABELS"].string_value = '{"app": "cart", "n": 1}'
    return ident


def _random_message(rng: random.Random) -> tuple[StreamAccessLogsMessage, Identifier | None]:
    msg = StreamAccessLogsMessage()
    own = _random_identifier(rng)
    if own is not None:
        msg.identifier.CopyFrom(own)
    kind = rng.randrange(5)
    if kind < 2:
        for _ in range(rng.randrange(1, 5)):
            _random_http(rng, msg.http_logs.log_entry.add())
    elif kind < 4:
        for _ in range(rng.randrange(1, 5)):
            _random_tcp(rng, msg.tcp_logs.log_entry.add())
    elif rng.random() < 0.5:
        msg.http_logs.SetInParent()
    return msg, _random_identifier(rng)


def _fixed_messages() -> Iterator[tuple[StreamAccessLogsMessage, Identifier | None]]:
    outbound = Identifier(log_name="istio.outbound")
    outbound.node.id = "gw-1"
    node = Identifier(log_name="inbound_http")
    json_format.ParseDict(ISTIO_NODE, node.node)
    entries: list[dict[str, Any]] = [
        HTTP_ENTRY,
        {},
        {"response": {"response_code": 200, "response_headers": {"grpc-status": "14"}}},
        {"response": {"response_trailers": {"grpc-status": "0", "grpc-message": "ok"}}},
    ]
    for identifier in (None, outbound, node):
        for entry in entries:
            yield (
                json_format.ParseDict(
                    {"http_logs": {"log_entry": [entry]}}, StreamAccessLogsMessage()
                ),
                identifier,
            )
        tcp = {"common_properties": {"stream_id": "c", "duration": "1s"}}
        yield (
            json_format.ParseDict(
                {"tcp_logs": {"log_entry": [tcp, {}]}}, StreamAccessLogsMessage()
            ),
            identifier,
        )
    for raw in workload.als_messages(3, "equivalence", entries=5):
        yield StreamAccessLogsMessage.FromString(raw), None
    for seed in sorted(FUZZ_SEEDS.iterdir()):
        data = seed.read_bytes()
        if data and data[0] % 2 == 1:  # the fuzz harness's ALS selector
            with contextlib.suppress(DecodeError):
                yield StreamAccessLogsMessage.FromString(data[1:]), outbound


def _corpus() -> Iterator[tuple[StreamAccessLogsMessage, Identifier | None]]:
    yield from _fixed_messages()
    rng = random.Random(23)
    for _ in range(RANDOM_MESSAGES):
        yield _random_message(rng)


# ---- comparing ----------------------------------------------------------------------------


def _both(
    msg: StreamAccessLogsMessage, identifier: Identifier | None, **kwargs: Any
) -> tuple[list[Bag] | Exception, list[Bag] | Exception]:
    """What `msg`'s wire form converts to as the server parses it (addresses and TLS blocks
    left as bytes: `mixer.attributes.lazy`), and as the generated class parses it (from the
    same bytes: a map's order may change in a round trip)."""
    wire = msg.SerializeToString()
    return (
        _outcome(
            envoy.bags_from_access_logs,
            LazyStreamAccessLogsMessage.FromString(wire),
            identifier,
            **kwargs,
        ),
        _outcome(
            envoy.bags_from_access_logs,
            StreamAccessLogsMessage.FromString(wire),
            identifier,
            **kwargs,
        ),
    )


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> list[Bag] | Exception:
    try:
        bags: list[Bag] = fn(*args, **kwargs)
    except (BadRequest, ValueError) as err:
        return err
    return bags


def _typed(bag: Mapping[str, Value]) -> list[tuple[str, type, object]]:
    """A bag's attributes in order, each with its value's type; maps as ordered item lists."""
    return [
        (name, type(value), list(value.items()) if isinstance(value, StringMap) else value)
        for name, value in bag.items()
    ]


def _same(got: list[Bag] | Exception, expected: list[Bag] | Exception) -> bool:
    if isinstance(expected, Exception) or isinstance(got, Exception):
        return type(got) is type(expected) and str(got) == str(expected)
    return [_typed(b) for b in got] == [_typed(b) for b in expected]


def test_full_conversion_is_the_reference() -> None:
    checked = failures = 0
    for i, (msg, identifier) in enumerate(_corpus()):
        expected = _outcome(ref.bags_from_access_logs, msg, identifier)
        got = _outcome(envoy.bags_from_access_logs, msg, identifier)
        assert _same(got, expected), (i, msg, identifier, got, expected)
        # A second time: from the memos now.
        again = _outcome(envoy.bags_from_access_logs, msg, identifier)
        assert _same(again, expected), (i, "memoized", msg, identifier)
        # As the server parses it: addresses and TLS blocks left as bytes until read.
        assert _same(*_both(msg, identifier)), (i, "lazy", msg, identifier)
        checked += 1
        failures += isinstance(expected, Exception)
    # The corpus exercises both outcomes.
    assert checked > RANDOM_MESSAGES and 50 < failures < checked / 2


def test_every_attribute_has_one_type_in_every_conversion() -> None:
    """The ALS servicer's report session compares entries' values without their types
    (`ReportSession.add_whole(fixed_types=True)`): that holds only while the conversion gives
    each name values of one type, whatever the entry."""
    types: dict[str, set[type]] = {}
    for msg, identifier in _corpus():
        got = _outcome(envoy.bags_from_access_logs, msg, identifier)
        if isinstance(got, Exception):
            continue
        for bag in got:
            for name, value in bag.items():
                types.setdefault(name, set()).add(type(value))
    assert len(types) > 40
    assert {name: kinds for name, kinds in types.items() if len(kinds) > 1} == {}


# ---- the lenient reference: invalid fields as markers --------------------------------------


class Invalid:
    """What an invalid field makes, in place of the error; anything made from it is one too."""

    def __add__(self, other: object) -> Invalid:
        return self

    __radd__ = __add__


class _Datetime(datetime.datetime):
    """A start time whose sum with a duration past year 9999 is `Invalid`, not an error."""

    def __add__(self, other: object) -> Any:
        if isinstance(other, Invalid):
            return other
        try:
            return datetime.datetime.__add__(self, other)  # type: ignore[operator]
        except OverflowError:
            return Invalid()


class _Methods:
    METHOD_UNSPECIFIED = 0

    @staticmethod
    def Name(number: int) -> object:
        try:
            return RequestMethod.Name(number)  # type: ignore[arg-type]
        except ValueError:
            return Invalid()


@contextlib.contextmanager
def _lenient() -> Iterator[None]:
    real_time, real_span = ref._time, ref._span
    real_methods = ref.RequestMethod  # type: ignore[attr-defined]

    def time(ts: Any, where: str) -> Any:
        try:
            value = real_time(ts, where)
        except BadRequest:
            return Invalid()
        return _Datetime.combine(value.date(), value.timetz())

    def span(d: Any, where: str) -> Any:
        try:
            return real_span(d, where)
        except BadRequest:
            return Invalid()

    ref._time, ref._span = time, span
    ref.RequestMethod = _Methods  # type: ignore[attr-defined,assignment]
    try:
        yield
    finally:
        ref._time, ref._span = real_time, real_span
        ref.RequestMethod = real_methods  # type: ignore[attr-defined]


def _plain(value: Value) -> Value:
    if isinstance(value, _Datetime):
        return datetime.datetime.combine(value.date(), value.timetz())
    return value


def _wanted_sets(rng: random.Random) -> Iterator[frozenset[str]]:
    yield REPORT_NAMES
    yield frozenset()
    yield frozenset(NAMES)
    for _ in range(4):
        yield frozenset(rng.sample(NAMES, rng.randrange(1, len(NAMES))))
    for name in rng.sample(NAMES, 3):
        yield frozenset([name])


def test_wanted_conversion_is_the_reference_restricted() -> None:
    rng = random.Random(1523)
    spared = 0
    for i, (msg, identifier) in enumerate(_corpus()):
        with _lenient():
            lenient = ref.bags_from_access_logs(msg, identifier)
        for wanted in _wanted_sets(rng):
            restricted = [
                {name: _plain(value) for name, value in bag.items() if name in wanted}
                for bag in lenient
            ]
            got = _outcome(envoy.bags_from_access_logs, msg, identifier, wanted=wanted)
            assert _same(*_both(msg, identifier, wanted=wanted)), (i, sorted(wanted), "lazy", msg)
            invalid = any(isinstance(v, Invalid) for bag in restricted for v in bag.values())
            if invalid:
                assert isinstance(got, (BadRequest, ValueError)), (i, sorted(wanted), msg)
                continue
            assert not isinstance(got, Exception), (i, sorted(wanted), msg, got)
            assert [_typed(b) for b in got] == [_typed(b) for b in restricted], (
                i,
                sorted(wanted),
                msg,
                identifier,
            )
            spared += any(isinstance(v, Invalid) for bag in lenient for v in bag.values())
    # Messages the full conversion refuses, accepted because nothing wanted is invalid.
    assert spared > 50


def test_lenient_reference_fails_exactly_where_the_reference_does() -> None:
    # The markers stand for the reference's errors, no more and no fewer.
    for msg, identifier in _corpus():
        strict = _outcome(ref.bags_from_access_logs, msg, identifier)
        with _lenient():
            lenient = ref.bags_from_access_logs(msg, identifier)
        invalid = any(isinstance(v, Invalid) for bag in lenient for v in bag.values())
        assert invalid == isinstance(strict, Exception), (msg, strict)


# ---- the memos' bounds ----------------------------------------------------------------------


def _http_message(address: str, cluster: str, node_id: str) -> StreamAccessLogsMessage:
    msg = StreamAccessLogsMessage()
    msg.identifier.node.id = node_id
    common = msg.http_logs.log_entry.add().common_properties
    common.downstream_remote_address.socket_address.address = address
    common.upstream_cluster = cluster
    return msg


def test_memos_stay_bounded() -> None:
    for i in range(3 * envoy._MEMO_ENTRIES):
        ip = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        [bag] = envoy.bags_from_access_logs(
            _http_message(ip, f"outbound|80||svc-{i}.ns", f"node-{i}")
        )
        assert bag["source.ip"] == bytes([10, i // 65536, i // 256 % 256, i % 256])
        assert bag["destination.service.host"] == f"svc-{i}.ns"
        assert len(envoy._IPS) <= envoy._MEMO_ENTRIES
        assert len(envoy._CLUSTERS) <= envoy._MEMO_ENTRIES
        assert len(envoy._SHARED) <= envoy._IDENTIFIERS_KEPT
    # Texts past their bound are converted, not kept.
    long_text = "x" * (envoy._MEMO_TEXT + 1)
    big_node = "n" * envoy._IDENTIFIER_BYTES
    [bag] = envoy.bags_from_access_logs(_http_message(long_text, long_text, big_node))
    assert "source.ip" not in bag and bag["context.reporter.uid"] == big_node
    assert long_text not in envoy._IPS and long_text not in envoy._CLUSTERS
    assert all(len(key) <= envoy._IDENTIFIER_BYTES for key in envoy._SHARED)


@pytest.mark.parametrize("wanted", [None, REPORT_NAMES])
def test_memoized_identity_is_not_changed_by_entries(wanted: frozenset[str] | None) -> None:
    # Every entry starts from the memoized identifier attributes: a bag must be a copy.
    msg = _http_message("10.0.0.1", "plain", "node-shared")
    first = envoy.bags_from_access_logs(msg, wanted=wanted)
    second = envoy.bags_from_access_logs(msg, wanted=wanted)
    assert first == second and first[0] is not second[0]
    _, shared = envoy._shared(msg.identifier)
    assert set(shared) == {"context.reporter.uid", "context.reporter.kind"}


def test_lazy_fields_are_parsed_where_read_and_malformed_ones_refused() -> None:
    """The server's ALS type keeps addresses and TLS blocks as bytes: a malformed one that a
    wanted attribute needs is refused naming it; one that nothing reads goes unnoticed (the
    documented difference from the generated class, which refuses the whole message)."""
    for field, needs, where in (
        ("downstream_remote_address", "source.ip", "common_properties: an address"),
        ("tls_properties", "source.principal", "common_properties.tls_properties"),
    ):
        msg = LazyStreamAccessLogsMessage()
        entry = msg.http_logs.log_entry.add()
        entry.response.response_code.value = 200
        setattr(entry.common_properties, field, b"\x0a\x7f")  # a field longer than the message
        wire = msg.SerializeToString()
        with pytest.raises(DecodeError):
            StreamAccessLogsMessage.FromString(wire)
        lazy = LazyStreamAccessLogsMessage.FromString(wire)
        bags = envoy.bags_from_access_logs(lazy, None, wanted=frozenset({"response.code"}))
        assert [dict(b) for b in bags] == [{"response.code": 200}]
        with pytest.raises(BadRequest, match=f"^{re.escape(where)}: cannot decode"):
            envoy.bags_from_access_logs(lazy, None, wanted=frozenset({needs}))
