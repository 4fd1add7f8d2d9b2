"""Test data kept outside the repository: where it is, and what a test does when it is missing.

One setting: ``MIXER_SHARED_DIR``, the shared data directory (default: ``shared`` beside the
checkout, i.e. ``../shared`` from the repository root). Its ``corpus/*/SOURCES.md`` files say where
each corpus comes from. A test whose data is missing is skipped with a message naming the source;
under ``CI=true`` (set by ``.ci/run``) it fails instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = "MIXER_SHARED_DIR"

# Where each corpus comes from, for the message when it is missing (its SOURCES.md is then
# missing too).
SOURCES = {
    "corpus/istio": (
        "Istio's public repositories: istio/istio 1.4.10 and 1.0.0, istio/api 1.4.10 "
        "(corpus/istio/SOURCES.md)"
    ),
    "corpus/cel-spec": (
        "github.com/google/cel-spec at 508bd98efda47d85bcf1b9930dd5f35fa37e9a18 "
        "(corpus/cel-spec/SOURCES.md)"
    ),
}


def shared_root() -> Path:
    """The shared data directory: ``$MIXER_SHARED_DIR``, else ``shared`` beside the checkout."""
    return Path(os.environ.get(ENV) or ROOT.parent / "shared")


def shared_path(relative: str) -> Path:
    """`relative` under the shared directory, present or not (for collection: a glob of a
    missing directory finds nothing; the tests that need it call `require_shared`)."""
    return shared_root() / relative


def require_shared(relative: str) -> Path:
    """`relative` under the shared directory; when it is missing, skip the calling test with a
    message naming the source, or fail it under ``CI=true``."""
    path = shared_path(relative)
    if path.exists():
        return path
    source = next(
        (text for prefix, text in SOURCES.items() if relative.startswith(prefix)),
        "the project's shared data (corpus/*/SOURCES.md)",
    )
    message = f"{path} is missing ({ENV}={shared_root()}): it is copied from {source}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs the test data: {message}", pytrace=False)
    pytest.skip(message)
