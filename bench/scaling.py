"""`--workers` scaling, and memory and reload time with 1,000 rules.

Workers: ``mixer serve --workers 1`` and ``--workers 2`` on the 50-rule policy, both running at
once, unpinned, driven alternately by the same client: ``h2load`` (one C thread, 16
connections x 4 streams, so SO_REUSEPORT spreads connections over the workers) sending one
pre-encoded Check (no deduplication id) for a fixed time after a warm-up; without h2load the
Python load generator with 16 channels. Throughput is what the client completed per second;
the server side counts the calls per worker and any gRPC error.

Memory and reload: ``mixer serve`` on 1,000 rules (`bench.workload.many_rules_config`), pinned
like the scenarios. RSS after start-up; then Checks at concurrency 8 while one rule file is
touched: the reload time is from the touch until ``mixer_config_reloads_total{outcome="success"}``
has gone up on the admin port (it includes the reloader's 0.2 s debounce), and every Check of
the block must succeed. A second reload is timed with no load.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench import workload
from bench.loadgen import percentile, write_frames
from bench.proc import MixerServer, metric_sum, pinned, rss_bytes, scrape
from bench.runner import CLIENT_CPU, MIXER, SERVER_CPU, _readline
from mixer.v1 import mixer_pb2

CHECK_PATH = f"/{MIXER}/Check"


def _check_body() -> mixer_pb2.CheckRequest:
    req = mixer_pb2.CheckRequest.FromString(workload.MixerChecks().request(0, "workers"))
    req.deduplication_id = ""  # the same request again and again: no quota replay
    return req


def _h2load(port: int, body: Path, seconds: float, log: Path) -> dict[str, float]:
    seconds = max(1, round(seconds))  # h2load takes whole seconds
    argv = [
        "timeout",
        str(seconds + 30),
        "h2load",
        "-c",
        "16",
        "-m",
        "4",
        "-t",
        "1",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        str(body),
        "--warm-up-time=1",
        "-D",
        str(seconds),
        "--log-file",
        str(log),
        f"http://127.0.0.1:{port}{CHECK_PATH}",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    out = proc.stdout
    done = succeeded = 0
    for line in out.splitlines():
        if line.startswith("requests:"):
            parts = line.replace(",", "").split()
            done = int(parts[parts.index("done") - 1])
            succeeded = int(parts[parts.index("succeeded") - 1])
    if not done:
        raise RuntimeError(f"h2load completed no request:\n{out[-2000:]}\n{proc.stderr[-2000:]}")
    durations: list[float] = []
    if log.exists():
        for line in log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 3:
                durations.append(int(fields[2]) / 1e3)
        log.unlink()
    durations.sort()
    return {
        "done": done,
        "succeeded": succeeded,
        "throughput": succeeded / seconds,
        "p50_ms": percentile(durations, 0.5),
        "p99_ms": percentile(durations, 0.99),
    }


def _python_client(address: str, frames: Path, seconds: float) -> dict[str, float]:
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--target",
        address,
        "--method",
        CHECK_PATH,
        "--frames",
        str(frames),
        "--concurrency",
        "64",
        "--channels",
        "16",
        "--count",
        "10000000",
        "--seconds",
        str(seconds),
        "--warmup",
        "500",
    ]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None
        if _readline(proc, 120).strip() != "READY":
            raise RuntimeError("load generator failed")
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        result = json.loads(_readline(proc, seconds + 120))
    finally:
        if proc.poll() is None:
            proc.wait(30)
    return {
        "done": result["ok"] + sum(result["errors"].values()),
        "succeeded": result["ok"],
        "throughput": result["ok"] / result["elapsed"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
    }


def workers_scaling(
    work: Path, reps: int, seconds: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Throughput and server CPU per call (every process of the server, from /proc, over the
    calls its workers counted) of 1 and 2 workers, interleaved over `reps`; median ratios 2/1."""
    config = workload.policy_config(work / "config-workers")
    req = _check_body()
    body = work / "check.grpc"
    message = req.SerializeToString()
    body.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    frames = work / "check-workers.frames"
    write_frames(frames, [message])
    client = "h2load" if shutil.which("h2load") else "python"
    servers = {
        n: MixerServer(
            f"mixer-workers{n}", config, work / f"mixer-workers{n}.log", cpu=None, workers=n
        )
        for n in (1, 2)
    }
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    try:
        for server in servers.values():
            server.start()
        for rep in range(reps):
            for n in (1, 2) if rep % 2 == 0 else (2, 1):
                server = servers[n]
                per_worker0 = [
                    metric_sum(
                        scrape(server.admin_port + k),
                        "grpc_server_handled_total",
                        grpc_method="Check",
                    )
                    for k in range(n)
                ]
                errors0 = _errors(server)
                cpu0 = server.cpu()
                if client == "h2load":
                    r = _h2load(server.port, body, seconds, work / "h2load.log")
                else:
                    r = _python_client(server.address, frames, seconds)
                r["cpu_s"] = server.cpu() - cpu0
                per_worker = [
                    metric_sum(
                        scrape(server.admin_port + k),
                        "grpc_server_handled_total",
                        grpc_method="Check",
                    )
                    - per_worker0[k]
                    for k in range(n)
                ]
                r["worker_share"] = min(per_worker) / max(1.0, sum(per_worker)) if n > 1 else 1.0
                # Every process of the server (supervisor and workers, from /proc) per call
                # that the workers served.
                r["calls"] = sum(per_worker)
                r["cpu_us_per_call"] = r["cpu_s"] / max(1.0, r["calls"]) * 1e6
                r["server_errors"] = _errors(server) - errors0
                r["failed"] = r["done"] - r["succeeded"]
                runs[n].append(r)
                log(
                    f"rep {rep + 1}/{reps} workers={n} {r['throughput']:8.0f}/s "
                    f"p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:6.2f} ms "
                    f"least-loaded worker {r['worker_share']:.0%} errors {r['server_errors']:.0f} "
                    f"server {r['cpu_us_per_call']:.1f} CPU-µs/call"
                )
    finally:
        for server in servers.values():
            server.stop()
    ratios = [b["throughput"] / a["throughput"] for a, b in zip(runs[1], runs[2], strict=True)]
    cpu_ratios = [
        b["cpu_us_per_call"] / a["cpu_us_per_call"] for a, b in zip(runs[1], runs[2], strict=True)
    ]
    errors = sum(r["server_errors"] + r["failed"] for rs in runs.values() for r in rs)
    # One worker is not one core: gRPC's own threads run beside the event loop.
    return {
        "cores_busy_1": statistics.median(r["cpu_s"] for r in runs[1]) / seconds,
        "cores_busy_2": statistics.median(r["cpu_s"] for r in runs[2]) / seconds,
        "client": client,
        "cpus": os.cpu_count(),
        "seconds": seconds,
        "runs": {str(n): r for n, r in runs.items()},
        "throughput_1": statistics.median(r["throughput"] for r in runs[1]),
        "throughput_2": statistics.median(r["throughput"] for r in runs[2]),
        "ratio": statistics.median(ratios),
        "cpu_us_per_call_1": statistics.median(r["cpu_us_per_call"] for r in runs[1]),
        "cpu_us_per_call_2": statistics.median(r["cpu_us_per_call"] for r in runs[2]),
        # Scaling efficiency: server CPU per call of 2 workers over 1 worker's (goal <= 1.1).
        "cpu_ratio": statistics.median(cpu_ratios),
        "cpu_met": statistics.median(cpu_ratios) <= 1.1 and not errors,
        "errors": errors,
        "met": statistics.median(ratios) >= 1.7 and not errors,
    }


def _check_load(address: str, frames: Path, seconds: float) -> subprocess.Popen[str]:
    """A load generator sending Checks from `frames` at concurrency 8 for `seconds`, started,
    warmed up and READY: write ``GO`` to its stdin to start the timed part."""
    argv = [
        sys.executable, "-m", "bench.loadgen",
        "--target", address,
        "--method", CHECK_PATH,
        "--frames", str(frames),
        "--concurrency", "8",
        "--count", str(int(seconds * 4000)),
        "--seconds", str(seconds),
        "--warmup", "500",
    ]  # fmt: skip
    client = subprocess.Popen(
        pinned(CLIENT_CPU, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    if _readline(client, 120).strip() != "READY":
        client.kill()
        client.wait(30)
        raise RuntimeError("load generator failed")
    return client


def _errors(server: MixerServer) -> float:
    m = server.metrics()
    return metric_sum(m, "grpc_server_handled_total", grpc_method="Check") - metric_sum(
        m, "grpc_server_handled_total", grpc_method="Check", grpc_code="OK"
    )


def _reloads(server: MixerServer) -> float:
    return metric_sum(server.metrics(), "mixer_config_reloads_total", outcome="success")


def _touch_and_wait(server: MixerServer, path: Path, timeout: float = 30.0) -> float:
    """Touch `path`; seconds until the server reports one more successful reload."""
    before = _reloads(server)
    start = time.monotonic()
    os.utime(path)
    while time.monotonic() - start < timeout:
        if _reloads(server) > before:
            return time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError(f"no successful reload within {timeout}s:\n{server.log()}")


def _hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_and_reload(
    work: Path, seconds: float, log: Callable[[str], None], rules: int = 1000
) -> dict[str, Any]:
    """RSS with `rules` rules, reload time under load and idle, and failed requests."""
    config = workload.many_rules_config(work / "config-1000", rules)
    frames = work / "reload.frames"
    write_frames(frames, workload.MixerChecks().requests(500 + int(seconds * 4000), "reload"))
    server = MixerServer("mixer-1000", config, work / "mixer-1000.log", cpu=SERVER_CPU)
    started = time.monotonic()
    server.start()
    startup_s = time.monotonic() - started
    try:
        rss_start = rss_bytes(server.pid)
        client = _check_load(server.address, frames, seconds)
        try:
            assert client.stdin is not None
            errors0 = _errors(server)
            client.stdin.write("GO\n")
            client.stdin.flush()
            time.sleep(min(1.5, seconds / 4))
            reload_loaded_s = _touch_and_wait(server, config / "rules0.yaml")
            result = json.loads(_readline(client, seconds + 120))
        finally:
            if client.poll() is None:
                client.wait(30)
        server_errors = _errors(server) - errors0
        rss_loaded = rss_bytes(server.pid)
        time.sleep(0.5)
        reload_idle_s = _touch_and_wait(server, config / "rules1.yaml")
        time.sleep(0.5)
        rss_end = rss_bytes(server.pid)
        hwm = _hwm_bytes(server.pid)
    finally:
        server.stop()
    failed = sum(result["errors"].values()) + server_errors
    out = {
        "rules": rules,
        "startup_s": startup_s,
        "rss_start_mb": rss_start / 2**20,
        "rss_after_load_mb": rss_loaded / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "rss_peak_mb": hwm / 2**20,
        "reload_under_load_s": reload_loaded_s,
        "reload_idle_s": reload_idle_s,
        "checks_ok": result["ok"],
        "checks_failed": failed,
        "first_error": result["first_error"],
        "throughput": result["ok"] / result["elapsed"],
        "p99_ms": result["p99_ms"],
    }
    out["met"] = (
        max(out["rss_peak_mb"], out["rss_end_mb"]) < 300
        and max(reload_loaded_s, reload_idle_s) < 2.0
        and failed == 0
    )
    log(
        f"1,000 rules: start-up {startup_s:.1f} s, RSS {out['rss_start_mb']:.0f} MB -> "
        f"{out['rss_end_mb']:.0f} MB (peak {out['rss_peak_mb']:.0f} MB), reload "
        f"{reload_loaded_s:.2f} s under load / {reload_idle_s:.2f} s idle, "
        f"{result['ok']} checks ok, {failed} failed"
    )
    return out


def _write_rules(path: Path, docs: list[dict[str, Any]], every: str, first: str) -> None:
    """Write `docs` to `path` with `every` appended to each rule's match and `first` also to
    the first rule's."""
    edited = copy.deepcopy(docs)
    seen = False
    for doc in edited:
        spec = doc.get("spec") or {}
        if doc.get("kind") == "rule" and spec.get("match"):
            suffix = every + ("" if seen else first)
            if suffix:
                spec["match"] = f"({spec['match']}){suffix}"
            seen = True
    path.write_text(workload._dump(edited))


def _write_all(originals: dict[Path, list[dict[str, Any]]], every: str) -> None:
    for path, docs in originals.items():
        _write_rules(path, docs, every, "")


def _load_seconds(server: MixerServer) -> float:
    return metric_sum(server.metrics(), "mixer_config_last_load_seconds")


def _settle(server: MixerServer, quiet: float = 1.0) -> None:
    """Wait until no reload has happened for `quiet` seconds: writing several files can wake
    the watcher more than once, and a late reload must not be taken for the next edit's."""
    count, since = _reloads(server), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = _reloads(server)
        if now != count:
            count, since = now, time.monotonic()


def _edit_and_wait(
    server: MixerServer, edit: Callable[[], None], timeout: float = 30.0
) -> tuple[float, float]:
    """Apply `edit`; (seconds until the server reports one more successful reload, seconds the
    load itself took by the server's ``mixer_config_last_load_seconds``)."""
    before = _reloads(server)
    start = time.monotonic()
    edit()
    while time.monotonic() - start < timeout:
        try:
            if _reloads(server) > before:
                found = time.monotonic() - start, _load_seconds(server)
                _settle(server)
                return found
        except OSError:  # the admin port is slow to answer while a load runs: ask again
            pass
        time.sleep(0.02)
    raise TimeoutError(f"no successful reload within {timeout}s:\n{server.log()}")


def edit_one_rule(
    work: Path, reps: int, log: Callable[[str], None], rules: int = 1000
) -> dict[str, Any]:
    """1,000 rules in 10 files, under Check load: the reload after editing one rule of one file
    (warm: one file re-parsed, one expression compiled) against the reload after editing every
    rule of every file (cold: every file re-parsed, every match compiled), alternated `reps`
    times in the same server; every Check of the block must succeed."""
    config = workload.many_rules_config(work / "config-1000-edit", rules)
    files = sorted(config.glob("rules*.yaml"))
    originals = {f: [d for d in yaml.safe_load_all(f.read_text()) if d] for f in files}
    seconds = 3.0 + reps * 4.0
    frames = work / "edit.frames"
    write_frames(frames, workload.MixerChecks().requests(500 + int(seconds * 4000), "edit"))
    server = MixerServer("mixer-1000-edit", config, work / "mixer-1000-edit.log", cpu=SERVER_CPU)
    server.start()
    warm: list[float] = []
    cold: list[float] = []
    warm_wall: list[float] = []
    try:
        client = _check_load(server.address, frames, seconds)
        try:
            assert client.stdin is not None
            errors0 = _errors(server)
            client.stdin.write("GO\n")
            client.stdin.flush()
            time.sleep(0.5)
            every = ""
            for rep in range(reps):
                # New suffixes each time: no edited expression was ever compiled before.
                one = f" && {rep + 1} > 0"
                edit_one = functools.partial(
                    _write_rules, files[5], originals[files[5]], every, one
                )
                wall, load = _edit_and_wait(server, edit_one)
                warm.append(load)
                warm_wall.append(wall)
                every = f" && {rep + 1} >= 0"
                edit_every = functools.partial(_write_all, originals, every)
                _, load = _edit_and_wait(server, edit_every)
                cold.append(load)
            result = json.loads(_readline(client, seconds + 120))
        finally:
            if client.poll() is None:
                client.wait(30)
        server_errors = _errors(server) - errors0
    finally:
        server.stop()
    failed = sum(result["errors"].values()) + server_errors
    out = {
        "rules": rules,
        "files": len(files),
        "reps": reps,
        "warm_s": warm,
        "cold_s": cold,
        "warm_wall_s": warm_wall,
        "warm_median_s": statistics.median(warm),
        "cold_median_s": statistics.median(cold),
        "ratio": statistics.median(warm) / statistics.median(cold),
        "checks_ok": result["ok"],
        "checks_failed": failed,
        "first_error": result["first_error"],
    }
    out["met"] = max(warm) < 0.2 and failed == 0
    log(
        f"edit one rule of {rules} in {len(files)} files: reload {out['warm_median_s']:.3f} s "
        f"(one file) vs {out['cold_median_s']:.3f} s (every file), {result['ok']} checks ok, "
        f"{failed} failed"
    )
    return out
