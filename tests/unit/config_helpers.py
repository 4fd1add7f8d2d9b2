"""Support for the config tests: a small adapter registry and a way to write config files.

The registry has our seven adapter names with the templates Istio's adapters took. Their params
parsers accept anything, except `denier`'s, which checks its params like the real one so that
params errors (and their line numbers) can be tested without depending on adapters/.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from adapters.base import AdapterInfo, Handler, ParamError
from mixer.config import ConfigProblem, check_config


def _no_build(params: Any, env: Any) -> Handler:
    raise AssertionError("config loading must not build handlers")


def permissive(name: str, templates: set[str]) -> AdapterInfo:
    """An adapter taking `templates` whose parser returns the params unchanged."""
    return AdapterInfo(name, f"test {name}", frozenset(templates), dict, _no_build)


def _denier_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    status = raw.get("status", {})
    if not isinstance(status, Mapping):
        raise ParamError("status", "expected a mapping")
    code = status.get("code", 9)
    if not isinstance(code, int) or not 0 <= code <= 16:
        raise ParamError("status.code", f"must be a gRPC code from 0 to 16, got {code!r}")
    return {"code": code, "message": status.get("message", "")}


DENIER = AdapterInfo(
    "denier", "test denier", frozenset({"checknothing", "listentry", "quota"}), _denier_params,
    _no_build,
)  # fmt: skip

TEST_ADAPTERS: Mapping[str, AdapterInfo] = MappingProxyType(
    {
        "denier": DENIER,
        "listchecker": permissive("listchecker", {"listentry"}),
        "memquota": permissive("memquota", {"quota"}),
        "redisquota": permissive("redisquota", {"quota"}),
        "prometheus": permissive("prometheus", {"metric"}),
        "stdio": permissive("stdio", {"logentry", "metric"}),
        "otel": permissive("otel", {"metric", "logentry", "tracespan"}),
    }
)


def write(directory: Path, name: str, text: str) -> Path:
    """Write dedented `text` to `directory/name` (creating sub-directories) and return the path."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(directory: Path) -> list[str]:
    """The problems of `directory` as strings, with paths relative to it."""
    return [
        relative(problem, directory) for problem in check_config(directory, TEST_ADAPTERS).problems
    ]


def relative(problem: ConfigProblem, directory: Path) -> str:
    """`str(problem)` with the file path relative to `directory`."""
    text = str(problem)
    prefix = f"{directory}/"
    return text[len(prefix) :] if text.startswith(prefix) else text
