"""Skeleton servers: the least a server of each API must do, as baselines next to mixer.

``python -m bench.skeletons --port P [--flavour aio|sync]`` serves:

* Mixer ``Report``: parses the request and reads every key and value of every entry (strings,
  int64s, doubles, bools, timestamps, durations, bytes, string maps), resolving every word
  index against the global dictionary and the message's words; answers an empty response.
* ALS ``StreamAccessLogs``: parses every message and reads every field that
  `mixer.attributes.envoy` maps to attributes (identifier, addresses, TLS, times, flags,
  request and response fields, headers and trailers).
* Mixer ``Check`` and ext_authz ``Check``: parse the request, then answer a fixed OK response
  (serialized once at start-up).
* Any other method: an empty response, the request unparsed (the floor's answer).

The protobuf fields are read directly rather than through mixer's decoders: those build
mixer's own values (bags, `StringMap`s, datetimes, delta copies), which is the work the skeleton
is compared against, not the floor under it. Values are read and dropped.

With ``--flavour sync``, every method answers like the floor's (empty, unparsed) on a
synchronous grpcio server (a thread pool): the cheapest empty handler of any flavour.
``/bench.Floor/Count`` answers ``"<calls> <stream messages>"`` (not counted), as the floor does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench.floor import ALS_METHOD, COUNT_METHOD
from mixer.attributes.dictionary import GLOBAL_WORDS
from mixer.envoy.config.core.v3.address_pb2 import Address
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from mixer.v1 import attributes_pb2, mixer_pb2

REPORT_METHOD = "/istio.mixer.v1.Mixer/Report"
CHECK_METHOD = "/istio.mixer.v1.Mixer/Check"
AUTHZ_METHOD = "/envoy.service.auth.v3.Authorization/Check"

OPTIONS = [
    ("grpc.so_reuseport", 1),
    ("grpc.max_concurrent_streams", 1000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
]


def _fixed_check_response() -> bytes:
    resp = mixer_pb2.CheckResponse()
    pre = resp.precondition
    pre.status.code = 0
    pre.valid_duration.seconds = 60
    pre.valid_use_count = 10_000
    return resp.SerializeToString()


def _fixed_authz_response() -> bytes:
    resp = CheckResponse()
    resp.status.code = 0
    resp.ok_response.SetInParent()
    return resp.SerializeToString()


CHECK_RESPONSE = _fixed_check_response()
AUTHZ_RESPONSE = _fixed_authz_response()
REPORT_RESPONSE = mixer_pb2.ReportResponse().SerializeToString()


def read_compressed(msg: attributes_pb2.CompressedAttributes, words: list[str]) -> int:
    """Read every key and value of one compressed entry; returns how many values were read.

    Index ``i >= 0`` is ``GLOBAL_WORDS[i]``, ``i < 0`` is ``words[~i]`` (an entry's own words
    when it has any, else the message's default words).
    """
    gw = GLOBAL_WORDS
    n = 0
    strings = msg.strings
    for k in strings:
        v = strings[k]
        _ = gw[k] if k >= 0 else words[~k]
        _ = gw[v] if v >= 0 else words[~v]
        n += 1
    for typed in (msg.int64s, msg.doubles, msg.bools, msg.bytes):
        for k in typed:
            _ = gw[k] if k >= 0 else words[~k]
            _ = typed[k]
            n += 1
    timestamps = msg.timestamps
    for k in timestamps:
        _ = gw[k] if k >= 0 else words[~k]
        ts = timestamps[k]
        _ = ts.seconds, ts.nanos
        n += 1
    durations = msg.durations
    for k in durations:
        _ = gw[k] if k >= 0 else words[~k]
        d = durations[k]
        _ = d.seconds, d.nanos
        n += 1
    maps = msg.string_maps
    for k in maps:
        _ = gw[k] if k >= 0 else words[~k]
        entries = maps[k].entries
        for a in entries:
            b = entries[a]
            _ = gw[a] if a >= 0 else words[~a]
            _ = gw[b] if b >= 0 else words[~b]
            n += 1
    return n


def read_report(raw: bytes) -> int:
    """Parse a Mixer ReportRequest and read every value of every entry; values read."""
    req = mixer_pb2.ReportRequest.FromString(raw)
    default_words = list(req.default_words)
    n = 0
    for entry in req.attributes:
        words = list(entry.words) if entry.words else default_words
        n += read_compressed(entry, words)
    return n


def read_check(raw: bytes) -> int:
    """Parse a Mixer CheckRequest and read every attribute and quota; values read."""
    req = mixer_pb2.CheckRequest.FromString(raw)
    n = read_compressed(req.attributes, list(req.attributes.words))
    quotas = req.quotas
    for name in quotas:
        q = quotas[name]
        _ = q.amount, q.best_effort
        n += 1
    _ = req.deduplication_id, req.global_word_count
    return n


def _read_address(address: Address) -> None:
    if address.WhichOneof("address") == "socket_address":
        sock = address.socket_address
        _ = sock.address, sock.port_value


def read_authz(raw: bytes) -> int:
    """Parse an ext_authz CheckRequest and read the fields mixer maps; values read."""
    req = CheckRequest.FromString(raw)
    attrs = req.attributes
    n = 0
    for peer in (attrs.source, attrs.destination):
        _read_address(peer.address)
        _ = peer.principal, peer.service
        labels = peer.labels
        for k in labels:
            _ = labels[k]
            n += 1
    http = attrs.request.http
    _ = http.id, http.method, http.path, http.host, http.scheme, http.protocol, http.size
    headers = http.headers
    for k in headers:
        _ = headers[k]
        n += 1
    ext = attrs.context_extensions
    for k in ext:
        _ = ext[k]
        n += 1
    t = attrs.request.time
    _ = t.seconds, t.nanos
    return n + 8


def read_als(msg: StreamAccessLogsMessage) -> int:
    """Read every field of one ALS message that `mixer.attributes.envoy` maps; values read."""
    n = 0
    if msg.HasField("identifier"):
        ident = msg.identifier
        node = ident.node
        _ = ident.log_name, node.id, node.user_agent_version
        fields = node.metadata.fields
        for k in fields:
            _ = fields[k]
            n += 1
    for entry in msg.http_logs.log_entry:
        common = entry.common_properties
        for address in (
            common.downstream_remote_address,
            common.downstream_direct_remote_address,
            common.downstream_local_address,
            common.upstream_remote_address,
        ):
            _read_address(address)
        tls = common.tls_properties
        for cert in (tls.peer_certificate_properties, tls.local_certificate_properties):
            for alt in cert.subject_alt_name:
                _ = alt.uri
            _ = cert.subject
        _ = tls.tls_sni_hostname
        _ = common.start_time.seconds, common.start_time.nanos
        _ = common.time_to_last_downstream_tx_byte.seconds
        _ = common.time_to_last_downstream_tx_byte.nanos
        _ = common.duration.seconds, common.duration.nanos
        _ = common.response_flags.ListFields()
        _ = common.upstream_cluster, common.stream_id, common.access_log_type
        req = entry.request
        _ = req.request_method, req.scheme, req.authority, req.path, req.user_agent
        _ = req.referer, req.forwarded_for, req.request_id
        _ = req.request_body_bytes, req.request_headers_bytes
        headers = req.request_headers
        for k in headers:
            _ = headers[k]
            n += 1
        resp = entry.response
        _ = resp.response_code.value, resp.response_code_details
        _ = resp.response_body_bytes, resp.response_headers_bytes
        for header_map in (resp.response_headers, resp.response_trailers):
            for k in header_map:
                _ = header_map[k]
                n += 1
        n += 30
    return n


class SkeletonHandler(grpc.GenericRpcHandler):
    """grpc.aio handlers: parse and read (Report, ALS), parse and answer (Check, ext_authz)."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0
        self._handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
            REPORT_METHOD: grpc.unary_unary_rpc_method_handler(
                self._unary(read_report, REPORT_RESPONSE)
            ),
            CHECK_METHOD: grpc.unary_unary_rpc_method_handler(
                self._unary(read_check, CHECK_RESPONSE)
            ),
            AUTHZ_METHOD: grpc.unary_unary_rpc_method_handler(
                self._unary(read_authz, AUTHZ_RESPONSE)
            ),
            ALS_METHOD: grpc.stream_unary_rpc_method_handler(self._als),
            COUNT_METHOD: grpc.unary_unary_rpc_method_handler(self._report),
        }
        self._empty: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self._unary(len, b"")
        )

    def _unary(self, read: Callable[[bytes], int], answer: bytes) -> Callable[[bytes, Any], Any]:
        async def handle(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            read(request)
            self.calls += 1
            return answer

        return handle

    async def _als(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        async for raw in requests:
            read_als(StreamAccessLogsMessage.FromString(raw))
            self.messages += 1
        self.calls += 1
        return b""

    async def _report(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        return f"{self.calls} {self.messages}".encode()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        return self._handlers.get(handler_call_details.method, self._empty)


class SyncFloorHandler(grpc.GenericRpcHandler):
    """Sync grpcio handlers answering every method empty (requests unparsed); counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0
        self._lock = threading.Lock()
        self._unary: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self._empty
        )
        self._stream: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_unary_rpc_method_handler(
            self._drain
        )
        self._count: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self._report
        )

    def _empty(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
        return b""

    def _drain(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        n = sum(1 for _ in requests)
        with self._lock:
            self.messages += n
            self.calls += 1
        return b""

    def _report(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            return f"{self.calls} {self.messages}".encode()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        if method == COUNT_METHOD:
            return self._count
        if method == ALS_METHOD:
            return self._stream
        return self._unary


async def serve_aio(port: int) -> None:
    """Serve the skeletons on grpc.aio until SIGTERM/SIGINT."""
    server = grpc.aio.server(options=OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((SkeletonHandler(),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot listen on 127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def serve_sync(port: int) -> None:
    """Serve the empty sync handler until SIGTERM/SIGINT (a pool of 64 threads: every stream
    of the load generator's 32 in flight gets one)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=OPTIONS)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((SyncFloorHandler(),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(1).wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--flavour", choices=("aio", "sync"), default="aio")
    args = parser.parse_args()
    if args.flavour == "sync":
        serve_sync(args.port)
    else:
        asyncio.run(serve_aio(args.port))


if __name__ == "__main__":
    main()
