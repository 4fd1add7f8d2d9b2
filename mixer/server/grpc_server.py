"""The gRPC server: our services, health and reflection on one port."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mixer.server.ports import ensure_free
from mixer.server.tls import CertificateReloader
from mixer.settings import Settings

HEALTH_SERVICE = "grpc.health.v1.Health"


def create_server(
    settings: Settings,
    handlers: list[grpc.GenericRpcHandler],
    service_names: list[str],
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """Build (not start) the aio server; returns it, its health servicer and the bound port.

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
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers(tuple(handlers))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, HEALTH_SERVICE, reflection.SERVICE_NAME), server
    )
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


async def set_serving(servicer: health.aio.HealthServicer, names: list[str], serving: bool) -> None:
    """Mark the whole server and each named service SERVING or NOT_SERVING."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        await servicer.set(name, status)
