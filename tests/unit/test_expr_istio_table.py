"""Istio's own expression test table (mixer/pkg/il/testing/tests.go, as JSON in
``../shared/corpus/istio/expr-tests/tests.json``), every case through the public API.

For each case: compile in the Mixer dialect against the case's manifest, evaluate against its
typed input in a tracking bag, and compare what Istio expects: the value or the error, whether
the error comes at compile or at evaluation time, the static result type, and the referenced
attributes. Where mixer deliberately differs, `DIFFERENCES` says why and the case checks the
documented behaviour instead; where it does not yet match, `KNOWN_MISSES` names the case
(strict xfail, so a fix shows up).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from typing import Any

import pytest

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.expr import CompileError, EvaluationError, compile
from tests.conftest import SHARED

TABLE = SHARED / "corpus" / "istio" / "expr-tests" / "tests.json"
_UTC = datetime.UTC
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)

# Cases where mixer differs on purpose: id -> (why, what mixer does instead). Listed in
# docs/expressions.md as well.
DIFFERENCES: dict[str, tuple[str, dict[str, Any]]] = {
    "il-209": (
        "a computed key is read before its map: when the key attribute is absent the map is not"
        " read, and the answer does not depend on it, so it is not referenced",
        {"referenced": ["-abc"]},
    ),
    "il-354": (
        "reverse() is a function of Istio's test harness (mixer/pkg/il/testing), not of Mixer's"
        " expression language",
        {"expect": {"outcome": "compile_error"}},
    ),
}

# Cases mixer does not match yet: id -> what differs (strict xfail: a fix shows up).
KNOWN_MISSES: dict[str, str] = {}


def _load() -> dict[str, Any]:
    return json.loads(TABLE.read_text())  # type: ignore[no-any-return]


def _value(typed: dict[str, Any]) -> Any:
    """A typed value of the table as the bag holds it."""
    kind = typed["type"]
    if kind in ("string", "bool", "float64"):
        return typed["value"]
    if kind in ("int64", "int", "int32"):
        return int(typed["value"])
    if kind == "duration":
        return datetime.timedelta(microseconds=typed["nanos"] // 1000)
    if kind == "time":
        return _EPOCH + datetime.timedelta(microseconds=typed["unix_nanos"] // 1000)
    if kind == "bytes":
        raw = bytes.fromhex(typed["hex"])
        if "ip" in typed:  # mixer holds IPv4 as 4 bytes, whatever form Go used
            return ipaddress.ip_address(typed["ip"]).packed
        return raw
    if kind == "string_map":
        return StringMap(typed["value"])
    raise AssertionError(f"no bag form for {typed}")


def _expected(typed: dict[str, Any]) -> Any:
    if typed["type"] == "string_map":
        return dict(typed["value"])
    return _value(typed)


def _comparable(value: Any) -> Any:
    if isinstance(value, StringMap):
        return dict(value.items())
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def _referenced(tracking: TrackingBag) -> set[str]:
    """The reads as Istio's table writes them: ``name``, ``-name`` (absent), ``map[key]``.

    A key read is recorded here as (map, key) alone: it implies that the map was present (a
    read of a key of an absent map is recorded as the map's absence), which Istio lists as a
    separate ``map`` entry."""
    out: set[str] = set()
    for (name, key), present in tracking.refs.reads.items():
        if key is None:
            out.add(name if present else f"-{name}")
        else:
            out.add(name)
            out.add(f"{name}[{key}]" if present else f"-{name}[{key}]")
    return out


def _ids() -> list[str]:
    if not TABLE.is_file():
        return []
    return [case["id"] for case in _load()["cases"]]


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    return _load()


@pytest.mark.parametrize("case_id", _ids())
def test_istio_expression_table(case_id: str, table: dict[str, Any]) -> None:
    case = next(c for c in table["cases"] if c["id"] == case_id)
    if case_id in KNOWN_MISSES:
        pytest.xfail(KNOWN_MISSES[case_id])
    if case_id in DIFFERENCES:
        case = {**case, **DIFFERENCES[case_id][1]}
    vocabulary = table["manifests"][case["manifest"]]
    expect = case["expect"]
    outcome = expect["outcome"]
    try:
        program = compile(case["expr"], dialect="mixer", vocabulary=vocabulary)
    except CompileError as exc:
        assert outcome == "compile_error", f"compile error {exc}; Istio expects {expect}"
        return
    assert outcome != "compile_error", f"compiled; Istio expects a compile error: {expect}"
    assert program.result_type == expect["type"]
    bag = Bag({name: _value(v) for name, v in (case["input"] or {}).items()})
    tracking = TrackingBag(bag)
    try:
        got = program.evaluate(tracking)
    except EvaluationError as exc:
        assert outcome == "eval_error", f"evaluation error {exc}; Istio expects {expect}"
        return
    assert outcome == "value", f"evaluated to {got!r}; Istio expects {expect}"
    assert _comparable(got) == _expected(expect["value"])
    if case.get("referenced") is not None:
        assert _referenced(tracking) == set(case["referenced"])


def _cel_ids() -> list[str]:
    if not TABLE.is_file():
        return []
    return [case["id"] for case in _load()["cases"] if "cel" in case]


# Cases of the `cel` column the compat dialect does not match: id -> why.
COMPAT_MISSES: dict[str, str] = {}


@pytest.mark.parametrize("case_id", _cel_ids())
def test_compat_dialect_matches_istios_cel_column(case_id: str, table: dict[str, Any]) -> None:
    case = next(c for c in table["cases"] if c["id"] == case_id)
    if case_id in COMPAT_MISSES:
        pytest.xfail(COMPAT_MISSES[case_id])
    vocabulary = table["manifests"][case["manifest"]]
    expect = case["cel"]
    bag = Bag({name: _value(v) for name, v in (case["input"] or {}).items()})
    try:
        got = compile(case["expr"], dialect="compat", vocabulary=vocabulary).evaluate(bag)
    except (CompileError, EvaluationError) as exc:
        assert expect["type"] == "error", f"error {exc}; Istio's CEL mode expects {expect}"
        assert expect["message"].split(":")[0].lower() in str(exc).lower()
        return
    assert expect["type"] != "error", f"evaluated to {got!r}; Istio's CEL mode expects {expect}"
    if expect["type"] == "bytes":
        assert got == bytes.fromhex(expect["hex"])
    else:
        assert _comparable(got) == _expected(expect)
