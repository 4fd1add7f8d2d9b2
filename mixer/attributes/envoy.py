"""Map Envoy's ext_authz and access-log messages onto Mixer's attribute vocabulary.

Pure functions: no I/O, no clock, no global state. The attribute names are Istio 1.4's
(``source.ip``, ``request.headers``, ``response.code``, ...); a few additions the vocabulary does
not have (``source.port``, ``context.extensions``, ``response.code_details``) are documented in
``docs/envoy-attributes.md``, which lists every mapping.

Attributes whose Envoy field is empty or unset are left out of the bag rather than set to a zero
value, so rules can tell "absent" from "empty" (``request.size`` of -1, "unknown", is also absent).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from mixer.attributes.bag import Bag, StringMap, Value
from mixer.attributes.lazy import parse
from mixer.attributes.node_identity import node_attributes, side_of
from mixer.envoy.config.core.v3.address_pb2 import Address
from mixer.envoy.config.core.v3.base_pb2 import HeaderMap, Metadata, RequestMethod
from mixer.envoy.data.accesslog.v3.accesslog_pb2 import (
    AccessLogType,
    ResponseFlags,
    TLSProperties,
)
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.envoy.service.auth.v3.attribute_context_pb2 import AttributeContext
from mixer.envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from mixer.errors import BadRequest

__all__ = [
    "CONTEXT_EXTENSION_ATTRIBUTES",
    "bag_from_check_request",
    "bags_from_access_logs",
    "proxy_error_code",
    "reporter_kind",
]

#: Context-extension keys that, when set on an ext_authz route, become the attribute of the
#: same name (like Istio's per-route ``mixer_attributes``).
CONTEXT_EXTENSION_ATTRIBUTES = (
    "destination.service.host",
    "destination.service.name",
    "destination.service.namespace",
    "destination.service.uid",
)

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


def bag_from_check_request(req: CheckRequest) -> Bag:
    """The attributes of one ext_authz ``CheckRequest`` (an inbound check of a request)."""
    ctx = req.attributes
    out: dict[str, Value] = {"context.reporter.kind": "inbound"}
    _peer(out, "source", ctx.source)
    _peer(out, "destination", ctx.destination)
    # Envoy fills the principal / certificate only from a verified client certificate.
    out["connection.mtls"] = bool(ctx.source.principal or ctx.source.certificate)
    if ctx.tls_session.sni:
        out["connection.requested_server_name"] = ctx.tls_session.sni
    if ctx.request.HasField("time"):
        out["request.time"] = _time(ctx.request.time, "attributes.request.time")
    extensions = ctx.context_extensions
    if extensions:
        out["context.extensions"] = _string_map(extensions)
        for name in CONTEXT_EXTENSION_ATTRIBUTES:
            if extensions.get(name):
                out[name] = extensions[name]
    for attribute, metadata in (
        ("context.metadata", ctx.metadata_context),
        ("context.route_metadata", ctx.route_metadata_context),
    ):
        flat = _flat_metadata(metadata)
        if flat:
            out[attribute] = StringMap._adopt(flat)
    if ctx.request.HasField("http"):
        _http_request(out, ctx.request.http)
    else:
        # The network (L4) ext_authz filter sends no HTTP request.
        out["context.protocol"] = "tcp"
    return Bag._adopt(out)


def _flat_metadata(metadata: Metadata) -> dict[str, str]:
    """Dynamic metadata as ``<filter>.<key>`` -> value: strings as they are, anything else
    (numbers, booleans, lists, nested structs) as compact JSON."""
    out: dict[str, str] = {}
    for namespace, struct in metadata.filter_metadata.items():
        for key, value in struct.fields.items():
            if value.WhichOneof("kind") == "string_value":
                out[f"{namespace}.{key}"] = value.string_value
                continue
            plain: object
            try:
                plain = MessageToDict(value)
            except ValueError:  # NaN or infinity, which JSON cannot carry
                plain = str(value.number_value)
            out[f"{namespace}.{key}"] = json.dumps(plain, separators=(",", ":"))
    return out


def bags_from_access_logs(
    msg: StreamAccessLogsMessage,
    identifier: StreamAccessLogsMessage.Identifier | None = None,
    wanted: frozenset[str] | None = None,
) -> list[Bag]:
    """One bag per HTTP or TCP entry of an ALS stream message.

    Envoy sends the identifier only in the first message of each stream: the caller keeps it and
    passes it for the later messages (the message's own identifier wins when present).

    With `wanted` (the names report rules may read: `RoutingTable.report_names`), a bag holds
    only the attributes in `wanted`, and a field that only other attributes are made from is not
    read, as the Mixer Report path does not decode unwanted attributes. So an invalid field (a
    timestamp or duration out of range, an unknown request method) fails the message only when
    a wanted attribute is made from it (``docs/envoy-attributes.md`` lists what each attribute
    reads). Whenever the conversion with ``wanted=None`` succeeds, each bag is exactly its bag
    restricted to `wanted`.
    """
    ident = msg.identifier if msg.HasField("identifier") else identifier
    kind, shared = _shared(ident)
    if wanted is None:
        plan = _FULL_PLAN
    else:
        plan = _PLANS.get(wanted) or _plan_for(wanted)
        shared = {name: value for name, value in shared.items() if name in wanted}
    which = msg.WhichOneof("log_entries")
    if which == "http_logs":
        return _entries(shared, kind, plan, msg.http_logs.log_entry, True)
    if which == "tcp_logs":
        return _entries(shared, kind, plan, msg.tcp_logs.log_entry, False)
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


def _peer(out: dict[str, Value], side: str, peer: AttributeContext.Peer) -> None:
    _address(out, side, peer.address)
    if peer.principal:
        out[f"{side}.principal"] = peer.principal
    if peer.labels:
        out[f"{side}.labels"] = _string_map(peer.labels)


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


def _http_request(out: dict[str, Value], http: AttributeContext.HttpRequest) -> None:
    headers = _lower_keys(http.headers) if http.headers else _raw_headers(http.header_map)
    out["request.headers"] = StringMap._adopt(headers)
    _set_str(out, "request.method", http.method)
    _set_str(out, "request.scheme", http.scheme)
    _set_str(out, "request.host", http.host)
    _path(out, http.path)
    _set_str(out, "request.id", headers.get("x-request-id") or http.id)
    if http.size >= 0:
        out["request.size"] = http.size
    _set_str(out, "request.useragent", headers.get("user-agent", ""))
    _set_str(out, "request.referer", headers.get("referer", ""))
    out["context.protocol"] = _protocol(headers.get("content-type", ""))
    if "destination.service.host" not in out and http.host:
        out["destination.service.host"] = _strip_port(http.host)


# What an ALS entry may set besides the identifier's attributes, in the order of the plan tuples.
_ALS_ATTRIBUTES = (
    # common properties
    "source.ip", "source.port", "destination.ip", "destination.port", "source.principal",
    "destination.principal", "connection.mtls", "connection.requested_server_name",
    "request.time", "response.duration", "response.time", "context.proxy_error_code",
    "destination.service.host",
    # HTTP entries
    "request.headers", "request.method", "request.scheme", "request.host", "request.path",
    "request.url_path", "request.query_params", "request.useragent", "request.referer",
    "request.id", "request.size", "request.total_size", "response.headers", "response.code",
    "response.code_details", "response.size", "response.total_size", "response.grpc_status",
    "response.grpc_message", "context.protocol",
    # TCP entries
    "connection.received.bytes", "connection.received.bytes_total", "connection.sent.bytes",
    "connection.sent.bytes_total", "connection.event", "connection.id", "connection.duration",
)  # fmt: skip
_FULL_PLAN = (True,) * len(_ALS_ATTRIBUTES)

# Memos: each is emptied when full, and keys longer than their bound are not kept, so what a
# stream of hostile messages can make them hold is bounded. A config names a handful of
# `wanted` sets in its lifetime; clients name identifiers, addresses and clusters.
_MEMO_ENTRIES = 1024
_MEMO_TEXT = 256
_MEMO_BYTES = 1024
_IDENTIFIERS_KEPT = 64
_IDENTIFIER_BYTES = 16 * 1024
_PLANS: dict[frozenset[str], tuple[bool, ...]] = {}
_IPS: dict[str, bytes | None] = {}
_CLUSTERS: dict[str, str | None] = {}
_TLS: dict[bytes, tuple[str, str, str]] = {}
_ADDRESSES: dict[bytes, tuple[bytes | None, int | None]] = {}
_NO_IP: tuple[bytes | None, int | None] = (None, None)
_SHARED: dict[bytes, tuple[str, dict[str, Value]]] = {}
_NO_IDENTIFIER: tuple[str, dict[str, Value]] = ("inbound", {"context.reporter.kind": "inbound"})
_METHODS = {value: name for name, value in RequestMethod.items() if value}
_NOTHING: dict[str, str] = {}


def _plan_for(wanted: frozenset[str]) -> tuple[bool, ...]:
    plan = tuple(name in wanted for name in _ALS_ATTRIBUTES)
    if len(_PLANS) >= 16:
        _PLANS.clear()
    _PLANS[wanted] = plan
    return plan


def _shared(
    ident: StreamAccessLogsMessage.Identifier | None,
) -> tuple[str, dict[str, Value]]:
    """The reporter kind and the attributes every entry under `ident` starts from (never to be
    changed: they are memoized by the identifier's wire form)."""
    if ident is None:
        return _NO_IDENTIFIER
    key = ident.SerializeToString()
    memo = _SHARED.get(key)
    if memo is not None:
        return memo
    shared: dict[str, Value] = {}
    kind = reporter_kind(ident.log_name)
    if ident.node.id:
        shared["context.reporter.uid"] = ident.node.id
    if ident.node.user_agent_version:
        shared["context.proxy_version"] = ident.node.user_agent_version
    # The reporting proxy's own identity; an entry's attributes are set over it.
    shared.update(node_attributes(ident.node.metadata, side_of(kind)))
    shared["context.reporter.kind"] = kind
    if len(key) <= _IDENTIFIER_BYTES:
        if len(_SHARED) >= _IDENTIFIERS_KEPT:
            _SHARED.clear()
        _SHARED[key] = (kind, shared)
    return kind, shared


def _first_ip(
    out: dict[str, Value],
    addresses: tuple[Address | bytes, Address | bytes],
    ip_name: str | None,
    port_name: str | None,
) -> None:
    """The IP (as `ip_name`) and port (as `port_name`; None: not wanted) of the first of
    `addresses` (messages, or their wire form: `mixer.attributes.lazy`) that holds an IP."""
    for address in addresses:
        if isinstance(address, bytes):
            # A stream's entries repeat a few peers: found by the address's wire form.
            found = _ADDRESSES.get(address)
            if found is None:
                found = _ip_port(parse(Address, address, "common_properties: an address"))
                if len(address) <= _MEMO_BYTES:
                    if len(_ADDRESSES) >= _MEMO_ENTRIES:
                        _ADDRESSES.clear()
                    _ADDRESSES[address] = found
            ip, port = found
        else:
            ip, port = _ip_port(address)
        if ip is not None:
            if ip_name is not None:
                out[ip_name] = ip
            if port_name is not None and port is not None:
                out[port_name] = port
            return


def _ip_port(address: Address) -> tuple[bytes | None, int | None]:
    """The IP address of `address` and its port (None: unset), or (None, None) for no IP."""
    # An unset address, a pipe or an internal one reads as an empty socket address, which is no
    # IP: no need to ask which one it is.
    socket_address = address.socket_address
    text = socket_address.address
    ip = _IPS.get(text, b"") if text else None
    if ip == b"":
        ip = _ip_memo(text)
    if ip is None:
        return _NO_IP
    port = socket_address.port_value
    if port or socket_address.WhichOneof("port_specifier") == "port_value":
        return ip, port
    return ip, None


def _ip_memo(text: str) -> bytes | None:
    """`_ip_bytes`, memoized."""
    ip = _ip_bytes(text)
    if len(text) <= _MEMO_TEXT:
        if len(_IPS) >= _MEMO_ENTRIES:
            _IPS.clear()
        _IPS[text] = ip
    return ip


def _cluster_host(cluster: str) -> str | None:
    """The service host of an Istio cluster name, None for other names; memoized."""
    match = _ISTIO_CLUSTER.match(cluster)
    host = match["host"] if match else None
    if len(cluster) <= _MEMO_TEXT:
        if len(_CLUSTERS) >= _MEMO_ENTRIES:
            _CLUSTERS.clear()
        _CLUSTERS[cluster] = host
    return host


def _entries(
    shared: Mapping[str, Value],
    kind: str,
    plan: tuple[bool, ...],
    entries: Iterable[Any],  # HTTPAccessLogEntry when `http`, else TCPAccessLogEntry
    http: bool,
) -> list[Bag]:
    """The bags of a message's HTTP (`http`) or TCP entries, setting only what `plan` says.

    One function for every entry of a message, its plan unpacked once into locals: protobuf
    field reads and Python calls are what an entry costs, so each is made only when a wanted
    attribute needs it, and values that repeat across entries (addresses, cluster names) come
    from memos. Attributes are set in one fixed order whatever `plan` says, so a bag with
    `wanted` lists its attributes as the full bag does.
    """
    (
        w_src_ip, w_src_port, w_dst_ip, w_dst_port, w_src_principal, w_dst_principal, w_mtls,
        w_sni, w_req_time, w_resp_duration, w_resp_time, w_error_code, w_service_host,
        w_req_headers, w_method, w_scheme, w_host, w_path, w_url_path, w_query, w_useragent,
        w_referer, w_id, w_req_size, w_req_total, w_resp_headers, w_code, w_code_details,
        w_resp_size, w_resp_total, w_grpc_status, w_grpc_message, w_protocol,
        w_received, w_received_total, w_sent, w_sent_total, w_event, w_conn_id, w_conn_duration,
    ) = plan  # fmt: skip
    w_src = w_src_ip or w_src_port
    w_dst = w_dst_ip or w_dst_port
    w_peer = w_src_principal or w_mtls
    w_local = w_dst_principal and kind == "inbound"
    w_start = w_req_time or w_resp_time
    w_grpc = w_grpc_status or w_grpc_message or w_protocol
    inbound = kind == "inbound"
    clusters = _CLUSTERS
    bags: list[Bag] = []
    for entry in entries:
        out = dict(shared)
        common = entry.common_properties

        if w_src:
            _first_ip(
                out,
                (common.downstream_remote_address, common.downstream_direct_remote_address),
                "source.ip" if w_src_ip else None,
                "source.port" if w_src_port else None,
            )
        if w_dst:
            # An inbound proxy fronts the destination (its local address is the workload's);
            # an outbound one forwards to it (the upstream host is the destination).
            local, upstream = common.downstream_local_address, common.upstream_remote_address
            _first_ip(
                out,
                (local, upstream) if inbound else (upstream, local),
                "destination.ip" if w_dst_ip else None,
                "destination.port" if w_dst_port else None,
            )

        if w_peer or w_local or w_sni:
            peer, local_principal, sni = _tls_names(common.tls_properties)
            if peer and w_src_principal:
                out["source.principal"] = peer
            if w_local and local_principal:
                out["destination.principal"] = local_principal
            if w_mtls:
                out["connection.mtls"] = bool(peer)
            if w_sni and sni:
                out["connection.requested_server_name"] = sni

        # response.time is made from both times: each is read only when the other is set.
        has_start = w_start and common.HasField("start_time")
        start = None
        if w_req_time and has_start:
            start = _time(common.start_time, "common_properties.start_time")
            out["request.time"] = start
        if w_resp_duration or (w_resp_time and has_start):
            # Start to the last byte sent downstream; the stream's whole lifetime when that
            # is unset. A zero span is told from an unset one only when it is zero.
            last = common.time_to_last_downstream_tx_byte
            seconds, nanos = last.seconds, last.nanos
            duration = None
            if seconds or nanos or common.HasField("time_to_last_downstream_tx_byte"):
                duration = _span_of(
                    seconds, nanos, "common_properties.time_to_last_downstream_tx_byte"
                )
            elif common.HasField("duration"):
                duration = _span(common.duration, "common_properties.duration")
            if duration is not None:
                if w_resp_duration:
                    out["response.duration"] = duration
                if w_resp_time and has_start:
                    if start is None:
                        start = _time(common.start_time, "common_properties.start_time")
                    try:
                        out["response.time"] = start + duration
                    except OverflowError:
                        raise BadRequest(
                            "common_properties: start_time plus the duration is past the year 9999"
                        ) from None
        if w_error_code:
            # The common case, no flags at all, answered by one presence check.
            out["context.proxy_error_code"] = (
                proxy_error_code(common.response_flags)
                if common.HasField("response_flags")
                else "-"
            )
        service_host = None
        if w_service_host:
            cluster = common.upstream_cluster
            if cluster:
                service_host = clusters.get(cluster, "")
                if service_host == "":
                    service_host = _cluster_host(cluster)
                if service_host is not None:
                    out["destination.service.host"] = service_host

        if http:
            req = entry.request
            headers = _NOTHING
            if w_req_headers or w_protocol:
                logged = req.request_headers
                headers = {name.lower(): logged[name] for name in logged} if logged else {}
            if w_req_headers:
                # Envoy logs these headers in dedicated fields; keep them reachable through
                # request.headers.
                for name, value in (
                    ("user-agent", req.user_agent),
                    ("referer", req.referer),
                    ("x-forwarded-for", req.forwarded_for),
                    ("x-request-id", req.request_id),
                ):
                    if value and name not in headers:
                        headers[name] = value
                out["request.headers"] = StringMap._adopt(headers)
            if w_method:
                method = req.request_method
                if method:  # METHOD_UNSPECIFIED; an unknown number raises ValueError
                    out["request.method"] = _METHODS.get(method) or RequestMethod.Name(method)
            if w_scheme:
                scheme = req.scheme
                if scheme:
                    out["request.scheme"] = scheme
            if w_host:
                authority = req.authority
                if authority:
                    out["request.host"] = authority
            if w_path or w_url_path or w_query:
                path = req.path
                if path:
                    if w_path:
                        out["request.path"] = path
                    url_path, _, query = path.partition("#")[0].partition("?")
                    if w_url_path:
                        out["request.url_path"] = url_path
                    if w_query:
                        out["request.query_params"] = StringMap._adopt(_query_params(query))
            if w_useragent:
                useragent = req.user_agent
                if useragent:
                    out["request.useragent"] = useragent
            if w_referer:
                referer = req.referer
                if referer:
                    out["request.referer"] = referer
            if w_id:
                request_id = req.request_id
                if request_id:
                    out["request.id"] = request_id
            if w_req_size or w_req_total:
                body = req.request_body_bytes
                if w_req_size:
                    out["request.size"] = body
                if w_req_total:
                    out["request.total_size"] = req.request_headers_bytes + body

            resp = entry.response
            response_headers = _NOTHING
            if w_resp_headers or w_grpc:
                logged = resp.response_headers
                response_headers = {name.lower(): logged[name] for name in logged} if logged else {}
                if w_resp_headers:
                    out["response.headers"] = StringMap._adopt(response_headers)
            if w_code:
                code = resp.response_code.value
                if code or resp.HasField("response_code"):
                    out["response.code"] = code
            if w_code_details:
                details = resp.response_code_details
                if details:
                    out["response.code_details"] = details
            if w_resp_size or w_resp_total:
                body = resp.response_body_bytes
                if w_resp_size:
                    out["response.size"] = body
                if w_resp_total:
                    out["response.total_size"] = resp.response_headers_bytes + body
            if w_grpc:
                # gRPC status travels in trailers, or in headers for trailers-only responses.
                logged = resp.response_trailers
                grpc_status = ""
                if logged or response_headers:
                    trailers = {name.lower(): logged[name] for name in logged} if logged else {}
                    grpc_status = trailers.get("grpc-status") or response_headers.get(
                        "grpc-status", ""
                    )
                    if w_grpc_status and grpc_status:
                        out["response.grpc_status"] = grpc_status
                    if w_grpc_message:
                        grpc_message = trailers.get("grpc-message") or response_headers.get(
                            "grpc-message", ""
                        )
                        if grpc_message:
                            out["response.grpc_message"] = grpc_message
                if w_protocol:
                    grpc = grpc_status != "" or (
                        bool(headers)
                        and headers.get("content-type", "").startswith("application/grpc")
                    )
                    out["context.protocol"] = "grpc" if grpc else "http"
            if w_service_host and service_host is None:
                authority = req.authority
                if authority:
                    out["destination.service.host"] = _strip_port(authority)
        else:
            if w_protocol:
                out["context.protocol"] = "tcp"
            if w_received or w_received_total or w_sent or w_sent_total:
                conn = entry.connection_properties
                # Envoy's counts are connection totals; a pure mapping has no per-connection
                # state to turn them into Istio's since-last-report deltas, so both names carry
                # the total.
                received, sent = conn.received_bytes, conn.sent_bytes
                if w_received:
                    out["connection.received.bytes"] = received
                if w_received_total:
                    out["connection.received.bytes_total"] = received
                if w_sent:
                    out["connection.sent.bytes"] = sent
                if w_sent_total:
                    out["connection.sent.bytes_total"] = sent
            if w_event:
                out["connection.event"] = _TCP_EVENTS.get(common.access_log_type, "close")
            if w_conn_id:
                stream_id = common.stream_id
                if stream_id:
                    out["connection.id"] = stream_id
            if w_conn_duration and common.HasField("duration"):
                out["connection.duration"] = _span(common.duration, "common_properties.duration")
        bags.append(Bag._adopt(out))
    return bags


# Computed here rather than by protobuf's ToDatetime / ToTimedelta, which are Python code run
# on every ALS entry (docs/benchmarks.md, sixth round); tested against them.
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
    return _EPOCH + datetime.timedelta(0, seconds, nanos // 1000)


def _span(d: Duration, where: str) -> datetime.timedelta:
    """A protobuf Duration as timedelta (microseconds, rounded toward zero); BadRequest when it
    is out of timedelta's range."""
    return _span_of(d.seconds, d.nanos, where)


def _span_of(seconds: int, nanos: int, where: str) -> datetime.timedelta:
    """`_span` of a Duration's two fields."""
    micros = nanos // 1000 if nanos >= 0 else -(-nanos // 1000)
    try:
        return datetime.timedelta(0, seconds, micros)
    except OverflowError as err:
        raise BadRequest(f"{where}: invalid duration: {err}") from None


def _tls_names(tls: TLSProperties | bytes) -> tuple[str, str, str]:
    """The peer's and the local principal and the SNI of `tls` (or of its wire form:
    `mixer.attributes.lazy`), memoized by its wire form (the entries of a stream repeat a few
    peers: one serialization costs less than reading the certificates' fields)."""
    if isinstance(tls, bytes):
        wire = tls
        found = _TLS.get(wire)
        if found is not None:
            return found
        message: TLSProperties = parse(TLSProperties, wire, "common_properties.tls_properties")
    else:
        message = tls
        wire = message.SerializeToString()
        found = _TLS.get(wire)
        if found is not None:
            return found
    found = (
        _cert_principal(message.peer_certificate_properties),
        _cert_principal(message.local_certificate_properties),
        message.tls_sni_hostname,
    )
    if len(wire) <= _MEMO_BYTES:
        if len(_TLS) >= _MEMO_ENTRIES:
            _TLS.clear()
        _TLS[wire] = found
    return found


def _cert_principal(cert: TLSProperties.CertificateProperties) -> str:
    """Envoy's principal rule: the first URI SAN, else the first DNS SAN, else the subject."""
    sans = cert.subject_alt_name
    if not sans:
        return cert.subject
    first = sans[0]
    if first.WhichOneof("san") == "uri":  # the common case: a SPIFFE id first
        uri: str = first.uri
        return uri
    for kind in ("uri", "dns"):
        for san in sans:
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


def _string_map(entries: Mapping[str, str]) -> StringMap:
    """A protobuf map<string, string> as a StringMap (one container lookup per entry)."""
    return StringMap._adopt({key: entries[key] for key in entries})


def _raw_headers(header_map: HeaderMap) -> dict[str, str]:
    """Headers from raw-header mode: duplicates merged with "," as Envoy's own map does."""
    merged: dict[str, str] = {}
    for header in header_map.headers:
        value = header.value or header.raw_value.decode("utf-8", errors="replace")
        name = header.key.lower()
        merged[name] = f"{merged[name]},{value}" if name in merged else value
    return merged


def _protocol(content_type: str) -> str:
    return "grpc" if content_type.startswith("application/grpc") else "http"


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


def _set_str(out: dict[str, Value], name: str, value: str) -> None:
    if value:
        out[name] = value
