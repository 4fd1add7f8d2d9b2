"""`mixer test`: test files are not config, the schema and the parser agree, and the runner
passes, fails (with a diff) and errors as a test runner should, on a real config and runtime."""

from __future__ import annotations

import io
import json
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mixer.cli import main as cli_main
from mixer.rulestest import TestFileError, load_cases
from mixer.rulestest.compare import diff, failures, matches
from mixer.rulestest.run import main as run_main
from mixer.runtime.build import validate_directory

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "mixer" / "rulestest" / "schema.json").read_text())

DENY_CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: nope, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: go away}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: denyadmin, namespace: istio-system}
spec:
  match: request.path == "/admin"
  actions:
  - handler: nope
    instances: [nothing]
"""

DENY_TESTS = """
tests:
- name: admin is denied
  check:
    attributes: {request.path: /admin}
  expect:
    code: PERMISSION_DENIED
    rule: denyadmin.rule.istio-system
    message: "nope.handler.istio-system:go away"
- name: home is allowed
  check:
    attributes: {request.path: /}
  expect:
    code: 0
"""


def _config(tmp_path: Path, tests: str = DENY_TESTS, config: str = DENY_CONFIG) -> Path:
    directory = tmp_path / "rules"
    (directory / "tests").mkdir(parents=True)
    (directory / "policy.yaml").write_text(config)
    (directory / "tests" / "policy_test.yaml").write_text(textwrap.dedent(tests))
    return directory


def _run(directory: Path, *args: str, **kwargs: Any) -> tuple[int, str]:
    out = io.StringIO()
    code = run_main(directory, [Path(a) for a in args], out=out, **kwargs)
    return code, out.getvalue()


def test_test_files_are_not_config(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    assert validate_directory(directory) == []
    # The same file without the marker is read as config, and is not valid config.
    (directory / "tests" / "policy_test.yaml").rename(directory / "tests" / "policy.yaml")
    problems = validate_directory(directory)
    assert any("tests/policy.yaml" in str(p) for p in problems), problems


def test_passing_and_failing_cases(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    code, out = _run(directory)
    assert code == 0, out
    assert out.count("PASS ") == 2
    assert out.splitlines()[-1].startswith("2 passed, 0 failed")
    # The rule is wrong (it denies /administrator instead): the case fails with a diff.
    (directory / "policy.yaml").write_text(DENY_CONFIG.replace('"/admin"', '"/administrator"'))
    code, out = _run(directory)
    assert code == 1
    assert "FAIL  " in out and "admin is denied" in out
    assert "-code: PERMISSION_DENIED\n" in out and "+code: OK\n" in out
    assert "+rule: ''" in out
    assert out.splitlines()[-1].startswith("1 passed, 1 failed")


def test_run_pattern_and_junit(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    (directory / "policy.yaml").write_text(DENY_CONFIG.replace("code: 7", "code: 16"))
    code, out = _run(directory, pattern="home")
    assert code == 0 and "admin is denied" not in out
    code, out = _run(directory, fmt="junit")
    assert code == 1
    suite = ET.fromstring(out).find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["admin is denied"]
    assert "+code: UNAUTHENTICATED" in (failed[0].findtext("failure") or "")
    code, out = _run(directory, pattern="nothing matches this")
    assert code == 1 and "no test cases found" in out


def test_cli_runs_the_given_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _config(tmp_path)
    assert cli_main(["test", str(directory), str(directory / "tests" / "policy_test.yaml")]) == 0
    assert "2 passed" in capsys.readouterr().out
    assert cli_main(["test", str(directory), str(tmp_path / "missing")]) == 1


def test_bad_attribute_is_an_error_not_a_failure(tmp_path: Path) -> None:
    tests = DENY_TESTS.replace("{request.path: /}", "{request.path: /, request.size: lots}")
    code, out = _run(_config(tmp_path, tests))
    assert code == 1
    assert re.search(r"^ERROR .*::home is allowed", out, re.M), out
    assert out.splitlines()[-1].startswith("1 passed, 0 failed, 1 errors")
    assert "request.size: INT64 value 'lots' is invalid" in out


def test_invalid_config_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _config(tmp_path, config=DENY_CONFIG.replace("checknothing", "nosuchtemplate"))
    code, _ = _run(directory)
    assert code == 1
    assert "not a valid config" in capsys.readouterr().err


BAD_FILES = [
    ("tests: {}", "'tests' (a list)"),
    ("tests:\n- name: x\n  expect: {code: 0}", "exactly one request"),
    ("tests:\n- name: x\n  check: {}\n  report: {}\n  expect: {code: 0}", "exactly one"),
    ("tests:\n- name: x\n  check: {}\n  expect: {metrics: []}", "cannot expect ['metrics']"),
    ("tests:\n- name: x\n  report: {}\n  expect: {code: 0}", "cannot expect ['code']"),
    ("tests:\n- name: x\n  check: {}\n  after: -1\n  expect: {code: 0}", "'after'"),
    ("tests:\n- name: x\n  check: {quotas: {q: x}}\n  expect: {code: 0}", "check.quotas"),
    ("tests:\n- name: x\n  check: {}\n  expect: {}", "non-empty"),
    ("tests:\n- name: x\n  check: {}\n  typo: 1\n  expect: {code: 0}", "unknown keys"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_schema_and_parser_refuse_the_same_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad_test.yaml"
    path.write_text(text)
    with pytest.raises(TestFileError, match=re.escape(message)):
        load_cases(path, "bad_test.yaml")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(text), SCHEMA)


@pytest.mark.parametrize("path", sorted((ROOT / "rules").rglob("*_test.yaml")), ids=str)
def test_shipped_test_files_follow_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)
    assert load_cases(path, str(path))


def test_matching_rules() -> None:
    assert matches({"a": 1}, {"a": 1.0, "b": 2})
    assert not matches({"a": 1}, {"b": 1})
    assert not matches([1], [1, 2])
    assert not matches(True, 1)
    # metrics and logs: each expected item in some actual one; [] expects none.
    actual = {"metrics": [{"name": "m", "labels": {"x": "1", "y": "2"}, "value": 3.0}]}
    assert failures({"metrics": [{"name": "m", "labels": {"x": "1"}}]}, actual) == []
    assert failures({"metrics": [{"name": "m", "value": 4}]}, actual) == ["metrics"]
    assert failures({"metrics": []}, actual) == ["metrics"]
    # codes by number or name, durations by value
    check = {"code": "PERMISSION_DENIED", "valid_duration": "300s"}
    assert failures({"code": 7, "valid_duration": "5m"}, check) == []
    text = diff({"code": 5}, check, ["code"])
    assert "-code: NOT_FOUND" in text and "+code: PERMISSION_DENIED" in text


def test_editing_a_test_file_triggers_no_reload(tmp_path: Path) -> None:
    from watchfiles import Change

    from mixer.server.reloader import _ConfigFilter, content_fingerprint

    directory = _config(tmp_path)
    before = content_fingerprint(directory)
    test_file = directory / "tests" / "policy_test.yaml"
    test_file.write_text(test_file.read_text() + "\n# edited\n")
    assert content_fingerprint(directory) == before
    (directory / "policy.yaml").write_text(DENY_CONFIG + "\n# edited\n")
    assert content_fingerprint(directory) != before
    watched = _ConfigFilter()
    assert not watched(Change.modified, str(test_file))
    assert watched(Change.modified, str(directory / "policy.yaml"))


def test_a_refused_request_is_an_answer(tmp_path: Path) -> None:
    tests = """
tests:
- name: rls without descriptors is refused
  ratelimit: {domain: edge}
  expect:
    overall_code: OK
"""
    code, out = _run(_config(tmp_path, tests))
    assert code == 1
    assert "-overall_code: OK" in out and "+overall_code: null" in out
