"""The lock: pyproject.toml, uv.lock and requirements/ agree, and the ranges admit what the
generated protobuf code needs at run time."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.mixer_process import ROOT

LOCK_FILES = ("dev", "pyproject.toml", "uv.lock", "requirements")


def _lock_check(tree: Path) -> subprocess.CompletedProcess[str]:
    """``./dev lock --check`` run in `tree` against this interpreter's venv."""
    env = {**os.environ, "MIXER_VENV": sys.prefix}
    return subprocess.run(
        ["bash", str(tree / "dev"), "lock", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in LOCK_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def test_the_committed_lock_agrees_with_pyproject(tree: Path) -> None:
    done = _lock_check(tree)
    assert done.returncode == 0, done.stderr


def test_a_range_changed_without_a_new_lock_fails_naming_the_command(tree: Path) -> None:
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text()
    assert '"pyyaml>=6.0"' in text
    pyproject.write_text(text.replace('"pyyaml>=6.0"', '"pyyaml>=6.0.2"'))
    done = _lock_check(tree)
    assert done.returncode == 1
    assert "run ./dev lock" in done.stderr


def test_a_hand_edited_export_fails(tree: Path) -> None:
    run = tree / "requirements" / "run.txt"
    text = run.read_text()
    pinned = re.search(r"^pyyaml==(\S+)", text, re.M)
    assert pinned is not None
    run.write_text(text.replace(pinned.group(0), "pyyaml==6.0"))
    done = _lock_check(tree)
    assert done.returncode == 1
    assert "requirements/run.txt does not match uv.lock" in done.stderr


def _floor(name: str) -> Version:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    for line in wanted:
        req = Requirement(line)
        if req.name == name:
            floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
            assert floors, f"{name} has no lower bound"
            return max(floors)
    raise AssertionError(f"{name} is not a dependency")


def _stamped(pattern: str, glob: str) -> set[Version]:
    found = set()
    for path in (ROOT / "mixer").rglob(glob):
        match = re.search(pattern, path.read_text(), re.M)
        assert match is not None, path
        found.add(Version(match.group(1)))
    assert found
    return found


def test_the_ranges_admit_no_runtime_older_than_the_generated_code_needs() -> None:
    # Generated code refuses to import on an older runtime than the one it was generated for, so a
    # plain `pip install .` that keeps an older grpcio or protobuf would install a broken service.
    grpc = _stamped(r"^GRPC_GENERATED_VERSION = '([\d.]+)'", "*_pb2_grpc.py")
    protobuf = _stamped(r"^# Protobuf Python Version: ([\d.]+)", "*_pb2.py")
    assert _floor("grpcio") >= max(grpc)
    assert _floor("grpcio-tools") >= max(grpc)
    assert _floor("protobuf") >= max(protobuf)


def test_the_lock_pins_the_generator_the_code_was_made_with() -> None:
    dev = (ROOT / "requirements" / "dev.txt").read_text()
    tools = re.search(r"^grpcio-tools==(\S+)", dev, re.M)
    assert tools is not None
    assert _stamped(r"^GRPC_GENERATED_VERSION = '([\d.]+)'", "*_pb2_grpc.py") == {
        Version(tools.group(1))
    }
