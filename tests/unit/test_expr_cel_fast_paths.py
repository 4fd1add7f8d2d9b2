"""The extension functions' fast paths (issue 25: each within 3x of hand-written Python): what a
rule evaluates without calling into the library, and that the slow path still gives the same
values and errors when the fast path's conditions do not hold."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.expr import EvaluationError, compile
from mixer.expr._cel_runtime import UInt

VOCAB = {
    "s": "STRING",
    "t": "STRING",
    "n": "INT64",
    "m": "STRING_MAP",
    "d": "DOUBLE",
}
BIG = "a" * 600_000


def _calls(fn: Callable[[Any], Any], activation: Any) -> tuple[Any, set[str]]:
    """fn(activation) and the names of the Python functions it called."""
    called: set[str] = set()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            called.add(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        result = fn(activation)
    finally:
        sys.setprofile(None)
    return result, called


def _program(text: str, vocabulary: dict[str, str] | None = VOCAB) -> Callable[[Any], Any]:
    return compile(text, dialect="cel", vocabulary=vocabulary).evaluate


# -- cel.bind -------------------------------------------------------------------------------------


def test_bind_is_generated_code_reading_a_python_local() -> None:
    program = _program("cel.bind(p, s, p.startsWith('/api/') && p.endsWith('/42'))")
    result, called = _calls(program, Bag({"s": "/api/v1/42"}))
    assert result is True
    assert called == {"_f", "get"}  # the generated function and the bag's get


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cel.bind(x, s, cel.bind(x, x + '!', x + x))", "a!a!"),
        ("cel.bind(x, s, cel.bind(y, x + '!', x + y))", "aa!"),
        ("cel.bind(x, s, [1, 2].map(i, x + string(i)))", ["a1", "a2"]),
        ("cel.bind(x, s, [1, 2].exists(x, x == 2) && x == 'a')", True),
        ("[1, 2].map(i, cel.bind(x, i * 2, x + i))", [3, 6]),
        ("cel.bind(x, s == 'a', x && x)", True),
        ("cel.bind(x, s == 'b', x || !x)", True),
    ],
)
def test_bind_scopes_and_shadowing(text: str, expected: Any) -> None:
    assert _program(text)(Bag({"s": "a"})) == expected


def test_bind_evaluates_its_value_once_and_first() -> None:
    with pytest.raises(EvaluationError, match="no such attribute"):
        _program("cel.bind(x, s, false && x == 'a')")(Bag({}))


# -- join -----------------------------------------------------------------------------------------


def test_join_of_a_list_literal_does_not_call_the_library() -> None:
    program = _program("[s, t, 'c'].join('/')")
    result, called = _calls(program, Bag({"s": "a", "t": "b"}))
    assert result == "a/b/c"
    assert "join" not in called
    assert _program("[s, t].join()")(Bag({"s": "a", "t": "b"})) == "ab"


def test_join_falls_back_for_other_kinds_and_long_results() -> None:
    program = _program("[s, n].join('/')")
    with pytest.raises(EvaluationError, match="no matching overload for 'join'"):
        program(Bag({"s": "a", "n": 1}))
    long = _program("[s, s].join(t)")
    with pytest.raises(EvaluationError, match="string longer than"):
        long(Bag({"s": BIG, "t": ","}))
    # Exactly at the limit still joins.
    half = "a" * ((1 << 20) // 2)
    assert len(_program("[s, t].join()")(Bag({"s": half, "t": half}))) == 1 << 20


def test_join_function_bounds_and_kinds() -> None:
    assert _program("x.join('-')", None)({"x": ["a", "b"]}) == "a-b"
    with pytest.raises(EvaluationError, match="no matching overload"):
        _program("x.join('-')", None)({"x": ["a", ["b"]]})
    with pytest.raises(EvaluationError, match="string longer than"):
        _program("x.join('-')", None)({"x": [BIG, BIG]})


# -- format ---------------------------------------------------------------------------------------


def test_format_of_strs_and_ints_does_not_call_the_library() -> None:
    program = _program("'%s:%d (%s) 100%%'.format([s, n, n])")
    result, called = _calls(program, Bag({"s": "GET", "n": 9080}))
    assert result == "GET:9080 (9080) 100%"
    assert "format_string" not in called


@pytest.mark.parametrize(
    ("text", "activation", "expected"),
    [
        ("'%d'.format([x])", {"x": UInt(7)}, "7"),
        ("'%s'.format([x])", {"x": True}, "true"),
        ("'%s'.format([x])", {"x": [1, "a"]}, "[1, a]"),
        ("'%s'.format([x])", {"x": 1.5}, "1.5"),
        ("'%d-%s'.format([x, y])", {"x": 3, "y": b"hi"}, "3-hi"),
    ],
)
def test_format_falls_back_to_the_library_for_other_types(
    text: str, activation: dict[str, Any], expected: str
) -> None:
    assert _program(text, None)(activation) == expected


@pytest.mark.parametrize(
    ("text", "activation", "message"),
    [
        ("'%d'.format([x])", {"x": True}, "decimal clause can only be used"),
        ("'%d'.format([x])", {"x": "a"}, "decimal clause can only be used"),
        ("'%s%s'.format([x, x])", {"x": BIG}, "string longer than"),
        ("'%s %s'.format([x])", {"x": "a"}, "index 1 out of range"),
    ],
)
def test_format_errors_are_the_library_errors(
    text: str, activation: dict[str, Any], message: str
) -> None:
    with pytest.raises(EvaluationError, match=message):
        _program(text, None)(activation)


def test_format_templates_are_planned_once_and_long_ones_still_work() -> None:
    template = "x" * 300 + "%s"
    assert _program(f"'{template}'.format([s])")(Bag({"s": "!"})) == "x" * 300 + "!"
    assert _program("t.format([s])")(Bag({"s": "!", "t": "%s?"})) == "!?"
    with pytest.raises(EvaluationError, match="unrecognized formatting clause"):
        _program("t.format([s])")(Bag({"s": "!", "t": "%z"}))


# -- optionals ------------------------------------------------------------------------------------


def test_an_optional_read_with_a_default_builds_no_optional() -> None:
    program = _program("m[?'x-user'].orValue('anonymous')")
    result, called = _calls(program, Bag({"m": StringMap({"x-user": "ann"})}))
    assert result == "ann"
    assert "__init__" not in called
    assert program(Bag({"m": StringMap({})})) == "anonymous"
    literal = _program("{'GET': 'read'}[?s].orValue('other')")
    assert literal(Bag({"s": "GET"})) == "read"
    assert literal(Bag({"s": "PUT"})) == "other"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optional.none()[?'a'].orValue(1)", 1),
        ("optional.of({'a': 2})[?'a'].orValue(1)", 2),
        ("[1, 2][?5].orValue(0)", 0),
        ("[1, 2][?1].orValue(0)", 2),
        ("{1: 'one'}[?1.0].orValue('none')", "one"),
        ("{1: 'one'}[?true].orValue('none')", "none"),
        ("{true: 'yes'}[?1].orValue('none')", "none"),
    ],
)
def test_optional_reads_with_a_default_keep_their_meaning(text: str, expected: Any) -> None:
    assert _program(text, None)({}) == expected


@pytest.mark.parametrize(
    "text",
    [
        "{'a': 1}[?'a'].orValue(1 / 0)",  # the default is evaluated, as a call's argument is
        "'abc'[?'a'].orValue(1)",
        "[1][?'a'].orValue(1)",
    ],
)
def test_optional_reads_with_a_default_keep_their_errors(text: str) -> None:
    with pytest.raises(EvaluationError):
        _program(text, None)({})


def test_an_optional_read_records_just_its_key() -> None:
    program = _program("m[?'x-user'].orValue('anonymous') == 'ann'")
    bag = TrackingBag(Bag({"m": StringMap({"x-user": "ann", "other": "b"})}))
    assert program(bag) is True
    assert ("m", "x-user") in bag.refs.reads
    assert ("m", "other") not in bag.refs.reads
