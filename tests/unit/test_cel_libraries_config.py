"""Which CEL extension libraries rules may use is a server setting (`--cel-libraries`,
`MIXER_CEL_LIBRARIES`): `mixer validate` and config loading compile with the configured set, and
a call into a library left out is a problem that names the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixer import cli
from mixer.errors import ConfigError
from mixer.expr import CEL_LIBRARIES
from mixer.runtime.build import load_snapshot
from mixer.server.workers import worker_argv
from mixer.settings import Settings, parse_cel_libraries
from tests.unit.config_helpers import write

RULES = """
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: r
  annotations:
    policy.istio.io/lang: CEL
spec:
  match: {match}
  actions: [{{handler: h, instances: [i]}}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: h}}
spec: {{compiledAdapter: denier}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: i}}
spec: {{compiledTemplate: checknothing}}
"""
STRINGS_RULE = "request.path.lowerAscii() == '/admin'"
MATH_RULE = "math.abs(request.size) > 10"


def _config(tmp_path: Path, match: str) -> Path:
    write(tmp_path, "r.yaml", RULES.format(match=json.dumps(match)))
    return tmp_path


def _validate(
    capsys: pytest.CaptureFixture[str], directory: Path, *options: str
) -> tuple[int, str]:
    code = cli.main(["validate", str(directory), "--format", "json", *options])
    return code, capsys.readouterr().out


def test_by_default_every_library_is_enabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _validate(capsys, _config(tmp_path, STRINGS_RULE))
    assert code == 0, out
    assert json.loads(out) == {"valid": True, "errors": [], "dry_run": []}


def test_a_disabled_library_is_a_problem_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _config(tmp_path, STRINGS_RULE)
    code, out = _validate(capsys, directory, "--cel-libraries", "math,network")
    assert code == 1
    (error,) = json.loads(out)["errors"]
    assert "'lowerAscii' is in the CEL library 'strings', which is not enabled" in error["message"]
    assert error["line"] == 8


def test_the_enabled_library_passes_and_the_other_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _config(tmp_path, MATH_RULE)
    assert _validate(capsys, directory, "--cel-libraries", "math")[0] == 0
    code, out = _validate(capsys, directory, "--cel-libraries", "none")
    assert code == 1
    assert "in the CEL library 'math'" in out


def test_the_environment_sets_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _config(tmp_path, STRINGS_RULE)
    monkeypatch.setenv("MIXER_CEL_LIBRARIES", "none")
    code, out = _validate(capsys, directory)
    assert code == 1
    assert "in the CEL library 'strings'" in out
    # The flag wins over the environment.
    assert _validate(capsys, directory, "--cel-libraries", "strings")[0] == 0


def test_an_unknown_library_name_stops_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match="unknown CEL libraries \\['maths'\\]; known: strings"):
        cli.main(["validate", str(tmp_path), "--cel-libraries", "strings,maths"])
    with pytest.raises(SystemExit, match="--cel-libraries: unknown CEL libraries"):
        cli.main(["serve", "--cel-libraries", "nope"])


def test_config_loading_uses_the_configured_set(tmp_path: Path) -> None:
    directory = _config(tmp_path, STRINGS_RULE)
    assert len(load_snapshot(directory).rules) == 1
    with pytest.raises(ConfigError, match="CEL library 'strings', which is not enabled"):
        load_snapshot(directory, ("math",))


def test_parse_cel_libraries() -> None:
    assert parse_cel_libraries("all") == CEL_LIBRARIES
    assert parse_cel_libraries("none") == ()
    assert parse_cel_libraries("") == ()
    assert parse_cel_libraries(" math , strings,math") == ("math", "strings")
    with pytest.raises(ValueError, match="unknown CEL libraries \\['all2'\\]"):
        parse_cel_libraries("all2")


@pytest.mark.parametrize("libraries", [CEL_LIBRARIES, ("math", "strings"), ()])
def test_workers_get_the_same_set(libraries: tuple[str, ...]) -> None:
    argv = worker_argv(Settings(cel_libraries=libraries), 1)
    assert parse_cel_libraries(argv[argv.index("--cel-libraries") + 1]) == libraries
