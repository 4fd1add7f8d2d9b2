"""A config directory that is a git work tree reports its commit as the active revision."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.live import metric, write_rule
from tests.mixer_process import MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


def git(directory: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@example.com",
         *args],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return result.stdout.strip()


def test_active_revision_is_the_commit_and_follows_new_commits(
    start_mixer: Start, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    git(rules, "init", "-q")
    write_rule(rules)
    git(rules, "add", "-A")
    git(rules, "commit", "-qm", "deny reviews v3")
    first = git(rules, "rev-parse", "HEAD")
    mixer = start_mixer(rules)
    assert mixer.debug_config()["revision"] == first
    assert metric(mixer, "mixer_config_info", revision=first) == 1
    write_rule(rules, match="false")
    git(rules, "commit", "-qam", "allow everything")
    second = git(rules, "rev-parse", "HEAD")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and mixer.debug_config()["revision"] != second:
        time.sleep(0.05)
    assert mixer.debug_config()["revision"] == second
    assert metric(mixer, "mixer_config_info", revision=second) == 1
    assert metric(mixer, "mixer_config_info", revision=first) == 0
    assert f'"revision": "{second}"' in mixer.log()
