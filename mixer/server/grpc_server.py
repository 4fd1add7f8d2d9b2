"""The gRPC server: our services, health and reflection on one port."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mixer.server.ports import ensure_free
from mixer.server.tls import CertificateReloader
from mixer.settings import Settings

HEALTH_SERVICE = "grpc.health.v1.Health"
# Sync flavour: threads of the pool that client streams can never take.
UNARY_THREADS = 64


class SyncServer:
    """A sync grpcio server behind the aio server's `start`/`stop` coroutines.

    A client stream (the access-log service) holds a thread of its pool for its whole life:
    the pool has `UNARY_THREADS` more threads than the streams allowed at once
    (`--max-concurrent-streams`, server-wide on this flavour, `LoopBridge.max_streams`), so
    that open streams never leave unary calls without one. Threads start only when calls need
    them.
    """

    def __init__(self, options: list[tuple[str, Any]], threads: int) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
            options=options,
        )

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.server.add_generic_rpc_handlers(handlers)

    def add_insecure_port(self, address: str) -> int:
        return self.server.add_insecure_port(address)

    def add_secure_port(self, address: str, credentials: grpc.ServerCredentials) -> int:
        return self.server.add_secure_port(address, credentials)

    async def start(self) -> None:
        self.server.start()

    async def stop(self, grace: float | None) -> None:
        """Stop accepting, let calls in flight finish within `grace` seconds (they need the
        event loop: it keeps running while this waits)."""
        stopped = self.server.stop(grace)
        while not stopped.is_set():
            await asyncio.sleep(0.02)


def create_server(
    settings: Settings,
    handlers: list[grpc.GenericRpcHandler],
    service_names: list[str],
    *,
    sync: bool = False,
) -> tuple[Any, Any, int]:
    """Build (not start) the aio server, or with `sync` a `SyncServer`; returns it, its health
    servicer and the bound port.

    The port is shared (SO_REUSEPORT) only when `settings.reuse_port` says this process is one of
    mixer's own workers; otherwise an address in use raises `AddressInUse`.
    """
    if not settings.reuse_port:
        # grpc's own bind failure says only that it failed; this says why.
        ensure_free(settings.address)
    options = [
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    server: Any
    health_servicer: Any
    if sync:
        server = SyncServer(options, settings.max_concurrent_streams + UNARY_THREADS)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server.server)
        reflection.enable_server_reflection(
            (*service_names, HEALTH_SERVICE, reflection.SERVICE_NAME), server.server
        )
    else:
        server = grpc.aio.server(options=options)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*service_names, HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
    server.add_generic_rpc_handlers(tuple(handlers))
    if settings.tls_cert is not None and settings.tls_key is not None:
        reloader = CertificateReloader(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        port = _bind(lambda: server.add_secure_port(settings.address, reloader.credentials()))
    else:
        port = _bind(lambda: server.add_insecure_port(settings.address))
    if port == 0:
        raise OSError(f"cannot listen on {settings.address}")
    return server, health_servicer, port


def _bind(add_port: Callable[[], int]) -> int:
    """The bound port, or 0 when grpc could not bind (it raises in some versions)."""
    try:
        return add_port()
    except RuntimeError:
        return 0


async def set_serving(servicer: Any, names: list[str], serving: bool) -> None:
    """Mark the whole server and each named service SERVING or NOT_SERVING (an aio or a sync
    health servicer)."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        done = servicer.set(name, status)
        if inspect.isawaitable(done):
            await done
