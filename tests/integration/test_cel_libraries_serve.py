"""`mixer serve --cel-libraries`: the configured set decides whether a config loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.mixer_process import MixerProcess
from tests.unit.config_helpers import write
from tests.unit.test_cel_libraries_config import RULES, STRINGS_RULE


def _config(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    write(directory, "r.yaml", RULES.format(match=json.dumps(STRINGS_RULE)))
    return directory


def test_serve_refuses_a_config_calling_a_disabled_library(tmp_path: Path) -> None:
    server = MixerProcess(
        _config(tmp_path), tmp_path / "mixer.log", extra_args=["--cel-libraries", "math"]
    )
    with pytest.raises(RuntimeError, match="mixer exited with") as caught:
        server.start(timeout=30)
    assert "'lowerAscii' is in the CEL library 'strings', which is not enabled" in str(caught.value)


def test_serve_loads_it_when_the_environment_enables_the_library(tmp_path: Path) -> None:
    server = MixerProcess(
        _config(tmp_path), tmp_path / "mixer.log", env={"MIXER_CEL_LIBRARIES": "strings"}
    )
    server.start(timeout=30)
    try:
        status, _ = server.admin_get("/readyz")
        assert status == 200
    finally:
        assert server.stop() == 0
