"""A frozen copy of `mixer.attributes.envoy`'s ALS conversion as it was before it was made
cheap (commit 51fa435): the slow reference that `tests/unit/test_als_equivalence.py` compares
the fast conversion with. Do not optimise it; it is the definition of the right answer.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
from collections.abc import Mapping

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from mixer.attributes.bag import Bag, StringMap, Value
from mixer.attributes.node_identity import node_attributes, side_of
from mixer.envoy.config.core.v3.address_pb2 import Address
from mixer.envoy.config.core.v3.base_pb2 import RequestMethod
from mixer.envoy.data.accesslog.v3.accesslog_pb2 import (
    AccessLogCommon,
    AccessLogType,
    HTTPAccessLogEntry,
    ResponseFlags,
    TCPAccessLogEntry,
    TLSProperties,
)
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.errors import BadRequest

# Envoy's %RESPONSE_FLAGS% short codes, in the order Envoy prints them (ResponseFlagUtils).
_RESPONSE_FLAG_CODES: tuple[tuple[str, str], ...] = (
    ("failed_local_healthcheck", "LH"),
    ("no_healthy_upstream", "UH"),
    ("upstream_request_timeout", "UT"),
    ("local_reset", "LR"),
    ("upstream_remote_reset", "UR"),
    ("upstream_connection_failure", "UF"),
    ("upstream_connection_termination", "UC"),
    ("upstream_overflow", "UO"),
    ("no_route_found", "NR"),
    ("delay_injected", "DI"),
    ("fault_injected", "FI"),
    ("rate_limited", "RL"),
    ("unauthorized_details", "UAEX"),
    ("rate_limit_service_error", "RLSE"),
    ("downstream_connection_termination", "DC"),
    ("upstream_retry_limit_exceeded", "URX"),
    ("stream_idle_timeout", "SI"),
    ("invalid_envoy_request_headers", "IH"),
    ("downstream_protocol_error", "DPE"),
    ("upstream_max_stream_duration_reached", "UMSDR"),
    ("response_from_cache_filter", "RFCF"),
    ("no_filter_config_found", "NFCF"),
    ("duration_timeout", "DT"),
    ("upstream_protocol_error", "UPE"),
    ("no_cluster_found", "NC"),
    ("overload_manager", "OM"),
    ("dns_resolution_failure", "DF"),
    ("downstream_remote_reset", "DRR"),
)

_TCP_EVENTS = {
    AccessLogType.TcpUpstreamConnected: "open",
    AccessLogType.TcpPeriodic: "continue",
    AccessLogType.TcpConnectionEnd: "close",
}

# Istio cluster names: "outbound|9080|v1|reviews.default.svc.cluster.local" (and "inbound|...").
_ISTIO_CLUSTER = re.compile(r"^(?:inbound|outbound)\|\d*\|[^|]*\|(?P<host>[^|]+)$")
_WORD = re.compile(r"[a-z0-9]+")
_UTC = datetime.UTC


def bags_from_access_logs(
    msg: StreamAccessLogsMessage,
    identifier: StreamAccessLogsMessage.Identifier | None = None,
) -> list[Bag]:
    """One bag per HTTP or TCP entry of an ALS stream message.

    Envoy sends the identifier only in the first message of each stream: the caller keeps it and
    passes it for the later messages (the message's own identifier wins when present).
    """
    ident = msg.identifier if msg.HasField("identifier") else identifier
    shared: dict[str, Value] = {}
    kind = "inbound"
    if ident is not None:
        kind = reporter_kind(ident.log_name)
        if ident.node.id:
            shared["context.reporter.uid"] = ident.node.id
        if ident.node.user_agent_version:
            shared["context.proxy_version"] = ident.node.user_agent_version
        # The reporting proxy's own identity; an entry's attributes are set over it.
        shared.update(node_attributes(ident.node.metadata, side_of(kind)))
    shared["context.reporter.kind"] = kind
    which = msg.WhichOneof("log_entries")
    if which == "http_logs":
        return [_http_entry(shared, kind, e) for e in msg.http_logs.log_entry]
    if which == "tcp_logs":
        return [_tcp_entry(shared, kind, e) for e in msg.tcp_logs.log_entry]
    return []


def reporter_kind(log_name: str) -> str:
    """``"outbound"`` when the ALS log name has the word "outbound" in it, else ``"inbound"``.

    Words are runs of lower-case letters and digits, so "outbound_http", "istio.outbound" and
    "Outbound-ALS" are outbound while "outboundish" is not.
    """
    words = _WORD.findall(log_name.lower())
    return "outbound" if "outbound" in words and "inbound" not in words else "inbound"


def proxy_error_code(flags: ResponseFlags) -> str:
    """Envoy's %RESPONSE_FLAGS% text: short codes joined with "," or "-" when none is set."""
    if not flags.ListFields():  # the common case, answered without testing 28 fields
        return "-"
    codes = [code for field, code in _RESPONSE_FLAG_CODES if _flag_set(flags, field)]
    return ",".join(codes) if codes else "-"


def _flag_set(flags: ResponseFlags, field: str) -> bool:
    if field == "unauthorized_details":
        return flags.unauthorized_details.reason == ResponseFlags.Unauthorized.EXTERNAL_SERVICE
    return bool(getattr(flags, field))


def _address(out: dict[str, Value], side: str, address: Address) -> bool:
    """Set ``<side>.ip`` and ``<side>.port``; False when the address is not an IP socket."""
    if address.WhichOneof("address") != "socket_address":
        return False
    socket = address.socket_address
    ip = _ip_bytes(socket.address)
    if ip is None:
        return False
    out[f"{side}.ip"] = ip
    if socket.WhichOneof("port_specifier") == "port_value":
        out[f"{side}.port"] = socket.port_value
    return True


def _ip_bytes(text: str) -> bytes | None:
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # not IPv4, or a NUL in the text
        pass
    else:
        # A canonical dotted quad (the common case) skips ipaddress; anything else, such as
        # leading zeros, gets ipaddress's stricter reading below.
        if socket.inet_ntop(socket.AF_INET, packed) == text:
            return packed
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # Dual-stack listeners report IPv4 peers as ::ffff:a.b.c.d; rules compare against ip("a.b.c.d").
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.packed
    return ip.packed


def _http_entry(shared: Mapping[str, Value], kind: str, entry: HTTPAccessLogEntry) -> Bag:
    out = dict(shared)
    _common(out, kind, entry.common_properties)
    req = entry.request
    headers = _lower_keys(req.request_headers)
    # Envoy logs these headers in dedicated fields; keep them reachable through request.headers.
    for name, value in (
        ("user-agent", req.user_agent),
        ("referer", req.referer),
        ("x-forwarded-for", req.forwarded_for),
        ("x-request-id", req.request_id),
    ):
        if value and name not in headers:
            headers[name] = value
    out["request.headers"] = StringMap._adopt(headers)
    if req.request_method != RequestMethod.METHOD_UNSPECIFIED:
        out["request.method"] = RequestMethod.Name(req.request_method)
    _set_str(out, "request.scheme", req.scheme)
    _set_str(out, "request.host", req.authority)
    _path(out, req.path)
    _set_str(out, "request.useragent", req.user_agent)
    _set_str(out, "request.referer", req.referer)
    _set_str(out, "request.id", req.request_id)
    out["request.size"] = req.request_body_bytes
    out["request.total_size"] = req.request_headers_bytes + req.request_body_bytes

    resp = entry.response
    response_headers = _lower_keys(resp.response_headers)
    out["response.headers"] = StringMap._adopt(response_headers)
    if resp.HasField("response_code"):
        out["response.code"] = resp.response_code.value
    _set_str(out, "response.code_details", resp.response_code_details)
    out["response.size"] = resp.response_body_bytes
    out["response.total_size"] = resp.response_headers_bytes + resp.response_body_bytes
    trailers = _lower_keys(resp.response_trailers)
    # gRPC status travels in trailers, or in headers for trailers-only responses.
    grpc_status = trailers.get("grpc-status") or response_headers.get("grpc-status", "")
    grpc_message = trailers.get("grpc-message") or response_headers.get("grpc-message", "")
    _set_str(out, "response.grpc_status", grpc_status)
    _set_str(out, "response.grpc_message", grpc_message)

    grpc = grpc_status != "" or headers.get("content-type", "").startswith("application/grpc")
    out["context.protocol"] = "grpc" if grpc else "http"
    if "destination.service.host" not in out and req.authority:
        out["destination.service.host"] = _strip_port(req.authority)
    return Bag(out)


def _tcp_entry(shared: Mapping[str, Value], kind: str, entry: TCPAccessLogEntry) -> Bag:
    out = dict(shared)
    common = entry.common_properties
    _common(out, kind, common)
    out["context.protocol"] = "tcp"
    conn = entry.connection_properties
    # Envoy's counts are connection totals; a pure mapping has no per-connection state to turn
    # them into Istio's since-last-report deltas, so both names carry the total.
    out["connection.received.bytes"] = conn.received_bytes
    out["connection.received.bytes_total"] = conn.received_bytes
    out["connection.sent.bytes"] = conn.sent_bytes
    out["connection.sent.bytes_total"] = conn.sent_bytes
    out["connection.event"] = _TCP_EVENTS.get(common.access_log_type, "close")
    _set_str(out, "connection.id", common.stream_id)
    if common.HasField("duration"):
        out["connection.duration"] = _span(common.duration, "common_properties.duration")
    return Bag(out)


def _common(out: dict[str, Value], kind: str, common: AccessLogCommon) -> None:
    """Addresses, identities, timing and flags shared by HTTP and TCP entries."""
    if not _address(out, "source", common.downstream_remote_address):
        _address(out, "source", common.downstream_direct_remote_address)
    # An inbound proxy fronts the destination (its local address is the workload's); an outbound
    # one forwards to it (the upstream host is the destination).
    local, upstream = common.downstream_local_address, common.upstream_remote_address
    first, second = (local, upstream) if kind == "inbound" else (upstream, local)
    if not _address(out, "destination", first):
        _address(out, "destination", second)

    tls = common.tls_properties
    peer = _cert_principal(tls.peer_certificate_properties)
    if peer:
        out["source.principal"] = peer
    local_principal = _cert_principal(tls.local_certificate_properties)
    if local_principal and kind == "inbound":
        out["destination.principal"] = local_principal
    out["connection.mtls"] = bool(peer)
    _set_str(out, "connection.requested_server_name", tls.tls_sni_hostname)

    start = (
        _time(common.start_time, "common_properties.start_time")
        if common.HasField("start_time")
        else None
    )
    if start is not None:
        out["request.time"] = start
    duration = _response_duration(common)
    if duration is not None:
        out["response.duration"] = duration
        if start is not None:
            try:
                out["response.time"] = start + duration
            except OverflowError:
                raise BadRequest(
                    "common_properties: start_time plus the duration is past the year 9999"
                ) from None
    out["context.proxy_error_code"] = proxy_error_code(common.response_flags)
    match = _ISTIO_CLUSTER.match(common.upstream_cluster)
    if match:
        out["destination.service.host"] = match["host"]


def _response_duration(common: AccessLogCommon) -> datetime.timedelta | None:
    """Start to the last byte sent downstream; the stream's whole lifetime when that is unset."""
    if common.HasField("time_to_last_downstream_tx_byte"):
        return _span(
            common.time_to_last_downstream_tx_byte,
            "common_properties.time_to_last_downstream_tx_byte",
        )
    if common.HasField("duration"):
        return _span(common.duration, "common_properties.duration")
    return None


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
# What a protobuf Timestamp may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_TIMESTAMP_SECONDS = range(-62_135_596_800, 253_402_300_800)


def _time(ts: Timestamp, where: str) -> datetime.datetime:
    """A protobuf Timestamp as UTC datetime (microseconds, truncated); BadRequest when it is
    outside the range a Timestamp may hold."""
    seconds, nanos = ts.seconds, ts.nanos
    if seconds not in _TIMESTAMP_SECONDS or not 0 <= nanos < 1_000_000_000:
        raise BadRequest(
            f"{where}: invalid timestamp: seconds {seconds} must be in [-62135596800, "
            f"253402300799] and nanos {nanos} in [0, 999999999]"
        )
    return _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)


def _span(d: Duration, where: str) -> datetime.timedelta:
    """A protobuf Duration as timedelta (microseconds, rounded toward zero); BadRequest when it
    is out of timedelta's range."""
    nanos = d.nanos
    micros = nanos // 1000 if nanos >= 0 else -(-nanos // 1000)
    try:
        return datetime.timedelta(seconds=d.seconds, microseconds=micros)
    except OverflowError as err:
        raise BadRequest(f"{where}: invalid duration: {err}") from None


def _cert_principal(cert: TLSProperties.CertificateProperties) -> str:
    """Envoy's principal rule: the first URI SAN, else the first DNS SAN, else the subject."""
    for kind in ("uri", "dns"):
        for san in cert.subject_alt_name:
            if san.WhichOneof("san") == kind:
                value: str = getattr(san, kind)
                return value
    return cert.subject


def _path(out: dict[str, Value], path: str) -> None:
    if not path:
        return
    out["request.path"] = path
    url_path, _, query = path.partition("#")[0].partition("?")
    out["request.url_path"] = url_path
    out["request.query_params"] = StringMap._adopt(_query_params(query))


def _query_params(query: str) -> dict[str, str]:
    """Like Envoy's parseQueryString: values stay percent-encoded and the first value wins."""
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            params.setdefault(name, value)
    return params


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    # Key by key: a protobuf map's items() is a Python-level view, several times slower.
    return {name.lower(): headers[name] for name in headers}


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


def _set_str(out: dict[str, Value], name: str, value: str) -> None:
    if value:
        out[name] = value
