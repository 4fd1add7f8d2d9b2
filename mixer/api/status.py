"""The one place where errors become gRPC status codes, and where RPCs are counted and timed."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from mixer.api.threaded import LoopBridge
from mixer.errors import (
    BackendUnavailable,
    BadRequest,
    DictionaryMismatch,
    DispatchError,
    LimitExceeded,
    MalformedMessage,
    MixerError,
    NotConfigured,
)
from mixer.redact import mask_credentials
from mixer.telemetry import ServerMetrics

logger = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_CODES: tuple[tuple[type[MixerError], grpc.StatusCode], ...] = (
    (DictionaryMismatch, grpc.StatusCode.INTERNAL),
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (DispatchError, grpc.StatusCode.INTERNAL),
    (NotConfigured, grpc.StatusCode.UNKNOWN),
)


def status_code_for(error: MixerError) -> grpc.StatusCode:
    """The gRPC code for a typed error."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


Unary = Callable[[Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]
StreamUnary = Callable[[AsyncIterator[Req], grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]


class _Guard:
    """Runs one kind of call: maps errors to status, counts and times every call."""

    def __init__(self, metrics: ServerMetrics, service: str, method: str) -> None:
        self.service = service
        self.method = method
        self.latency = metrics.latency.labels(service, method)
        self.handled = {
            code: metrics.handled.labels(service, method, code.name) for code in grpc.StatusCode
        }
        self.limits = metrics.limit_exceeded

    async def run(
        self,
        fn: Callable[[Any, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
        request: Any,
        context: grpc.aio.ServicerContext[Req, Resp],
        decode: Callable[[bytes], Any] | None = None,
    ) -> Resp:
        """`fn(request, context)`, or `fn(decode(request), context)`: decoding happens here, so
        that a request that cannot be decoded is answered like any other bad request."""
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if decode is not None:
                request = decode(request)
            return await fn(request, context)
        except MixerError as exc:
            code = status_code_for(exc)
            if isinstance(exc, LimitExceeded):
                self.limits.labels(exc.limit).inc()
            if isinstance(exc, MalformedMessage):
                # One line, no traceback: a client can send these as fast as it likes.
                logger.warning(
                    "%s/%s: %s", self.service, self.method, exc, extra={"peer": context.peer()}
                )
            await context.abort(code, mask_credentials(str(exc)))
            raise  # abort() raises; this satisfies the type checker
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            logger.exception("unexpected error in %s/%s", self.service, self.method)
            await context.abort(code, f"internal error: {type(exc).__name__}")
            raise
        finally:
            self.latency.observe(time.perf_counter() - start)
            self.handled[code].inc()


def decoder(request_type: Any) -> Callable[[bytes], Any]:
    """`request_type.FromString` raising `MalformedMessage` (one line, naming the type) instead
    of protobuf's `DecodeError`; grpc is given no deserializer, so nothing decodes outside the
    guarded path."""
    parse = request_type.FromString
    name = request_type.DESCRIPTOR.full_name

    def decode(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as err:
            raise MalformedMessage(f"cannot decode {name}: {_one_line(err)}") from None

    return decode


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def rpc(
    metrics: ServerMetrics,
    service: str,
    method: str,
    fn: Unary[Req, Resp],
    decode: Callable[[bytes], Req] | None = None,
) -> Unary[Any, Resp]:
    """Wrap a unary handler: decode the request (when `decode` is given), map errors to status,
    count and time the call."""
    guard = _Guard(metrics, service, method)

    async def handler(request: Any, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        return await guard.run(fn, request, context, decode)

    return handler


def stream_rpc(
    metrics: ServerMetrics,
    service: str,
    method: str,
    fn: StreamUnary[Req, Resp],
    decode: Callable[[bytes], Req] | None = None,
) -> StreamUnary[Any, Resp]:
    """Wrap a client-streaming handler the same way as `rpc`: a typed error raised while the
    stream is read (a message that cannot be decoded among them) ends the call with its status,
    and the call is counted once."""
    guard = _Guard(metrics, service, method)

    async def handler(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        stream = requests if decode is None else _decoded(requests, decode)
        return await guard.run(fn, stream, context)

    return handler


async def _decoded(
    requests: AsyncIterator[bytes], decode: Callable[[bytes], Req]
) -> AsyncIterator[Req]:
    async for raw in requests:
        yield decode(raw)


def unary_handler(
    metrics: ServerMetrics,
    service: str,
    method: str,
    fn: Unary[Req, Resp],
    request_type: Any,
    *,
    encoded: bool = False,
    bridge: LoopBridge | None = None,
) -> grpc.RpcMethodHandler[Any, Resp]:
    """A grpc method handler for `fn`, wrapped by `rpc`, decoding `request_type` inside the
    guarded path; `encoded`: `fn` returns the response already serialized. With `bridge`, a
    handler for a sync grpcio server, running `fn` through the bridge (`mixer.api.threaded`)
    under the same guard."""
    handler = rpc(metrics, service, method, fn, decoder(request_type))
    serializer = None if encoded else _serialize
    if bridge is None:
        return grpc.unary_unary_rpc_method_handler(handler, response_serializer=serializer)

    def threaded(request: Any, context: grpc.ServicerContext) -> Resp:
        return bridge.call(handler, request, context)

    return grpc.unary_unary_rpc_method_handler(threaded, response_serializer=serializer)


def stream_unary_handler(
    metrics: ServerMetrics,
    service: str,
    method: str,
    fn: StreamUnary[Req, Resp],
    request_type: Any,
    *,
    bridge: LoopBridge | None = None,
) -> grpc.RpcMethodHandler[Any, Resp]:
    """A grpc method handler for the client-streaming `fn`, wrapped by `stream_rpc`, decoding
    each message of the stream inside the guarded path; with `bridge`, for a sync grpcio
    server (the stream is read without the bridge's lock)."""
    if bridge is None:
        handler = stream_rpc(metrics, service, method, fn, decoder(request_type))
        return grpc.stream_unary_rpc_method_handler(handler, response_serializer=_serialize)
    handler = stream_rpc(metrics, service, method, _capped(bridge, fn), decoder(request_type))

    def threaded(requests: Iterator[Any], context: grpc.ServicerContext) -> Resp:
        return bridge.call(handler, bridge.messages(requests), context)

    return grpc.stream_unary_rpc_method_handler(threaded, response_serializer=_serialize)


def _capped(bridge: LoopBridge, fn: StreamUnary[Req, Resp]) -> StreamUnary[Req, Resp]:
    """`fn` refusing a stream past `bridge.max_streams` open at once (RESOURCE_EXHAUSTED): on
    a sync server every open stream holds a thread."""

    async def capped(
        requests: AsyncIterator[Req], context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        if bridge.streams >= bridge.max_streams:
            raise LimitExceeded(
                f"streams: more than the limit of {bridge.max_streams} client streams open at "
                "once on this server",
                "max_concurrent_streams",
            )
        bridge.streams += 1
        try:
            return await fn(requests, context)
        finally:
            bridge.streams -= 1

    return capped


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]
