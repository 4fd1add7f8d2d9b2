"""CEL containers through the public `compile`: namespaced name resolution as cel-spec defines it
(the longest name first, the innermost container first; a leading '.' names the root)."""

from __future__ import annotations

from typing import Any

import pytest

from mixer.attributes.bag import Bag
from mixer.attributes.tracking import TrackingBag
from mixer.expr import CompileError, EvaluationError, compile
from tests.unit.test_expr_cel_conformance import RUNNABLE, check


def _eval(text: str, container: str, **activation: Any) -> Any:
    return compile(text, dialect="cel", container=container).evaluate(activation)


def test_the_innermost_container_wins() -> None:
    names = {"a.b.y": 1, "a.y": 2, "y": 3}
    assert _eval("y", "a.b", **names) == 1
    assert _eval("y", "a.b", **{"a.y": 2, "y": 3}) == 2
    assert _eval("y", "a.b", y=3) == 3
    assert _eval("y", "", **names) == 3


def test_a_leading_dot_names_the_root() -> None:
    assert _eval(".y", "a.b", **{"a.b.y": 1, "y": 3}) == 3
    with pytest.raises(EvaluationError, match="undeclared reference"):
        _eval(".y", "a.b", **{"a.b.y": 1})


def test_the_longest_name_comes_before_the_container() -> None:
    # In container `a`, `b.c` is `a.b.c`, then `b.c`, before `a.b` selecting `c`.
    assert _eval("b.c", "a", **{"a.b": {"c": 1}, "b.c": 2}) == 2
    assert _eval("b.c", "a", **{"a.b": {"c": 1}}) == 1


def test_checked_names_resolve_in_the_container() -> None:
    vocabulary = {"request.path": "STRING", "path": "INT64"}
    program = compile("path == '/x'", dialect="cel", vocabulary=vocabulary, container="request")
    assert program.evaluate(Bag({"request.path": "/x", "path": 1})) is True
    root = compile(".path + 1", dialect="cel", vocabulary=vocabulary, container="request")
    assert root.evaluate(Bag({"request.path": "/x", "path": 1})) == 2
    with pytest.raises(CompileError, match="unknown attribute 'host'"):
        compile("host", dialect="cel", vocabulary=vocabulary, container="request")


def test_has_finds_the_attribute_in_the_container() -> None:
    vocabulary = {"a.b.c": "STRING"}
    program = compile("has(b.c)", dialect="cel", vocabulary=vocabulary, container="a")
    assert program.evaluate(Bag({"a.b.c": "x"})) is True
    assert program.evaluate(Bag({})) is False


def test_the_tracking_bag_records_the_resolved_name() -> None:
    vocabulary = {"request.path": "STRING"}
    program = compile("path == '/x'", dialect="cel", vocabulary=vocabulary, container="request")
    assert "request.path" in program.names
    bag = TrackingBag(Bag({"request.path": "/x"}))
    assert program.evaluate(bag) is True
    assert bag.refs.names() == {"request.path"}


@pytest.mark.parametrize("container", ["a..b", ".a", "a.", "1a", "a-b", "a b"])
def test_a_malformed_container_is_a_compile_error(container: str) -> None:
    with pytest.raises(CompileError, match="is not a dotted name"):
        compile("1", dialect="cel", container=container)


def test_a_container_needs_the_cel_dialect() -> None:
    with pytest.raises(CompileError, match="needs the CEL dialect"):
        compile("1", container="a")


def test_the_corpus_cases_with_a_container_run_through_compile() -> None:
    cases = [case for case in RUNNABLE if case["container"]]
    assert len(cases) == 13
    for case in cases:
        check(case)
