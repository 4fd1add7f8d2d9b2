"""Run `mixer serve` as a real subprocess on free loopback ports, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent

# `mixer serve --server-flavour`: the modules whose servers must behave alike on both.
FLAVOURS = ("aio", "sync")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(RuntimeError):
    """Another process bound one of the ports between choosing and binding it."""


class MixerProcess:
    """A `mixer serve` subprocess; `start()` waits for SERVING or fails loudly with its log."""

    def __init__(
        self,
        config_dir: Path,
        log_path: Path,
        *,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.credentials = credentials
        self.config_dir = config_dir
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.admin_port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._extra = list(extra_args)
        self._env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MixerProcess:
        """Start and wait for SERVING; retried on fresh ports if another process took one."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == 2:
                    raise
                self.admin_port = free_port()
                self.metrics_port = free_port()
                if not self._fixed_port:
                    self.port = free_port()
                    self.address = f"127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> MixerProcess:
        args = [
            sys.executable,
            "-m",
            "mixer",
            "serve",
            "--config-dir",
            str(self.config_dir),
            "--address",
            self.address,
            "--admin-address",
            f"127.0.0.1:{self.admin_port}",
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
            "--enable-debug",
            "--poll-interval",
            "0.5",
            "--grace-period",
            "5",
            *self._extra,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self._env}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    log = self.log()
                    self._log.close()
                    if "Address already in use" in log or "cannot listen on" in log:
                        raise PortTaken(log)
                    raise RuntimeError(f"mixer exited with {self.proc.returncode}:\n{log}")
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mixer did not become SERVING within {timeout}s:\n{self.log()}")

    def channel(self) -> grpc.Channel:
        """A channel to the gRPC port (TLS when the process was given credentials)."""
        if self.credentials is not None:
            return grpc.secure_channel(self.address, self.credentials)
        return grpc.insecure_channel(self.address)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin_get(self, path: str) -> tuple[int, str]:
        """GET a path on the admin port; returns (status, body)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=5
            ) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def debug_config(self) -> dict[str, object]:
        status, body = self.admin_get("/debug/config")
        assert status == 200, body
        result: dict[str, object] = json.loads(body)
        return result

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (kills after `timeout`)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)
