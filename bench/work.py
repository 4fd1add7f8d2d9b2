"""Work per call, counted rather than timed: a noise-free A/B for changes to the hot paths.

``python -m bench.work [scenarios] [--compare-root DIR] [--top N]`` runs the gRPC scenarios'
own requests through the real servicers in process (no gRPC, no sockets) and counts, per call
(per entry for reports), the Python bytecode instructions executed, the Python function calls
and the calls into C. The counts do not move with the machine's load, unlike the CPU times of
``python -m bench``, which two runs of one commit can disagree on by 25 %; they miss what C code
costs inside a call, so they complement the timed figures rather than replace them.

``--compare-root DIR`` counts the same requests with the source tree at DIR (a worktree of
another commit) and prints this tree's counts as a ratio to DIR's. ``--top N`` lists the N
functions that execute the most instructions.

Scenarios: the in-process ones of `bench.runner` (``check-0``, ``check-50``, ``check-50-cached``,
``authz-50``, ``report-100``, ``report-proxy``, ``als``). Warm-up calls first fill the caches
and let the check cache settle (it decides after 1,024 lookups whether hits are common enough to
be worth it). An ``als`` call is one message of a stream (counted per entry): the warm-up
messages are one stream and the measured ones another, each opened by a message with the
identifier, as Envoy's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from bench import runner, workload

SCENARIOS = (
    "check-0",
    "check-50",
    "check-50-cached",
    "authz-50",
    "report-100",
    "report-proxy",
    "als",
)
# The servicers take a grpc context for peer identity, which these configs do not use.
_NO_CONTEXT: Any = None


@dataclass
class Work:
    """Counts per call (or per report entry) for one scenario."""

    scenario: str
    per: str
    instructions: float
    python_calls: float
    c_calls: float
    top: list[tuple[str, float]] = field(default_factory=list)


def _config(kind: str, directory: Path) -> Path:
    if kind == "empty":
        directory.mkdir(parents=True)
        return directory
    if kind == "policy":
        return workload.policy_config(directory)
    if kind == "telemetry":
        return workload.telemetry_config(directory)
    raise SystemExit(f"bench.work: scenarios on the {kind!r} config are not supported")


def _unframed(frame: bytes) -> bytes:
    """A gRPC length-prefixed message's payload (the frames files hold them framed)."""
    if frame[:1] == b"\0" and int.from_bytes(frame[1:5], "big") == len(frame) - 5:
        return frame[5:]
    return frame


async def _count(name: str, calls: int, warmup: int, top: int) -> Work:
    from mixer.api.authz_servicer import AuthorizationService
    from mixer.api.mixer_servicer import MixerService
    from mixer.envoy.service.auth.v3 import external_auth_pb2
    from mixer.runtime.build import build_runtime, load_snapshot
    from mixer.runtime.runtime import RuntimeHolder
    from mixer.v1 import mixer_pb2

    try:
        from mixer.telemetry import ServerMetrics
    except ImportError:  # a tree from before telemetry moved out of mixer/server (A/B runs)
        from mixer.server.telemetry import ServerMetrics  # type: ignore[no-redef]
    report_type: Any = mixer_pb2.ReportRequest
    with contextlib.suppress(ImportError):  # the server's own class, where the tree has one
        from mixer.attributes.lazy import LazyReportRequest as report_type

    scenario = runner.SCENARIOS[name]
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(scenario.config, Path(tmp) / "config")
        metrics = ServerMetrics.create()
        runtime = await build_runtime(
            load_snapshot(config), metrics, revision="work", metrics_registry=CollectorRegistry()
        )
    holder = RuntimeHolder(runtime)
    call: Callable[[Any, Any], Any]
    if scenario.service == runner.ALS:
        return await _count_als(scenario, holder, metrics, calls, warmup, top)
    if scenario.service == runner.AUTHZ:
        call = AuthorizationService(holder, metrics).check
        parse: Callable[[bytes], Any] = external_auth_pb2.CheckRequest.FromString
    elif scenario.method == "Check":
        call = MixerService(holder, metrics).check
        parse = mixer_pb2.CheckRequest.FromString
    else:
        call = MixerService(holder, metrics).report
        parse = report_type.FromString
    frames = scenario.frames(warmup + calls, "work")
    requests = [parse(_unframed(f)) for f in frames]

    for request in requests[:warmup]:
        await call(request, _NO_CONTEXT)
    await _settle()
    measured = requests[warmup:]

    async def run() -> None:
        for request in measured:
            await call(request, _NO_CONTEXT)

    return await _counted(scenario, calls, top, run)


async def _settle() -> None:
    # Report instances are handled by the adapters' queue workers: let them finish.
    for _ in range(20):
        await asyncio.sleep(0.01)


async def _counted(
    scenario: runner.Scenario, calls: int, top: int, run: Callable[[], Awaitable[None]]
) -> Work:
    """Count what `run()` (`calls` calls of `scenario`) and the work it queues execute."""
    counts = Counter[str]()
    by_function = Counter[tuple[str, str]]()

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts["instructions"] += 1
            code = frame.f_code
            by_function[(code.co_filename, code.co_name)] += 1
        return trace

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            counts["python_calls"] += 1
        elif event == "c_call":
            counts["c_calls"] += 1

    sys.setprofile(profile)
    sys.settrace(trace)
    try:
        await run()
        await _settle()
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    per = calls * scenario.entries
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    return Work(
        scenario.name,
        "entry" if scenario.entries > 1 else "call",
        counts["instructions"] / per,
        counts["python_calls"] / per,
        counts["c_calls"] / per,
        [
            (f"{path.removeprefix(root)}:{function}", n / per)
            for (path, function), n in by_function.most_common(top)
        ],
    )


async def _count_als(
    scenario: runner.Scenario, holder: Any, metrics: Any, calls: int, warmup: int, top: int
) -> Work:
    from mixer.api.accesslog_servicer import AccessLogService
    from mixer.envoy.service.accesslog.v3 import als_pb2

    message_type: Any = als_pb2.StreamAccessLogsMessage
    with contextlib.suppress(ImportError):  # the server's own class, where the tree has one
        from mixer.attributes.lazy import LazyStreamAccessLogsMessage as message_type

    parse = message_type.FromString
    messages = [parse(_unframed(f)) for f in scenario.frames(warmup + calls, "work")]
    # Each stream opens with the identifier, as Envoy's do (the frames carry it once).
    messages[warmup].identifier.CopyFrom(messages[0].identifier)
    service = AccessLogService(holder, metrics)

    async def stream(part: list[Any]) -> None:
        async def requests() -> AsyncIterator[Any]:
            for message in part:
                yield message

        await service.stream(requests(), _NO_CONTEXT)

    await stream(messages[:warmup])
    await _settle()
    return await _counted(scenario, calls, top, lambda: stream(messages[warmup:]))


def count(names: list[str], calls: int, warmup: int, top: int = 0) -> list[Work]:
    """Count `calls` calls of each scenario after `warmup` calls."""
    return [asyncio.run(_count(name, calls, warmup, top)) for name in names]


def _count_in(root: Path, names: list[str], calls: int, warmup: int) -> list[Work]:
    # This file, run as a script with `root` first on the path: the service and the requests
    # come from `root`, the counting from here (so that `root` may predate this module).
    argv = [sys.executable, str(Path(__file__).resolve()), ",".join(names)]
    argv += ["--calls", str(calls), "--warmup", str(warmup), "--json"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench.work in {root} failed:\n{done.stderr}")
    return [Work(**w) for w in json.loads(done.stdout)]


def format_table(works: list[Work], baseline: list[Work] | None) -> str:
    """The counts, and the ratio to `baseline` (same scenarios) when given."""
    head = f"{'scenario':<16} {'per':<6} {'instructions':>12} {'py calls':>9} {'C calls':>8}"
    lines = [head + ("  instructions vs baseline" if baseline else "")]
    for i, w in enumerate(works):
        line = (
            f"{w.scenario:<16} {w.per:<6} {w.instructions:>12.0f} {w.python_calls:>9.1f} "
            f"{w.c_calls:>8.1f}"
        )
        if baseline:
            b = baseline[i]
            line += f"  {w.instructions / b.instructions:.3f}x ({b.instructions:.0f})"
        lines.append(line)
        lines.extend(f"    {n:>10.1f}  {where}" for where, n in w.top)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.work", description=__doc__)
    parser.add_argument("scenarios", nargs="?", default=",".join(SCENARIOS))
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=1200)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--compare-root", type=Path)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    works = count(names, args.calls, args.warmup, args.top)
    if args.json:
        print(json.dumps([asdict(w) for w in works]))
        return 0
    baseline = None
    if args.compare_root is not None:
        baseline = _count_in(args.compare_root.resolve(), names, args.calls, args.warmup)
    print(format_table(works, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
