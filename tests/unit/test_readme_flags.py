"""Every `mixer serve` flag is in the README's flag table, with its environment variable: a flag
added in cli.py without a README row fails here."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from mixer import cli
from tests.mixer_process import ROOT


def _serve_flags() -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    return sorted(set(re.findall(r"(--[a-z][a-z0-9-]+)", out.getvalue())) - {"--help"})


def test_every_serve_flag_has_a_readme_row_with_its_environment_variable() -> None:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")]
    flags = _serve_flags()
    assert len(flags) > 30  # the parse found the flags
    missing = []
    for flag in flags:
        env = "MIXER_" + flag[2:].upper().replace("-", "_")
        row = next((r for r in rows if f"`{flag}" in r or f" {flag}`" in r or f"{flag}," in r), "")
        if not row or ("MIXER_" not in row and env not in row):
            missing.append(flag)
    assert missing == []
