"""The cel-spec conformance suite (../shared/corpus/cel-spec/cases.json) against our CEL compiler.

Every runnable case of every file of the corpus runs, core and extensions alike (cases.json
marks protobuf-message and type-checker-only cases with a `skip` reason; those are counted, not
run). Known failures are listed in `EXPECTED_FAILURES`, grouped by their reason, and run as strict
xfails, so a fix or a regression shows up. The per-file counts:

    .venv/bin/python -m tests.unit.test_expr_cel_conformance

Judging follows cel-conformance.md section 6: values compare with exact kinds (1 != 1u != 1.0,
NaN equals NaN, maps without order, timestamps/durations to the nanosecond); an expected error
passes on any CompileError/EvaluationError, except that an "undeclared"/"unbound" error only
counts where the expected error is itself about an unknown name.
"""

from __future__ import annotations

import base64
import collections
import datetime
import json
import math
from typing import Any

import pytest

from mixer.expr import CompileError, EvaluationError, compile
from mixer.expr import _cel_runtime as rt
from mixer.expr._cel_time import duration_from_nanos, timestamp_from_nanos
from tests.shared_data import require_shared, shared_path

CASES_JSON = shared_path("corpus/cel-spec/cases.json")
CORE_FILES = (
    "basic",
    "comparisons",
    "conversions",
    "fields",
    "fp_math",
    "integer_math",
    "lists",
    "logic",
    "macros",
    "namespace",
    "parse",
    "plumbing",
    "string",
    "timestamps",
)
_BOOL_KEYS = "maps are Python dicts, where true and 1 are one key: {1: a, true: b} keeps one entry"
_FAILING: dict[str, tuple[str, ...]] = {
    _BOOL_KEYS: ("string_ext/format/map support (all key types)",),
}
EXPECTED_FAILURES = {case_id: reason for reason, ids in _FAILING.items() for case_id in ids}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_NAME_ERRORS = ("undeclared", "unbound", "unknown variable", "no such")


def _load() -> list[dict[str, Any]]:
    if not CASES_JSON.exists():
        return []  # no cases to collect; the tests below skip (or fail in CI), naming the source
    files = json.loads(CASES_JSON.read_text())
    return [case for f in files for case in f["cases"]]


ALL_CASES = _load()
RUNNABLE = [c for c in ALL_CASES if not c["skip"] and c["expect"] is not None]


def _params() -> list[Any]:
    params = []
    for case in RUNNABLE:
        marks: list[Any] = []
        if case["id"] in EXPECTED_FAILURES:
            marks.append(pytest.mark.xfail(reason=EXPECTED_FAILURES[case["id"]], strict=True))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


PARAMS = _params()


def _value(tagged: dict[str, Any]) -> Any:
    ((tag, x),) = tagged.items()
    if tag == "null":
        return None
    if tag in ("bool", "string", "int"):
        return x
    if tag == "uint":
        return rt.UInt(x)
    if tag == "double":
        special = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
        return special[x] if isinstance(x, str) else float(x)
    if tag == "bytes":
        return base64.b64decode(x)
    if tag == "list":
        return [_value(item) for item in x]
    if tag == "map":
        return {_value(k): _value(v) for k, v in x}
    if tag == "type":
        return rt.CelType(x)
    if tag == "timestamp":
        return timestamp_from_nanos(x[0] * 10**9 + x[1])
    if tag == "duration":
        return duration_from_nanos(x[0] * 10**9 + x[1])
    if tag == "enum":
        return x[1]
    raise AssertionError(f"unexpected value tag {tag}")


def _same(actual: Any, expected: Any) -> bool:
    kind = rt.kind(actual)
    if kind != rt.kind(expected):
        return False
    if kind == "double":
        return (math.isnan(actual) and math.isnan(expected)) or actual == expected
    if kind == "list":
        return len(actual) == len(expected) and all(
            _same(a, e) for a, e in zip(actual, expected, strict=True)
        )
    if kind == "map":
        if len(actual) != len(expected):
            return False
        for key, value in actual.items():
            matches = [v for k, v in expected.items() if rt.kind(k) == rt.kind(key) and k == key]
            if not matches or not _same(value, matches[0]):
                return False
        return True
    return bool(actual == expected)


def _evaluate(case: dict[str, Any]) -> Any:
    activation = {name: _value(v) for name, v in case["bindings"].items()}
    program = compile(case["expr"], dialect="cel", container=case["container"] or "")
    return program.evaluate(activation)


def check(case: dict[str, Any]) -> None:
    """Run one case; raises AssertionError (or the engine's error) when it does not pass."""
    expect = case["expect"]
    if "errors" in expect:
        with pytest.raises((CompileError, EvaluationError)) as caught:
            _evaluate(case)
        message = str(caught.value)
        wanted = " ".join(m for messages in expect["errors"] for m in messages)
        if any(word in message for word in ("undeclared", "unbound")):
            # A missing name is only the right error when a missing name was expected.
            assert any(word in wanted for word in _NAME_ERRORS), message
        return
    actual = _evaluate(case)
    expected = _value(expect["value"])
    assert _same(actual, expected), f"got {actual!r}, want {expected!r}"


@pytest.mark.parametrize("case", PARAMS)
def test_cel_conformance(case: dict[str, Any]) -> None:
    check(case)


def test_the_suite_is_what_we_think_it_is() -> None:
    require_shared("corpus/cel-spec/cases.json")
    assert len(ALL_CASES) == 2456
    assert len(RUNNABLE) == 1748
    core = [c for c in RUNNABLE if c["file"] in CORE_FILES]
    assert len(core) == 1094
    core_failures = [i for i in EXPECTED_FAILURES if i.split("/")[0] in CORE_FILES]
    # The goal is at least 99% of the core files (cel-expr-python's 1089 of 1094).
    assert len(core) - len(core_failures) >= 1089
    ids = {c["id"] for c in RUNNABLE}
    unknown = sorted(i for i in EXPECTED_FAILURES if i not in ids)
    assert not unknown, f"expected failures that are not runnable cases: {unknown}"


def test_every_file_of_the_corpus_is_reported() -> None:
    files = [
        f["file"] for f in json.loads(require_shared("corpus/cel-spec/cases.json").read_text())
    ]
    assert len(files) == 30
    assert [row[0] for row in per_file()] == files


def per_file() -> list[tuple[str, int, int, int]]:
    """(file, cases, runnable, expected to fail) for every file of the corpus, in its order."""
    files = [f["file"] for f in json.loads(CASES_JSON.read_text())]
    cases: collections.Counter[str] = collections.Counter()
    runnable: collections.Counter[str] = collections.Counter()
    failing: collections.Counter[str] = collections.Counter()
    for case in ALL_CASES:
        cases[case["file"]] += 1
    for case in RUNNABLE:
        runnable[case["file"]] += 1
        failing[case["file"]] += case["id"] in EXPECTED_FAILURES
    return [(file, cases[file], runnable[file], failing[file]) for file in files]


def report() -> str:
    """Each file's count of passing cases, by running them (the strict xfails say the same)."""
    passed: collections.Counter[str] = collections.Counter()
    for case in RUNNABLE:
        try:
            check(case)
        except (Exception, pytest.fail.Exception):  # any failure counts as one
            continue
        passed[case["file"]] += 1
    lines = [f"{'file':<16}{'passed':>8}{'runnable':>10}{'xfail':>7}{'not run':>9}"]
    totals = [0, 0, 0, 0]
    for file, count, runnable, failing in per_file():
        row = (passed[file], runnable, failing, count - runnable)
        totals = [t + r for t, r in zip(totals, row, strict=True)]
        lines.append(f"{file:<16}{row[0]:>8}{row[1]:>10}{row[2]:>7}{row[3]:>9}")
    lines.append(f"{'total':<16}{totals[0]:>8}{totals[1]:>10}{totals[2]:>7}{totals[3]:>9}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
