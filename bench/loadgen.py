"""The load generator: an async grpcio client in its own process, sending pre-encoded requests.

``python -m bench.loadgen --target HOST:PORT --method /svc/Method --frames FILE ...``

`FILE` holds serialized request messages, each prefixed by its length (4 bytes, big endian);
they are sent as they are (identity serializers: no protobuf work in the client). Request ``i``
of the measured block is frame ``(warmup + i) % len(frames)``.

Protocol with the runner: the client connects, sends ``--warmup`` requests, prints ``READY`` and
waits for a line on stdin, then runs the measured block (at most ``--count`` requests and at most
``--seconds``) with ``--concurrency`` requests in flight and prints one JSON line: successes,
errors by gRPC code, elapsed seconds and latency percentiles.

``--stream``: client streams (Envoy's ALS). Each of the ``--concurrency`` workers opens a
stream, writes up to ``--stream-messages`` frames, closes it and waits for the answer, then opens
the next one; a "request" is one message. Frame 0 is sent first on every stream (the message
with Envoy's identifier); the others are cycled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc

CALL_TIMEOUT = 10.0


def write_frames(path: Path, frames: Iterable[bytes]) -> int:
    """Write length-prefixed frames; returns how many."""
    n = 0
    with open(path, "wb") as f:
        for frame in frames:
            f.write(struct.pack(">I", len(frame)))
            f.write(frame)
            n += 1
    return n


def read_frames(path: Path) -> list[bytes]:
    """The frames of a file written by `write_frames`."""
    data = path.read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        out.append(data[pos : pos + size])
        pos += size
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The `q`-quantile (0..1) of already sorted values, nearest rank; 0 when empty."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[rank]


class Block:
    """Counters of one block of requests."""

    def __init__(self) -> None:
        self.ok = 0
        self.messages = 0
        self.errors: Counter[str] = Counter()
        self.first_error = ""
        self.latencies: list[float] = []

    def fail(self, err: grpc.aio.AioRpcError, messages: int = 1) -> None:
        self.errors[err.code().name] += messages
        if not self.first_error:
            self.first_error = f"{err.code().name}: {err.details()}"


async def unary_block(
    calls: Sequence[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]],
    frames: Sequence[bytes],
    offset: int,
    count: int,
    seconds: float,
    concurrency: int,
) -> tuple[Block, float]:
    block = Block()
    issued = 0
    deadline = time.perf_counter() + seconds
    n = len(frames)

    async def worker(call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]) -> None:
        nonlocal issued
        clock = time.perf_counter
        while issued < count and clock() < deadline:
            frame = frames[(offset + issued) % n]
            issued += 1
            start = clock()
            try:
                await call(frame, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as err:
                block.fail(err)
                continue
            block.latencies.append(clock() - start)
            block.ok += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(calls[j % len(calls)]) for j in range(concurrency)))
    return block, time.perf_counter() - start


async def stream_block(
    calls: Sequence[grpc.aio.StreamUnaryMultiCallable[bytes, bytes]],
    frames: Sequence[bytes],
    offset: int,
    count: int,
    seconds: float,
    concurrency: int,
    per_stream: int,
) -> tuple[Block, float]:
    block = Block()
    issued = 0
    deadline = time.perf_counter() + seconds
    body = frames[1:] or frames

    async def worker(call: grpc.aio.StreamUnaryMultiCallable[bytes, bytes]) -> None:
        nonlocal issued
        clock = time.perf_counter
        while issued < count and clock() < deadline:
            start = clock()
            stream = call(timeout=CALL_TIMEOUT)
            sent = 0
            try:
                await stream.write(frames[0])
                sent = 1
                issued += 1
                while sent < per_stream and issued < count and clock() < deadline:
                    await stream.write(body[(offset + issued) % len(body)])
                    sent += 1
                    issued += 1
                await stream.done_writing()
                await stream
            except grpc.aio.AioRpcError as err:
                block.fail(err, max(sent, 1))
                continue
            block.latencies.append(clock() - start)
            block.ok += 1
            block.messages += sent

    start = time.perf_counter()
    await asyncio.gather(*(worker(calls[j % len(calls)]) for j in range(concurrency)))
    return block, time.perf_counter() - start


async def run(args: argparse.Namespace) -> dict[str, object]:
    frames = read_frames(Path(args.frames))
    if not frames:
        raise SystemExit("no frames")
    # A local subchannel pool gives every channel its own connection (for SO_REUSEPORT workers).
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(args.target, options=options) for _ in range(args.channels)
    ]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 10)

        async def block(offset: int, count: int, seconds: float) -> tuple[Block, float]:
            if args.stream:
                scalls: list[grpc.aio.StreamUnaryMultiCallable[bytes, bytes]]
                scalls = [c.stream_unary(args.method) for c in channels]
                return await stream_block(
                    scalls, frames, offset, count, seconds, args.concurrency, args.stream_messages
                )
            ucalls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]
            ucalls = [c.unary_unary(args.method) for c in channels]
            return await unary_block(ucalls, frames, offset, count, seconds, args.concurrency)

        warm_errors: dict[str, int] = {}
        if args.warmup:
            warm, _ = await block(0, args.warmup, args.seconds)
            warm_errors = dict(warm.errors)
        print("READY", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "GO":
            return {"error": f"expected GO, got {line!r}"}
        result, elapsed = await block(args.warmup, args.count, args.seconds)
    finally:
        for channel in channels:
            await channel.close()
    lat = sorted(result.latencies)
    return {
        "ok": result.ok,
        "messages": result.messages,
        "errors": dict(result.errors),
        "first_error": result.first_error,
        "warmup_errors": warm_errors,
        "elapsed": elapsed,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--frames", required=True)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--stream-messages", type=int, default=100)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
