"""Docstrings state contracts, not measurements: no benchmark figure in `mixer/` or `adapters/`.

A measured figure goes stale with the next change to the code or the machine; it belongs in
``docs/benchmarks.md`` or a record in ``docs/decisions/``, next to the command that reproduces
it. Limits and defaults (``timeout: 50ms``, ``1 MiB per string``) are contracts and stay.
Generated code (`mixer/v1`, `mixer/envoy`) is not ours to word; `bench/` may quote figures.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mixer_process import ROOT

PACKAGES = ("mixer", "adapters")
GENERATED = (ROOT / "mixer" / "v1", ROOT / "mixer" / "envoy")

# What a benchmark figure looks like. Each pattern is checked below against a sentence that
# was removed from a docstring (it must match) and a contract that stays (it must not).
FIGURES = {
    # a time too small to be a limit anyone configures: "12 µs", "1.5us", "300 ns"
    "micro time": re.compile(r"\d[\d,.]*\s?(?:µs|μs|us|ns)\b"),
    # a ratio written as a multiplier: "1.8x", "0.35x", or with the multiplication sign
    # ("2 x maxAmount", with a space, is a bound)
    "ratio": re.compile(r"\b\d+(?:\.\d+)?[x\u00d7](?!\w)"),
    # faster / slower / cheaper next to a number, either side, within one clause
    "speed": re.compile(
        r"\d[^.;:]{0,20}\b(?:faster|slower|cheaper)\b|\b(?:faster|slower|cheaper)\b[^.;:]{0,20}\d"
    ),
    # a measured share of the cost: "12 % more server CPU", "6.5 % of a call"
    "percent": re.compile(r"\d+(?:\.\d+)?\s?%\s+(?:more|less|fewer|of)\b"),
    # a cost in words: "costs a sixth of a Check", "spends three to five times the CPU"
    "cost in words": re.compile(
        r"\b(?:cost|costs|spends?|took|takes)\b[^.;]{0,40}"
        r"\b(?:half|third|quarter|fifth|sixth|twice|(?:two|three|four|five|ten) times)\b"
    ),
}

REMOVED = (
    "redis-py's asyncio client spends three to five times the CPU of the protocol itself",
    "which costs a fifth to a third of the client CPU per command",
    "a second round trip for a check queued behind a batch in flight: 12 % more server CPU",
    "Building the protobuf message field by field costs a sixth of a Check",
    "the check cache and metric series grow, which cost a quarter of a Check's CPU time",
    "the lean connection needs 0.20x the client CPU of redis-py, 23.9 µs per command",
    "the generated function is 3.2x faster than the closures",
)
KEPT = (
    "timeout: 50ms                   # per quota call, all included",
    "1 MiB per concatenated string, bytes or list",
    "it can admit up to 2 x ``maxAmount`` across a window edge",
    "minDeduplicationDuration: 1s    # dedup ids kept in Redis for 2 x this",
    "A lookup costs a key per known shape, a miss a key more.",
    "Istio 1.4's global word dictionary: 222 words whose list index is their wire id.",
    "``and`` ``%`` percent-encoded",
    "Go duration text: ``1.5s``, ``2m0s``, ``150ms``",
)


def _modules() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not any(path.is_relative_to(g) for g in GENERATED):
                yield path


def _docstrings(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for the module's docstring and every class's and function's."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=False)
            if text:
                name = getattr(node, "name", "<module>")
                yield f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)} {name}", text


def figures_in(text: str) -> list[str]:
    """Every stretch of `text` that looks like a benchmark figure, named by its pattern."""
    text = " ".join(text.split())  # a figure may be wrapped across lines
    return [
        f"{kind}: {m.group(0)!r}"
        for kind, pattern in FIGURES.items()
        for m in pattern.finditer(text)
    ]


@pytest.mark.parametrize("sentence", REMOVED)
def test_the_patterns_catch_a_measured_figure(sentence: str) -> None:
    assert figures_in(sentence)


@pytest.mark.parametrize("sentence", KEPT)
def test_the_patterns_leave_contracts_alone(sentence: str) -> None:
    assert figures_in(sentence) == []


def test_no_docstring_quotes_a_benchmark_figure() -> None:
    found = [
        f"{where}: {hit}"
        for path in _modules()
        for where, text in _docstrings(path)
        for hit in figures_in(text)
    ]
    assert found == [], (
        "docstrings state contracts; move measurements to docs/benchmarks.md or "
        "docs/decisions/:\n" + "\n".join(found)
    )
