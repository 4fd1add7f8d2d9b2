"""Shared fixtures: a real mixer subprocess (and, from tests.redis_server, a real redis-server)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest

from tests.mixer_process import ROOT, MixerProcess
from tests.shared_data import shared_root

SHARED = shared_root()  # MIXER_SHARED_DIR; tests/shared_data.py

pytest_plugins = ["tests.redis_server"]


@pytest.fixture
def server_flavour() -> str:
    """The `--server-flavour` of the mixers `start_mixer` starts (mixer's default); a module
    that must hold on both flavours overrides it with one parametrized by
    `tests.mixer_process.FLAVOURS`."""
    return "sync"


@pytest.fixture
def start_mixer(tmp_path: Path, server_flavour: str) -> Iterator[Callable[..., MixerProcess]]:
    """Start `mixer serve` on free loopback ports: start_mixer(config_dir, extra_args=...)."""
    started: list[MixerProcess] = []

    def start(
        config_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> MixerProcess:
        if config_dir is None:
            config_dir = tmp_path / f"rules{len(started)}"
            shutil.copytree(ROOT / "rules", config_dir)
        proc = MixerProcess(
            config_dir,
            tmp_path / f"mixer{len(started)}.log",
            extra_args=[*extra_args, "--server-flavour", server_flavour],
            env=env,
            port=port,
            credentials=credentials,
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a mixer subprocess that installs tests/plugins/sleepy.py as an entry point.

    A dist-info folder on PYTHONPATH is all `importlib.metadata` needs to find the plugin.
    """
    site = tmp_path / "plugin-site"
    dist = site / "mixer_test_plugins-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mixer-test-plugins\nVersion: 0.0\n"
    )
    (dist / "entry_points.txt").write_text("[mixer.adapters]\nsleepy = tests.plugins.sleepy:INFO\n")
    return {"PYTHONPATH": f"{ROOT}:{site}"}


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    """A config directory with no rules (only the default vocabulary applies)."""
    directory = tmp_path / "empty-rules"
    directory.mkdir()
    return directory
