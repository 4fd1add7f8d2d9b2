"""The README's "Rules as code" guide works as written, and the pre-commit hooks run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from mixer.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def _guide_blocks() -> tuple[str, str, str]:
    """The guide's rule file, test file and failure output, as the README shows them."""
    readme = (ROOT / "README.md").read_text()
    guide = readme.split("### Rules as code", 1)[1].split("\n### ", 1)[0]
    blocks = [
        "\n".join(line.removeprefix("   ") for line in b.splitlines())
        for b in re.findall(r"```(?:yaml)?\n(.*?)\n\s*```", guide, re.S)
    ]
    return blocks[0], blocks[1], blocks[2]


def test_the_guide_fails_with_a_diff_then_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule, tests, failure = _guide_blocks()
    rules = tmp_path / "rules"
    (rules / "tests").mkdir(parents=True)
    wrong = rule.replace('"/admin*"', '"/admin"')
    assert wrong != rule
    (rules / "admin.yaml").write_text(wrong)
    (rules / "tests" / "admin_test.yaml").write_text(tests)
    assert cli_main(["validate", str(rules)]) == 0
    capsys.readouterr()
    assert cli_main(["test", str(rules)]) == 1
    out = capsys.readouterr().out
    shown = [line.strip() for line in failure.splitlines()[1:] if line.strip()]
    for line in shown:
        if line.startswith(("-", "+")):
            assert line in [o.strip() for o in out.splitlines()], line
    (rules / "admin.yaml").write_text(rule)
    assert cli_main(["test", str(rules)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "hook", yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text()), ids=lambda h: h["id"]
)
def test_pre_commit_hooks_run_on_the_shipped_rules(
    hook: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    command = shlex.split(str(hook["entry"]))
    assert command[0] == "mixer"
    args = [str(a) for a in hook["args"]]  # type: ignore[attr-defined]
    monkeypatch.chdir(ROOT)
    assert cli_main([*command[1:], *args]) == 0
