"""Fixtures for the Envoy compatibility tests: the isolated xds-protos venv and its samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.compat.harness import CompatEnvError, ensure_compat_venv, run_envoy_side


@pytest.fixture(scope="session")
def compat_python() -> Path:
    """The isolated venv's interpreter; fails the test (never skips) when it cannot be built."""
    try:
        return ensure_compat_venv()
    except CompatEnvError as exc:
        pytest.fail(f"cannot build the isolated xds-protos venv:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def envoy_samples(compat_python: Path) -> dict[str, Any]:
    """Fully populated Envoy messages encoded by Envoy's own code (see envoy_side.SAMPLES)."""
    samples: dict[str, Any] = run_envoy_side("samples")
    return samples
