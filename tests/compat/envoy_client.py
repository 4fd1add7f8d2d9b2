"""Call a server the way Envoy does, with Envoy's own generated stubs (PyPI ``xds-protos``).

Runs ONLY inside the isolated compat venv (see ``tests/compat/harness.py``; from Python use
``harness.run_envoy_client``, which builds the venv on first use)::

    <compat-venv>/bin/python tests/compat/envoy_client.py [OPTIONS] ADDRESS KIND [REQUEST]

ADDRESS
    ``host:port`` of the server, e.g. ``127.0.0.1:9091`` (``unix:/path`` works too).
KIND
    ``check``  ``/envoy.service.auth.v3.Authorization/Check``
    ``rls``    ``/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``
    ``als``    ``/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`` (client stream)
REQUEST
    JSON text, ``@path`` to read a file, or ``-`` (the default) to read stdin. It is the proto3
    JSON form of Envoy's message (field names as in the .proto, or lowerCamelCase):

    - ``check``: one ``CheckRequest`` object, or a list of them (sent in order on one channel);
    - ``rls``: one ``RateLimitRequest`` object, or a list of them;
    - ``als``: a list of ``StreamAccessLogsMessage`` objects is ONE stream (put the
      ``identifier`` in the first, as Envoy does); a list of such lists is several streams, run
      concurrently (Envoy opens one per worker thread).

OPTIONS
    ``--timeout S``     deadline of each call in seconds (default 5).
    ``--hold S``        als: keep each stream open S seconds after its last message before
                        half-closing it (Envoy itself never closes; default 0).
    ``--metadata K=V``  request metadata, repeatable.

OUTPUT (stdout, one JSON document)
    Per call ``{"ok": true, "response": {...}, "elapsed_ms": 0.8}`` or
    ``{"ok": false, "code": "UNAVAILABLE", "details": "...", "elapsed_ms": 3.1}``: an object for a
    single request or stream, a list in input order for a list. ``response`` is
    ``MessageToDict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)``:
    enums by name, 64-bit integers as strings, bytes as base64, zero values present.

EXIT STATUS
    0 when every call was made, whatever its gRPC status; 2 for bad arguments or input.

EXAMPLES
    envoy_client.py 127.0.0.1:9091 check '{"attributes": {"request": {"http": {"method": "GET",
        "path": "/x", "headers": {"x-user": "alice"}}}}}'
    envoy_client.py 127.0.0.1:9091 rls '{"domain": "api", "descriptors":
        [{"entries": [{"key": "tenant", "value": "acme"}]}]}'
    envoy_client.py --hold 0.5 127.0.0.1:9091 als '[{"identifier": {"node": {"id": "n1"},
        "log_name": "inbound"}, "http_logs": {"log_entry": [{"response":
        {"response_code": 200}}]}}]'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import json_format, message


def _to_dict(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _failure(exc: grpc.aio.AioRpcError, started: float) -> dict[str, Any]:
    return {
        "ok": False,
        "code": exc.code().name,
        "details": exc.details() or "",
        "elapsed_ms": (time.perf_counter() - started) * 1000.0,
    }


def _success(msg: message.Message, started: float) -> dict[str, Any]:
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    return {"ok": True, "response": _to_dict(msg), "elapsed_ms": elapsed_ms}


async def _unary(call: Any, request: message.Message, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = await call(request, timeout=args.timeout, metadata=args.metadata)
    except grpc.aio.AioRpcError as exc:
        return _failure(exc, started)
    return _success(response, started)


async def _stream(
    stub: als_pb2_grpc.AccessLogServiceStub,
    messages: list[als_pb2.StreamAccessLogsMessage],
    args: argparse.Namespace,
) -> dict[str, Any]:
    async def requests() -> AsyncIterator[als_pb2.StreamAccessLogsMessage]:
        for msg in messages:
            yield msg
        if args.hold > 0:
            await asyncio.sleep(args.hold)

    started = time.perf_counter()
    try:
        response = await stub.StreamAccessLogs(
            requests(), timeout=args.timeout + args.hold, metadata=args.metadata
        )
    except grpc.aio.AioRpcError as exc:
        return _failure(exc, started)
    return _success(response, started)


def _parse(data: Any, cls: type[message.Message]) -> message.Message:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object for {cls.DESCRIPTOR.full_name}, got {data!r}")
    return json_format.ParseDict(data, cls())


async def _run(args: argparse.Namespace, data: Any) -> Any:
    async with grpc.aio.insecure_channel(args.address) as channel:
        if args.kind == "als":
            als = als_pb2_grpc.AccessLogServiceStub(channel)
            msg_cls = als_pb2.StreamAccessLogsMessage
            if not isinstance(data, list):
                raise ValueError("als expects a list of messages or a list of lists")
            if data and all(isinstance(item, list) for item in data):
                streams = [[_parse(m, msg_cls) for m in stream] for stream in data]
                return list(await asyncio.gather(*(_stream(als, s, args) for s in streams)))
            return await _stream(als, [_parse(m, msg_cls) for m in data], args)
        if args.kind == "check":
            call = external_auth_pb2_grpc.AuthorizationStub(channel).Check
            cls: type[message.Message] = external_auth_pb2.CheckRequest
        else:
            call = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit
            cls = rls_pb2.RateLimitRequest
        if isinstance(data, list):
            requests = [_parse(item, cls) for item in data]
            return [await _unary(call, request, args) for request in requests]
        return await _unary(call, _parse(data, cls), args)


def _metadata(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.lower(), value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Call ext_authz / ALS / RLS with Envoy's own stubs and print JSON.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    parser.add_argument("--hold", type=float, default=0.0, help="als: seconds to keep open")
    parser.add_argument("--metadata", type=_metadata, action="append", default=[])
    parser.add_argument("address")
    parser.add_argument("kind", choices=("check", "rls", "als"))
    parser.add_argument("request", nargs="?", default="-")
    args = parser.parse_args(argv)
    args.metadata = tuple(args.metadata)
    try:
        if args.request == "-":
            data = json.load(sys.stdin)
        elif args.request.startswith("@"):
            with open(args.request[1:], encoding="utf-8") as f:
                data = json.load(f)
        else:
            data = json.loads(args.request)
        answer = asyncio.run(_run(args, data))
    except (OSError, ValueError, json_format.ParseError) as exc:
        print(f"envoy_client: {exc}", file=sys.stderr)
        return 2
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
