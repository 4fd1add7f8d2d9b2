"""Expected against actual: what matched, and a readable diff when something did not.

A case states only what it cares about. Mappings match when every expected key matches (other
keys are ignored); lists match element by element and must have the same length, except a
report's ``metrics`` and ``logs``, where each expected item must match some actual one (an empty
list expects none). Codes match by name or number; durations by value ("1m" is "60s").
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

import yaml

from adapters.base import ParamError
from adapters.toolkit.params import duration_param
from mixer import codes

_CONTAINS = ("metrics", "logs")


def _code_name(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return codes.name(value)
    return value


def _duration(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        seconds = duration_param(value, "valid_duration").total_seconds()
    except ParamError:
        return value
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds}s"


def normalize(expect: Mapping[str, Any]) -> dict[str, Any]:
    """The expectation with codes as names and durations in seconds."""
    out = dict(expect)
    if "code" in out:
        out["code"] = _code_name(out["code"])
    if "valid_duration" in out:
        out["valid_duration"] = _duration(out["valid_duration"])
    quotas = out.get("quotas")
    if isinstance(quotas, dict):
        out["quotas"] = {
            k: {**v, "code": _code_name(v["code"])} if isinstance(v, dict) and "code" in v else v
            for k, v in quotas.items()
        }
    return out


def matches(expected: object, actual: object) -> bool:
    """Whether `actual` has everything `expected` states (see the module docstring)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and math.isclose(
            expected, actual, rel_tol=1e-9, abs_tol=1e-12
        )
    return bool(expected == actual)


def _contains(expected: list[Any], actual: list[Any]) -> bool:
    if not expected:
        return not actual
    return all(any(matches(e, a) for a in actual) for e in expected)


def failures(expect: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """The expected keys that did not match (empty: the case passed)."""
    wrong = []
    for key, value in normalize(expect).items():
        got = actual.get(key)
        ok = _contains(value, got or []) if key in _CONTAINS else matches(value, got)
        if not ok:
            wrong.append(key)
    return wrong


def _shown(key: str, expected: Any, actual: Any) -> Any:
    """The part of `actual` worth showing next to `expected`."""
    if key == "metrics" and isinstance(actual, list):
        names = {e.get("name") for e in expected if isinstance(e, dict)}
        return [a for a in actual if a.get("name") in names]
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: actual.get(k) for k in expected}
    return actual


def diff(expect: Mapping[str, Any], actual: Mapping[str, Any], keys: list[str]) -> str:
    """A unified diff of the failing keys: expected (-) against actual (+)."""
    expected = normalize(expect)
    want = {k: expected[k] for k in keys}
    got = {k: _shown(k, expected[k], actual.get(k)) for k in keys}
    a = yaml.safe_dump(want, sort_keys=False, allow_unicode=True).splitlines()
    b = yaml.safe_dump(got, sort_keys=False, allow_unicode=True).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "expected", "actual", lineterm=""))
