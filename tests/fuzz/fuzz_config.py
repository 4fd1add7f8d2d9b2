"""Fuzz the YAML config loader and validator with arbitrary file contents.

Input: the raw bytes of one config file (not necessarily UTF-8, not necessarily YAML), written as
``fuzz.yaml`` into a scratch directory that `mixer.config.check_config` then loads with the
built-in adapter registry. The loader must never raise: every problem is reported in the returned
`ConfigReport`, whose snapshot is present exactly when there are no problems.

Long run: ``.venv/bin/python tests/fuzz/fuzz_config.py -max_total_time=600``
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import adapters
from mixer.config import check_config
from tests.fuzz._harness import fuzz_main

NAME = "config"
REGISTRY = adapters.load_registry()
_DIRECTORY = Path(tempfile.mkdtemp(prefix="mixer-fuzz-config-"))
atexit.register(shutil.rmtree, _DIRECTORY, ignore_errors=True)


def TestOneInput(data: bytes) -> None:
    """One fuzz input: see the module docstring for the format and the oracle."""
    (_DIRECTORY / "fuzz.yaml").write_bytes(data)
    report = check_config(_DIRECTORY, REGISTRY)
    assert (report.snapshot is None) == bool(report.problems), report


if __name__ == "__main__":
    fuzz_main(TestOneInput, NAME)
