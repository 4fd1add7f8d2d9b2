"""The one place where errors become gRPC status codes, and where RPCs are counted and timed."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mixer.errors import (
    BackendUnavailable,
    BadRequest,
    DictionaryMismatch,
    DispatchError,
    LimitExceeded,
    MixerError,
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
)


def status_code_for(error: MixerError) -> grpc.StatusCode:
    """The gRPC code for a typed error."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


Unary = Callable[[Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]


def rpc(
    metrics: ServerMetrics, service: str, method: str, fn: Unary[Req, Resp]
) -> Unary[Req, Resp]:
    """Wrap a unary handler: map errors to status, count and time the call."""
    latency = metrics.latency.labels(service, method)
    handled = {code: metrics.handled.labels(service, method, code.name) for code in grpc.StatusCode}

    async def handler(request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await fn(request, context)
        except MixerError as exc:
            code = status_code_for(exc)
            await context.abort(code, str(exc))
            raise  # abort() raises; this satisfies the type checker
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            logger.exception("unexpected error in %s/%s", service, method)
            await context.abort(code, f"internal error: {type(exc).__name__}")
            raise
        finally:
            latency.observe(time.perf_counter() - start)
            handled[code].inc()

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


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]
