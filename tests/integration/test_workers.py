"""`--workers N`: N processes share the gRPC port; signals reach all of them."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from mixer.client import MixerClient
from tests.mixer_process import MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def wait_ready(port: int, timeout: float = 20.0) -> int:
    """The status of /readyz on an admin port, once it answers (workers start independently:
    the shared gRPC port can be served by one before the other has opened its admin port)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                return int(r.status)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_two_workers_serve_one_port_and_stop_together(
    start_mixer: Start, empty_config: Path
) -> None:
    mixer = start_mixer(empty_config, extra_args=["--workers", "2"])
    assert mixer.proc is not None
    workers = children(mixer.proc.pid)
    assert len(workers) == 2
    # each worker's admin port is the configured one plus its index
    assert wait_ready(mixer.admin_port) == 200
    assert wait_ready(mixer.admin_port + 1) == 200
    with MixerClient(mixer.address) as client:
        for _ in range(20):
            assert client.check({"request.path": "/"}).valid_use_count == 10000
    mixer.signal(signal.SIGTERM)
    assert mixer.proc.wait(20) == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
