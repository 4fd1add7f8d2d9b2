"""`--workers N`: N processes share the gRPC port; signals reach all of them."""

from __future__ import annotations

import signal
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


def test_two_workers_serve_one_port_and_stop_together(
    start_mixer: Start, empty_config: Path
) -> None:
    mixer = start_mixer(empty_config, extra_args=["--workers", "2"])
    assert mixer.proc is not None
    workers = children(mixer.proc.pid)
    assert len(workers) == 2
    # each worker's admin port is the configured one plus its index
    assert mixer.admin_get("/readyz")[0] == 200
    with MixerClient(mixer.address) as client:
        for _ in range(20):
            assert client.check({"request.path": "/"}).valid_use_count == 10000
    mixer.signal(signal.SIGTERM)
    assert mixer.proc.wait(20) == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
