"""Processes under test: start them pinned, read their CPU time and memory from /proc, scrape them.

CPU time is the process's own ``utime + stime`` from ``/proc/<pid>/stat`` (all threads), plus its
descendants' for ``mixer serve --workers N`` (the supervisor forks the workers). Memory is
``VmRSS`` from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

COUNT_METHOD = "/bench.Floor/Count"  # bench.floor's (not imported: that would load its server)
ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> int:
    """The first of `n` consecutive loopback ports that were all free a moment ago."""
    for _ in range(100):
        first = free_port()
        if first + n > 65536:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first + 1, first + n):
                    s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {n} consecutive free ports")


def pinned(cpu: int | None, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed with ``taskset -c <cpu>`` (unchanged when `cpu` is None or no taskset)."""
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) <= cpu:
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]


def can_pin() -> bool:
    """Whether the server/client split over cores 0 and 1 is possible here."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _own_cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may contain spaces; fields after it start past the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """CPU seconds (user + system, all threads) used so far by `pid` (and its descendants)."""
    pids = [pid]
    if tree:
        i = 0
        while i < len(pids) and i < 1000:
            pids += _children(pids[i])
            i += 1
    return sum(_own_cpu_ticks(p) for p in pids) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wait_cpu_quiet(
    pid: int, *, tree: bool = False, interval: float = 0.2, timeout: float = 15.0
) -> float:
    """Wait until `pid` stops using CPU (work queued by the load has finished); returns the CPU.

    Quiet means under 5 % of one core over `interval` twice in a row. Bounded by `timeout`.
    """
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid, tree=tree)
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        time.sleep(interval)
        now = cpu_seconds(pid, tree=tree)
        quiet = quiet + 1 if now - last <= 0.05 * interval else 0
        last = now
    return last


def http_get(url: str, timeout: float = 5.0) -> str:
    """The body of a GET on a loopback URL (raises on errors)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body: bytes = r.read()
        return body.decode()


def scrape(admin_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    text = http_get(f"http://127.0.0.1:{admin_port}/metrics")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_sum(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for (sample_name, sample_labels), value in samples.items():
        if sample_name != name:
            continue
        have = dict(sample_labels)
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


class Server:
    """A server subprocess (pinned to one core or not) that answers gRPC health when ready."""

    def __init__(
        self, name: str, argv: Sequence[str], port: int, log_path: Path, root: Path = ROOT
    ) -> None:
        self.name = name
        self.root = root
        self.argv = list(argv)
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        """Start and wait until ready; raises with the log tail otherwise."""
        self.launch()
        return self.wait(timeout)

    def launch(self) -> None:
        """Start the process without waiting (see `wait`)."""
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        env = {**os.environ, "PYTHONPATH": str(self.root)}
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.root
        )

    def wait(self, timeout: float = START_TIMEOUT) -> Server:
        """Wait until gRPC health says SERVING; raises with the log tail otherwise."""
        assert self.proc is not None, f"{self.name} was not launched"
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log()}"
                    )
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become SERVING within {timeout}s:\n{self.log()}")

    def cpu(self) -> float:
        """CPU seconds the server has used so far."""
        return cpu_seconds(self.pid)

    def log(self) -> str:
        """The last 4,000 characters of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, SIGKILL after `timeout`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


class MixerServer(Server):
    """``python -m mixer serve`` on loopback ports, from the source tree `root` (this one)."""

    def __init__(
        self,
        name: str,
        config_dir: Path,
        log_path: Path,
        *,
        cpu: int | None,
        workers: int = 1,
        root: Path = ROOT,
        extra_args: Sequence[str] = (),
    ) -> None:
        port = free_port()
        # Worker k listens on admin and metrics port + k (mixer.server.workers).
        self.admin_port = free_ports(workers)
        self.metrics_port = free_ports(workers)
        self.workers = workers
        self.config_dir = config_dir
        argv = [
            sys.executable,
            "-m",
            "mixer",
            "serve",
            "--config-dir",
            str(config_dir),
            "--address",
            f"127.0.0.1:{port}",
            "--admin-address",
            f"127.0.0.1:{self.admin_port}",
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
            "--workers",
            str(workers),
            *extra_args,
        ]
        super().__init__(name, pinned(cpu, argv), port, log_path, root)

    def wait(self, timeout: float = START_TIMEOUT) -> MixerServer:
        super().wait(timeout)
        # With --workers N, health answers once one worker serves; wait for every admin port.
        deadline = time.monotonic() + timeout
        for k in range(self.workers):
            while True:
                try:
                    http_get(f"http://127.0.0.1:{self.admin_port + k}/readyz", timeout=1)
                    break
                except (OSError, urllib.error.URLError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{self.name} worker {k} not ready:\n{self.log()}"
                        ) from None
                    time.sleep(0.05)
        return self

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every worker's admin /metrics samples, summed per series."""
        total: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for k in range(self.workers):
            for key, value in scrape(self.admin_port + k).items():
                total[key] = total.get(key, 0.0) + value
        return total

    def handled(self, service: str, method: str, code: str = "OK") -> float:
        """RPCs of `service`/`method` completed with `code`, over all workers."""
        return metric_sum(
            self.metrics(),
            "grpc_server_handled_total",
            grpc_service=service,
            grpc_method=method,
            grpc_code=code,
        )

    def cpu(self) -> float:
        return cpu_seconds(self.pid, tree=self.workers > 1)


class FloorServer(Server):
    """`bench.floor`: the empty-handler baseline of the same server flavour.

    With `module` (``bench.skeletons``), another baseline that counts its calls the same way.
    """

    def __init__(
        self,
        log_path: Path,
        *,
        cpu: int | None,
        name: str = "floor",
        module: str = "bench.floor",
        args: Sequence[str] = (),
    ) -> None:
        port = free_port()
        argv = [sys.executable, "-m", module, "--port", str(port), *args]
        super().__init__(name, pinned(cpu, argv), port, log_path)

    def counts(self) -> tuple[int, int]:
        """(unary calls, stream messages) the floor has served so far."""
        with grpc.insecure_channel(self.address) as channel:
            count: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(COUNT_METHOD)
            raw = count(b"", timeout=5)
        calls, messages = raw.decode().split()
        return int(calls), int(messages)
