"""Shared fixtures: a real mixer subprocess (and, from tests.redis_server, a real redis-server)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.mixer_process import ROOT, MixerProcess

SHARED = ROOT.parent / "shared"


@pytest.fixture
def start_mixer(tmp_path: Path) -> Iterator[Callable[..., MixerProcess]]:
    """Start `mixer serve` on free loopback ports: start_mixer(config_dir, extra_args=...)."""
    started: list[MixerProcess] = []

    def start(
        config_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> MixerProcess:
        if config_dir is None:
            config_dir = tmp_path / f"rules{len(started)}"
            shutil.copytree(ROOT / "rules", config_dir)
        proc = MixerProcess(
            config_dir,
            tmp_path / f"mixer{len(started)}.log",
            extra_args=extra_args,
            env=env,
            port=port,
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    """A config directory with no rules (only the default vocabulary applies)."""
    directory = tmp_path / "empty-rules"
    directory.mkdir()
    return directory
