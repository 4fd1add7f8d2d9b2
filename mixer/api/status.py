"""The one place where errors become gRPC status codes, and where RPCs are counted and timed."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mixer.errors import (
    BackendUnavailable,
    BadRequest,
    DictionaryMismatch,
    DispatchError,
    LimitExceeded,
    MixerError,
    NotConfigured,
)
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
        self, call: Awaitable[Resp], context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await call
        except MixerError as exc:
            code = status_code_for(exc)
            if isinstance(exc, LimitExceeded):
                self.limits.labels(exc.limit).inc()
            await context.abort(code, str(exc))
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


def rpc(
    metrics: ServerMetrics, service: str, method: str, fn: Unary[Req, Resp]
) -> Unary[Req, Resp]:
    """Wrap a unary handler: map errors to status, count and time the call."""
    guard = _Guard(metrics, service, method)

    async def handler(request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        return await guard.run(fn(request, context), context)

    return handler


def stream_rpc(
    metrics: ServerMetrics, service: str, method: str, fn: StreamUnary[Req, Resp]
) -> StreamUnary[Req, Resp]:
    """Wrap a client-streaming handler the same way as `rpc`: a typed error raised while the
    stream is read ends the call with its status, and the call is counted once."""
    guard = _Guard(metrics, service, method)

    async def handler(
        requests: AsyncIterator[Req], context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        return await guard.run(fn(requests, context), context)

    return handler


def unary_handler(
    metrics: ServerMetrics,
    service: str,
    method: str,
    fn: Unary[Req, Resp],
    request_type: Any,
    *,
    encoded: bool = False,
) -> grpc.RpcMethodHandler[Req, Resp]:
    """A grpc method handler for `fn`, wrapped by `rpc`, with protobuf (de)serialisation;
    `encoded`: `fn` returns the response already serialized."""
    return grpc.unary_unary_rpc_method_handler(
        rpc(metrics, service, method, fn),
        request_deserializer=request_type.FromString,
        response_serializer=None if encoded else _serialize,
    )


def stream_unary_handler(
    metrics: ServerMetrics,
    service: str,
    method: str,
    fn: StreamUnary[Req, Resp],
    request_type: Any,
) -> grpc.RpcMethodHandler[Req, Resp]:
    """A grpc method handler for the client-streaming `fn`, wrapped by `stream_rpc`."""
    return grpc.stream_unary_rpc_method_handler(
        stream_rpc(metrics, service, method, fn),
        request_deserializer=request_type.FromString,
        response_serializer=_serialize,
    )


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]
