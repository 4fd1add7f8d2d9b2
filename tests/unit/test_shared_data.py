"""Tests run from any checkout: shared data is found through MIXER_SHARED_DIR; missing data
skips naming its source (fails under CI=true); no absolute path of this machine in the repo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mixer_process import ROOT
from tests.shared_data import ENV, require_shared, shared_root

# The modules that read shared data, run with it missing.
READERS = [
    "tests/unit/test_corpus.py",
    "tests/unit/test_dictionary.py",
    "tests/unit/test_expr_cel_conformance.py",
    "tests/unit/test_expr_mixer.py",
    "tests/unit/test_prometheus_adapter.py",
    "tests/unit/test_stdio_adapter.py",
]


def test_the_setting_names_the_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert shared_root() == ROOT.parent / "shared"
    monkeypatch.setenv(ENV, str(tmp_path))
    assert shared_root() == tmp_path
    (tmp_path / "corpus" / "istio").mkdir(parents=True)
    assert require_shared("corpus/istio") == tmp_path / "corpus" / "istio"


def test_missing_data_skips_naming_its_source_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "nowhere"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_shared("corpus/cel-spec/cases.json")
    assert "google/cel-spec" in str(skipped.value)
    assert str(tmp_path / "nowhere") in str(skipped.value)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_shared("corpus/istio/api/global_dictionary.yaml")
    assert "istio/istio 1.4.10" in str(failed.value)


def _run_readers(shared: Path, ci: bool, modules: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env[ENV] = str(shared)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_readers_collect_and_skip_without_the_data(tmp_path: Path) -> None:
    """The modules that read shared data, run with none: collected without error, the tests that
    need the data skipped with the source named; under CI=true those fail."""
    result = _run_readers(tmp_path / "no-shared", ci=False, modules=READERS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.splitlines()[-1], result.stdout[-3000:]
    assert "SOURCES.md" in result.stdout and "skipped" in result.stdout, result.stdout[-3000:]
    ci = _run_readers(tmp_path / "no-shared", ci=True, modules=["tests/unit/test_dictionary.py"])
    assert ci.returncode == 1, ci.stdout[-3000:]
    assert "CI needs the test data" in ci.stdout, ci.stdout[-3000:]


def test_no_absolute_path_of_this_machine_in_the_repository() -> None:
    """No tracked file names the directory the checkout sits in."""
    parent = f"{ROOT.parent}/"
    if parent == "/":
        pytest.skip("the checkout sits at the file system's root: nothing to look for")
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, files):
        path = ROOT / name.decode()
        if not path.is_file():
            continue
        if parent.encode() in path.read_bytes():
            found.append(name.decode())
    assert not found, f"{parent} appears in {found}"
