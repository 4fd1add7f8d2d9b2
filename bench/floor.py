"""The floor: an empty grpc.aio handler, the same server flavour as `mixer serve`.

``python -m bench.floor --port P`` serves every method path: unary calls get an empty response,
client streams (the ALS method) are read to the end and get an empty response. Requests are not
parsed (identity deserializer), so this is the cost of gRPC itself. The server options are
mixer's (`mixer.server.grpc_server.create_server`), with the health service so it is started
and awaited the same way. ``/bench.Floor/Count`` answers ``"<unary calls> <stream messages>"``
(not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ALS_METHOD = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"
COUNT_METHOD = "/bench.Floor/Count"


class FloorHandler(grpc.GenericRpcHandler):
    """Answers any method with an empty message; counts what it served."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0
        self._unary: grpc.RpcMethodHandler[bytes, bytes]
        self._stream: grpc.RpcMethodHandler[bytes, bytes]
        self._count: grpc.RpcMethodHandler[bytes, bytes]
        self._unary = grpc.unary_unary_rpc_method_handler(self._empty)
        self._stream = grpc.stream_unary_rpc_method_handler(self._drain)
        self._count = grpc.unary_unary_rpc_method_handler(self._report)

    async def _empty(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        self.calls += 1
        return b""

    async def _drain(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        async for _ in requests:
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
        method = handler_call_details.method
        if method == COUNT_METHOD:
            return self._count
        if method == ALS_METHOD:
            return self._stream
        return self._unary


async def serve(port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_concurrent_streams", 1000),
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ]
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((FloorHandler(),))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
