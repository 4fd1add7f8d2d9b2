"""The gRPC scenarios: each measured against the floor, legs interleaved, in one run.

A *leg* is one block of requests from `bench.loadgen` (pinned to core 1) to one server (pinned
to core 0): the client connects and warms up, then the runner reads the server's CPU time and
call counters, lets the client go, and reads them again when it is done (for reports, once the
server has finished the queued work: its CPU goes quiet). Server CPU-µs per RPC is the CPU
delta divided by the calls the server counted. Each repetition runs every scenario's floor leg
and mixer leg back to back (alternating which goes first); ratios are per repetition, then the
median.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import workload
from bench.loadgen import write_frames
from bench.proc import FloorServer, MixerServer, Server, metric_sum, pinned, wait_cpu_quiet
from bench.profile import record

SERVER_CPU = 0
CLIENT_CPU = 1

Frames = Callable[[int, str], Iterator[bytes]]


@dataclass(frozen=True)
class Scenario:
    """One measured call pattern against one server config."""

    name: str
    title: str
    config: str
    service: str
    method: str
    frames: Frames
    concurrency: int = 32
    stream: bool = False
    entries: int = 1  # attribute sets per call (report batches, ALS messages)
    pool: int = 0  # > 0: build this many frames once and cycle them (no per-call uniqueness)
    goal: str = ""
    # CPU/RPC over the sync floor's: the cheapest empty handler of any flavour (issue 23)
    goal_ratio: float | None = None
    goal_entry_us: float | None = None  # server CPU-µs per entry
    goal_skeleton_ratio: float | None = None  # CPU/RPC over the same-run skeleton's

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


MIXER = "istio.mixer.v1.Mixer"
AUTHZ = "envoy.service.auth.v3.Authorization"
ALS = "envoy.service.accesslog.v3.AccessLogService"
RLS = "envoy.service.ratelimit.v3.RateLimitService"
ALS_ENTRIES = 20
REPORT_ENTRIES = 100

_checks = workload.MixerChecks()
_authz = workload.AuthzChecks()


def _cached_checks(n: int, salt: str) -> Iterator[bytes]:
    return _checks.requests(n, salt, distinct_paths=50)


def _reports(n: int, salt: str) -> Iterator[bytes]:
    for i in range(n):
        yield workload.report_batch(i * REPORT_ENTRIES, salt, REPORT_ENTRIES)


def _proxy_reports(n: int, salt: str) -> Iterator[bytes]:
    for i in range(n):
        yield workload.proxy_report_batch(i * REPORT_ENTRIES, salt, REPORT_ENTRIES)


def _als(n: int, salt: str) -> Iterator[bytes]:
    return workload.als_messages(n, salt, ALS_ENTRIES)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("check-0", "Mixer Check, no rules", "empty", MIXER, "Check", _checks.requests),
        Scenario(
            "check-50",
            "Mixer Check, 50 rules + 3 memquota quotas",
            "policy",
            MIXER,
            "Check",
            _checks.requests,
            goal="<= 2.5x sync floor",
            goal_ratio=2.5,
        ),
        Scenario(
            "check-50-cached",
            "same, requests repeating (check cache hits)",
            "policy",
            MIXER,
            "Check",
            _cached_checks,
        ),
        Scenario(
            "check-50-redis",
            "Mixer Check, 50 rules + 3 redisquota quotas",
            "policy-redis",
            MIXER,
            "Check",
            _checks.requests,
            goal="<= 3.5x sync, <= 1 Redis cmd/check",
            goal_ratio=3.5,
        ),
        Scenario(
            "authz-50",
            "ext_authz v3, same 50 rules + 3 quotas",
            "policy",
            AUTHZ,
            "Check",
            _authz.requests,
            goal="<= 2.8x sync floor",
            goal_ratio=2.8,
        ),
        Scenario(
            "report-100",
            "Mixer Report, 100 entries, Istio metrics",
            "telemetry",
            MIXER,
            "Report",
            _reports,
            concurrency=4,
            entries=REPORT_ENTRIES,
            pool=64,
            goal="<= 1.5x skeleton",
            goal_skeleton_ratio=1.5,
        ),
        Scenario(
            "report-proxy",
            "Mixer Report, one sidecar's 100 requests, Istio metrics",
            "telemetry",
            MIXER,
            "Report",
            _proxy_reports,
            concurrency=4,
            entries=REPORT_ENTRIES,
            pool=64,
            goal="<= 1.5x skeleton",
            goal_skeleton_ratio=1.5,
        ),
        Scenario(
            "als",
            f"ALS stream, {ALS_ENTRIES} HTTP entries/message",
            "telemetry",
            ALS,
            "StreamAccessLogs",
            _als,
            concurrency=4,
            stream=True,
            entries=ALS_ENTRIES,
            pool=64,
            goal="<= 1.5x skeleton",
            goal_skeleton_ratio=1.5,
        ),
        Scenario(
            "rls-3",
            "RLS ShouldRateLimit, 3 descriptors",
            "rls",
            RLS,
            "ShouldRateLimit",
            workload.rls_requests,
        ),
    )
}


@dataclass(frozen=True)
class Budget:
    """How much each leg may do."""

    count: int
    seconds: float
    warmup: int
    report_count: int
    stream_count: int


FULL = Budget(count=25_000, seconds=5.0, warmup=1_000, report_count=2_000, stream_count=20_000)
QUICK = Budget(count=800, seconds=1.0, warmup=100, report_count=50, stream_count=600)


@dataclass
class Leg:
    """One measured block against one server."""

    server: str
    calls: int  # served, counted by the server
    client_ok: int
    errors: dict[str, int]
    first_error: str
    elapsed: float
    cpu_s: float
    p50_ms: float
    p99_ms: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s / self.calls * 1e6 if self.calls else float("nan")

    @property
    def throughput(self) -> float:
        return self.client_ok / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_share(self) -> float:
        """Fraction of one core the server used during the leg."""
        return self.cpu_s / self.elapsed if self.elapsed else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "cpu_us_per_call": self.cpu_us_per_call,
            "throughput": self.throughput,
            "cpu_share": self.cpu_share,
        }


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no output from the load generator within {timeout}s")
    return proc.stdout.readline()


class Redis:
    """The redis-server of the redisquota scenario (pinned with the client, off the server core)."""

    def __init__(self) -> None:
        from tests.redis_server import RedisServer

        self.server = RedisServer().start()
        self.client = self.server.client()
        pid = int(self.client.info("server")["process_id"])
        if (os.cpu_count() or 1) > CLIENT_CPU:
            subprocess.run(
                ["taskset", "-a", "-p", "-c", str(CLIENT_CPU), str(pid)],
                capture_output=True,
                check=False,
            )

    def stats(self) -> dict[str, float]:
        """Commands by name (calls) and CPU seconds used so far."""
        out: dict[str, float] = {
            k.removeprefix("cmdstat_"): float(v["calls"])
            for k, v in self.client.info("commandstats").items()
        }
        cpu = self.client.info("cpu")
        out["__cpu_s"] = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return out

    def close(self) -> None:
        self.client.close()
        self.server.close()


# Commands redisquota's Lua scripts run inside Redis: counted by INFO commandstats, but not sent.
_IN_SCRIPT = {
    "time",
    "get",
    "set",
    "hget",
    "hmget",
    "hset",
    "hdel",
    "hincrby",
    "pexpire",
    "expire",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zremrangebyscore",
    "zcard",
    "incrby",
    "pttl",
    "exists",
    "del",
    "setex",
    "psetex",
    "mget",
    "hgetall",
}
_MEASUREMENT = {"info", "ping", "hello", "client", "config"}


class Bench:
    """Servers, frames and legs of one run.

    With `compare_root` (another source tree, e.g. a patched copy) or `compare_flavour` (a server
    flavour, ``mixer serve --server-flavour``), every config also gets a second mixer, from that
    tree and on that flavour (server name ``<config>+B``), driven in the same repetitions;
    `flavour` is the first mixer's (None: its default).
    """

    def __init__(
        self,
        work: Path,
        budget: Budget,
        scenarios: Sequence[Scenario],
        compare_root: Path | None = None,
        *,
        flavour: str | None = None,
        compare_flavour: str | None = None,
    ) -> None:
        self.work = work
        self.compare_root = compare_root
        self.flavour = flavour
        self.compare_flavour = compare_flavour
        self.compare = compare_root is not None or compare_flavour is not None
        self.budget = budget
        self.scenarios = list(scenarios)
        self.servers: dict[str, Server] = {}
        self.redis: Redis | None = None
        self._pools: dict[str, Path] = {}

    # -- servers ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the baselines (the aio floor, the sync floor, the skeletons) and one mixer per
        config the scenarios need, all on core 0."""
        self.servers["floor"] = FloorServer(self.work / "floor.log", cpu=SERVER_CPU)
        self.servers["sync-floor"] = FloorServer(
            self.work / "sync-floor.log",
            cpu=SERVER_CPU,
            name="sync-floor",
            module="bench.skeletons",
            args=("--flavour", "sync"),
        )
        self.servers["skeleton"] = FloorServer(
            self.work / "skeleton.log", cpu=SERVER_CPU, name="skeleton", module="bench.skeletons"
        )
        for config in dict.fromkeys(s.config for s in self.scenarios):
            directory = self.work / f"config-{config}"
            if config == "empty":
                directory.mkdir(parents=True, exist_ok=True)
            elif config == "policy":
                workload.policy_config(directory)
            elif config == "policy-redis":
                self.redis = Redis()
                workload.policy_config(directory, "redisquota", self.redis.server.address)
            elif config == "telemetry":
                workload.telemetry_config(directory)
            elif config == "rls":
                workload.rls_config(directory)
            else:
                raise ValueError(config)
            self.servers[config] = MixerServer(
                f"mixer-{config}",
                directory,
                self.work / f"mixer-{config}.log",
                cpu=SERVER_CPU,
                extra_args=_flavour_args(self.flavour),
            )
            if self.compare:
                self.servers[f"{config}+B"] = MixerServer(
                    f"mixer-{config}+B",
                    directory,
                    self.work / f"mixer-{config}+B.log",
                    cpu=SERVER_CPU,
                    root=self.compare_root or workload.ROOT,
                    extra_args=_flavour_args(self.compare_flavour),
                )
        for server in self.servers.values():  # start-ups overlap
            server.launch()
        for server in self.servers.values():
            server.wait()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.redis is not None:
            self.redis.close()

    # -- frames -----------------------------------------------------------------------------

    def frames(self, scenario: Scenario, rep: int) -> Path:
        """The request file of `scenario` for repetition `rep` (pools are built once)."""
        if scenario.pool:
            path = self._pools.get(scenario.name)
            if path is None:
                path = self.work / f"{scenario.name}.frames"
                write_frames(path, scenario.frames(scenario.pool, scenario.name))
                self._pools[scenario.name] = path
            return path
        path = self.work / f"{scenario.name}-{rep}.frames"
        if not path.exists():
            n = self.budget.warmup + self._count(scenario)
            write_frames(path, scenario.frames(n, f"{scenario.name}{rep}x{time.time_ns() % 10**6}"))
        return path

    def _count(self, scenario: Scenario) -> int:
        if scenario.stream:
            return self.budget.stream_count
        if scenario.entries > 1:
            return self.budget.report_count
        return self.budget.count

    # -- one leg ----------------------------------------------------------------------------

    def _served(self, name: str, scenario: Scenario) -> dict[str, float]:
        server = self.servers[name]
        if isinstance(server, FloorServer):
            calls, messages = server.counts()
            return {"calls": float(messages if scenario.stream else calls)}
        assert isinstance(server, MixerServer)
        m = server.metrics()
        out = {
            "ok": metric_sum(
                m,
                "grpc_server_handled_total",
                grpc_service=scenario.service,
                grpc_method=scenario.method,
                grpc_code="OK",
            ),
            "all": metric_sum(
                m,
                "grpc_server_handled_total",
                grpc_service=scenario.service,
                grpc_method=scenario.method,
            ),
            "cache_hit": metric_sum(m, "mixer_check_cache_total", result="hit"),
            "cache_miss": metric_sum(m, "mixer_check_cache_total", result="miss"),
            "dropped": metric_sum(m, "mixer_report_dropped_total"),
            "entries": metric_sum(m, "mixer_reports_received_total"),
        }
        out["calls"] = out["entries"] / scenario.entries if scenario.stream else out["all"]
        return out

    def leg(
        self, name: str, scenario: Scenario, frames: Path, *, profile: Path | None = None
    ) -> Leg:
        """Drive server `name` with `scenario`'s frames; measure CPU, calls and latency.

        With `profile`, py-spy samples the server during the block (collapsed stacks there).
        """
        server = self.servers[name]
        count = self._count(scenario)
        warmup = self.budget.warmup if scenario.entries == 1 else max(4, self.budget.warmup // 50)
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--target",
            server.address,
            "--method",
            scenario.path,
            "--frames",
            str(frames),
            "--concurrency",
            str(scenario.concurrency),
            "--count",
            str(count),
            "--seconds",
            str(self.budget.seconds),
            "--warmup",
            str(warmup),
        ]
        if scenario.stream:
            argv += ["--stream", "--stream-messages", "100"]
        client = subprocess.Popen(
            pinned(CLIENT_CPU, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=workload.ROOT,
        )
        try:
            line = _readline(client, 120)
            if line.strip() != "READY":
                if server.proc is not None and server.proc.poll() is not None:
                    raise RuntimeError(
                        f"{server.name} exited ({server.proc.returncode}):\n{server.log()}"
                    )
                raise RuntimeError(f"load generator: {line.strip() or 'exited'}")
            before = self._served(name, scenario)
            redis_before = self.redis.stats() if self.redis and "redis" in name else None
            cpu0 = server.cpu()
            assert client.stdin is not None
            client.stdin.write("GO\n")
            client.stdin.flush()
            spy = None
            if profile is not None:
                spy = record(server.pid, max(1.0, self.budget.seconds - 0.5), profile)
            result = json.loads(_readline(client, self.budget.seconds + 120))
            if spy is not None:
                spy.wait(60)
            if "error" in result:
                raise RuntimeError(f"load generator: {result['error']}")
            # Reports are delivered after the RPC returns: their queued work counts too.
            cpu1 = wait_cpu_quiet(server.pid) if scenario.entries > 1 else server.cpu()
            after = self._served(name, scenario)
            client.wait(30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(10)
        delta = {k: after[k] - before[k] for k in before}
        extra: dict[str, float] = {}
        if isinstance(server, MixerServer):
            if delta["all"] != delta["ok"]:
                extra["server_errors"] = delta["all"] - delta["ok"]
            lookups = delta["cache_hit"] + delta["cache_miss"]
            if lookups:
                extra["cache_hit_ratio"] = delta["cache_hit"] / lookups
            if delta["dropped"]:
                extra["report_dropped"] = delta["dropped"]
            if scenario.entries > 1:
                extra["entries"] = delta["entries"]
        if redis_before is not None and self.redis is not None:
            redis_after = self.redis.stats()
            calls = max(1.0, delta["calls"])
            diff = {k: redis_after.get(k, 0.0) - redis_before.get(k, 0.0) for k in redis_after}
            sent = sum(
                v
                for k, v in diff.items()
                if k not in _IN_SCRIPT and k not in _MEASUREMENT and not k.startswith("__")
            )
            extra["redis_cmds_per_check"] = sent / calls
            extra["redis_evalsha_per_check"] = (
                diff.get("evalsha", 0) + diff.get("eval", 0)
            ) / calls
            extra["redis_cpu_us_per_check"] = diff["__cpu_s"] / calls * 1e6
        return Leg(
            server=name,
            calls=int(delta["calls"]),
            client_ok=int(result["messages"] if scenario.stream else result["ok"]),
            errors=result["errors"],
            first_error=result["first_error"],
            elapsed=float(result["elapsed"]),
            cpu_s=cpu1 - cpu0,
            p50_ms=float(result["p50_ms"]),
            p99_ms=float(result["p99_ms"]),
            extra=extra,
        )


@dataclass
class ScenarioResult:
    """Every repetition of one scenario, and the summary figures."""

    scenario: Scenario
    floor: list[Leg] = field(default_factory=list)
    mixer: list[Leg] = field(default_factory=list)
    skeleton: list[Leg] = field(default_factory=list)  # bench.skeletons, same API
    sync_floor: list[Leg] = field(default_factory=list)  # empty sync grpcio handler
    compare: list[Leg] = field(default_factory=list)  # the mixer of --compare-root

    def ratio(self, legs: list[Leg] | None = None, base: list[Leg] | None = None) -> float:
        """Median over repetitions of (mixer CPU/RPC) / (floor CPU/RPC).

        `legs` replaces mixer's legs, `base` the floor's (the skeleton's, the sync floor's).
        """
        legs = self.mixer if legs is None else legs
        base = self.floor if base is None else base
        return statistics.median(
            m.cpu_us_per_call / f.cpu_us_per_call for f, m in zip(base, legs, strict=True)
        )

    def median(self, legs: list[Leg], attr: str) -> float:
        return statistics.median(float(getattr(leg, attr)) for leg in legs)

    def extra(self, key: str) -> float | None:
        values = [leg.extra[key] for leg in self.mixer if key in leg.extra]
        return statistics.median(values) if values else None

    def entry_us(self) -> float:
        """Median server CPU-µs per attribute set (report entries, ALS entries)."""
        return self.median(self.mixer, "cpu_us_per_call") / self.scenario.entries

    def errors(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for leg in self.floor + self.mixer + self.skeleton + self.sync_floor:
            for code, n in leg.errors.items():
                total[f"{leg.server}:{code}"] = total.get(f"{leg.server}:{code}", 0) + n
        return total

    def met(self) -> bool | None:
        """Whether the scenario's goal was met (None: it has none)."""
        s = self.scenario
        ok: bool | None = None
        if s.goal_ratio is not None:
            ok = self.ratio(base=self.sync_floor) <= s.goal_ratio
        if s.goal_entry_us is not None:
            ok = self.entry_us() <= s.goal_entry_us
        if s.goal_skeleton_ratio is not None and self.skeleton:
            ok = self.ratio(base=self.skeleton) <= s.goal_skeleton_ratio
        if s.name == "check-50-redis" and ok is not None:
            cmds = self.extra("redis_cmds_per_check")
            ok = ok and cmds is not None and cmds <= 1.0
        if self.errors() or any("server_errors" in leg.extra for leg in self.mixer):
            ok = False
        return ok

    def as_dict(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "title": s.title,
            "config": s.config,
            "method": s.path,
            "concurrency": s.concurrency,
            "entries_per_call": s.entries,
            "goal": s.goal,
            "ratio": self.ratio(),
            "entry_us": self.entry_us() if s.entries > 1 else None,
            "met": self.met(),
            "floor": [leg.as_dict() for leg in self.floor],
            "mixer": [leg.as_dict() for leg in self.mixer],
            "compare": [leg.as_dict() for leg in self.compare],
            "compare_ratio": self.ratio(self.compare) if self.compare else None,
            "compare_sync_floor_ratio": (
                self.ratio(self.compare, base=self.sync_floor) if self.compare else None
            ),
            "skeleton": [leg.as_dict() for leg in self.skeleton],
            "skeleton_ratio": self.ratio(base=self.skeleton),
            "sync_floor": [leg.as_dict() for leg in self.sync_floor],
            "sync_floor_ratio": self.ratio(base=self.sync_floor),
        }


def run_scenarios(bench: Bench, reps: int, log: Callable[[str], None]) -> list[ScenarioResult]:
    """All legs: for each repetition, each scenario's baseline legs (aio floor, sync floor,
    skeleton) and mixer legs back to back, the order rotated per repetition."""
    results = {s.name: ScenarioResult(s) for s in bench.scenarios}
    for rep in range(reps):
        for scenario in bench.scenarios:
            frames = bench.frames(scenario, rep)
            names = ["floor", "sync-floor", "skeleton", scenario.config]
            if bench.compare:
                names.append(f"{scenario.config}+B")
            shift = rep % len(names)  # rotate who goes first
            result = results[scenario.name]
            for name in names[shift:] + names[:shift]:
                leg = bench.leg(name, scenario, frames)
                if name == "floor":
                    result.floor.append(leg)
                elif name == "sync-floor":
                    result.sync_floor.append(leg)
                elif name == "skeleton":
                    result.skeleton.append(leg)
                elif name.endswith("+B"):
                    result.compare.append(leg)
                else:
                    result.mixer.append(leg)
                log(
                    f"rep {rep + 1}/{reps} {scenario.name:<16} {name:<13} "
                    f"{leg.cpu_us_per_call:8.1f} CPU-µs/call {leg.throughput:8.0f}/s "
                    f"p50 {leg.p50_ms:6.2f} ms p99 {leg.p99_ms:6.2f} ms "
                    f"cpu {leg.cpu_share:4.0%}" + (f" errors {leg.errors}" if leg.errors else "")
                )
    return list(results.values())


def format_table(results: Sequence[ScenarioResult]) -> str:
    """The scenario table: floor and mixer side by side, medians over repetitions."""
    head = (
        f"{'scenario':<16} {'floor µs':>9} {'mixer µs':>9} {'ratio':>6} {'skel µs':>9} "
        f"{'m/skel':>6} {'sync µs':>8} {'m/sync':>6} {'floor/s':>8} "
        f"{'mixer/s':>8} {'floor p50/p99 ms':>17} {'mixer p50/p99 ms':>17}  {'goal':<34} met  notes"
    )
    lines = [
        "server CPU-µs per call (ALS: per message), throughput in calls (messages) per second, "
        "client-side latency; medians over repetitions, ratio = median of per-repetition ratios "
        "(ratio: mixer / aio floor; m/skel: mixer / skeleton; m/sync: mixer / sync floor)",
        head,
    ]
    for r in results:
        s = r.scenario
        notes: list[str] = []
        if s.entries > 1:
            floor_entry = r.median(r.floor, "cpu_us_per_call") / s.entries
            skel_entry = r.median(r.skeleton, "cpu_us_per_call") / s.entries
            notes.append(
                f"{r.entry_us():.1f} µs/entry (floor {floor_entry:.1f}, skeleton {skel_entry:.1f})"
            )
        for key, label, fmt in (
            ("cache_hit_ratio", "cache hits", "{:.0%}"),
            ("redis_cmds_per_check", "Redis cmds/check", "{:.2f}"),
            ("redis_evalsha_per_check", "EVALSHA/check", "{:.2f}"),
            ("redis_cpu_us_per_check", "Redis CPU-µs/check", "{:.1f}"),
            ("report_dropped", "DROPPED", "{:.0f}"),
            ("server_errors", "SERVER ERRORS", "{:.0f}"),
        ):
            value = r.extra(key)
            if value is not None:
                notes.append(f"{label} {fmt.format(value)}")
        if r.errors():
            notes.append(f"ERRORS {r.errors()}")
        if r.compare:
            b_us = r.median(r.compare, "cpu_us_per_call")
            b_over_a = b_us / r.median(r.mixer, "cpu_us_per_call")
            b_ratio = r.ratio(r.compare)
            b_sync = r.ratio(r.compare, base=r.sync_floor)
            notes.insert(
                0,
                f"B {b_us:.1f} µs = {b_ratio:.2f}x floor = {b_sync:.2f}x sync, B/A {b_over_a:.2f}",
            )
        met = r.met()
        lat = [
            f"{r.median(legs, 'p50_ms'):>8.2f}/{r.median(legs, 'p99_ms'):<8.2f}"
            if not s.stream  # a stream's messages are not answered one by one
            else f"{'-':>17}"
            for legs in (r.floor, r.mixer)
        ]
        lines.append(
            f"{s.name:<16} {r.median(r.floor, 'cpu_us_per_call'):>9.1f} "
            f"{r.median(r.mixer, 'cpu_us_per_call'):>9.1f} {r.ratio():>5.2f}x "
            f"{r.median(r.skeleton, 'cpu_us_per_call'):>9.1f} {r.ratio(base=r.skeleton):>5.2f}x "
            f"{r.median(r.sync_floor, 'cpu_us_per_call'):>8.1f} "
            f"{r.ratio(base=r.sync_floor):>5.2f}x "
            f"{r.median(r.floor, 'throughput'):>8.0f} {r.median(r.mixer, 'throughput'):>8.0f} "
            f"{lat[0]} {lat[1]}  "
            f"{s.goal or '-':<34} {'-' if met is None else 'yes' if met else 'NO':<4} "
            + "; ".join(notes)
        )
    return "\n".join(lines)


def _flavour_args(flavour: str | None) -> list[str]:
    return [] if flavour is None else ["--server-flavour", flavour]


def scenario_list(names: str) -> list[Scenario]:
    """Scenarios named in a comma-separated list (all when empty)."""
    if not names:
        return list(SCENARIOS.values())
    out = []
    for name in names.split(","):
        if name.strip() not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        out.append(SCENARIOS[name.strip()])
    return out


def work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mixer-bench-"))


def summary_env() -> Mapping[str, Any]:
    """What the numbers were measured on (and how busy the machine was)."""
    import google.protobuf
    import grpc

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "redis_py": redis.__version__,
    }
