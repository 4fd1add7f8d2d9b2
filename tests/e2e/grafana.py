"""Just enough of Grafana to run a dashboard's queries without Grafana.

Reads a dashboard JSON (both the current ``panels`` model, with rows holding nested panels, and
the legacy ``rows`` model), resolves its template variables against Prometheus the way Grafana's
Prometheus data source does (``label_values``, ``query_result`` with the variable's ``regex``,
custom lists, "All" and multi-value formatting), and substitutes them and the built-in interval
variables into every panel query.

One deliberate difference: for a variable whose ``sort`` is 0 ("as returned"), options are
sorted alphabetically, because Prometheus returns aggregation results in no defined order and a
test must be deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ALL = "$__all"
# Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]].
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.*)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.DOTALL)
_REGEX_LITERAL = re.compile(r"^/(?P<body>.*)/(?P<flags>[gimsuy]*)$", re.DOTALL)


class PromAPI(Protocol):
    """The part of `tests.e2e.prometheus.PrometheusServer` this module needs."""

    def query(self, expr: str, at: float) -> list[dict[str, Any]]: ...

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]: ...

    def label_values(self, label: str) -> list[str]: ...


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL target of one panel."""

    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def name(self) -> str:
        return f"{self.dashboard} #{self.panel_id} {self.panel_title!r} {self.ref_id}"


@dataclass(frozen=True)
class Variable:
    """A resolved template variable: the selected values and how Grafana would render them."""

    name: str
    values: tuple[str, ...]
    text: str


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows and in legacy ``rows``."""

    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from walk(item.get("panels", []))

    yield from walk(board.get("panels", []))
    for row in board.get("rows", []):
        yield from walk(row.get("panels", []))


def panel_queries(board: Mapping[str, Any], dashboard: str) -> list[PanelQuery]:
    """Every non-hidden target with a PromQL ``expr``, in panel order."""
    out = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr or target.get("hide"):
                continue
            out.append(
                PanelQuery(
                    dashboard=dashboard,
                    panel_id=int(panel.get("id", 0)),
                    panel_title=str(panel.get("title", "")),
                    ref_id=str(target.get("refId", "")),
                    expr=str(expr),
                    instant=bool(target.get("instant")),
                )
            )
    return out


def builtins(window_s: float, interval_s: float, scrape_interval_s: float) -> dict[str, str]:
    """Grafana's interval variables for a `window_s` time range and an `interval_s` step.

    ``$__rate_interval`` is Grafana's max($__interval + scrape interval, 4 x scrape interval).
    """
    rate_interval = max(interval_s + scrape_interval_s, 4 * scrape_interval_s)
    return {
        "__interval": _duration(interval_s),
        "__interval_ms": str(int(interval_s * 1000)),
        "__rate_interval": _duration(rate_interval),
        "__range": _duration(window_s),
        "__range_s": str(int(window_s)),
        "__range_ms": str(int(window_s * 1000)),
    }


def _duration(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms" if seconds < 1 else f"{round(seconds)}s"


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace every variable reference; an unknown variable is an error (as a test failure)."""

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name not in variables:
            raise KeyError(f"undefined template variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(replace, expr)


def regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape (multi-value and "All" variables)."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m[0], value)


def plain_escape(value: str) -> str:
    """Grafana's prometheusRegularEscape (single-value variables)."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def resolve_variables(
    board: Mapping[str, Any], prom: PromAPI, start: float, end: float, fixed: Mapping[str, str]
) -> dict[str, Variable]:
    """Resolve the dashboard's template variables in order, each seeing those before it.

    `fixed` holds the built-in variables (see `builtins`). A query variable with no options is an
    error: its panels could never show data.
    """
    known: dict[str, str] = dict(fixed)
    resolved: dict[str, Variable] = {}
    for var in board.get("templating", {}).get("list", []):
        kind = var.get("type")
        name = str(var["name"])
        if kind == "custom":
            options = [o.strip() for o in str(var.get("query", "")).split(",") if o.strip()]
        elif kind == "query":
            raw = var.get("query")
            query = raw.get("query", "") if isinstance(raw, dict) else str(raw or "")
            options = _options(substitute(query, known), prom, start, end)
            options = _apply_regex(options, str(var.get("regex") or ""))
            options = _sort(options, int(var.get("sort") or 0))
        elif kind in ("constant", "textbox"):
            options = [str(var.get("query", ""))]
        else:
            raise ValueError(f"variable ${name}: type {kind!r} is not supported by this harness")
        if not options:
            raise ValueError(f"variable ${name} has no options (query: {var.get('query')!r})")
        variable = _select(var, name, options)
        resolved[name] = variable
        known[name] = variable.text
    return resolved


def _options(query: str, prom: PromAPI, start: float, end: float) -> list[str]:
    match = _LABEL_VALUES.match(query)
    if match:
        label = match["label"]
        selector = (match["selector"] or "").strip()
        if not selector:
            return list(prom.label_values(label))
        values = {s[label] for s in prom.series(selector, start, end) if label in s}
        return sorted(values)
    match = _QUERY_RESULT.match(query)
    if match:
        # Grafana renders each sample as `name{labels} value timestamp_ms` before the regex.
        lines = []
        for sample in prom.query(match["expr"], end):
            metric = dict(sample["metric"])
            metric_name = metric.pop("__name__", "")
            labels = ",".join(f'{k}="{v}"' for k, v in metric.items())
            at, value = sample["value"]
            lines.append(f"{metric_name}{{{labels}}} {value} {int(float(at) * 1000)}")
        return lines
    raise ValueError(f"unsupported variable query {query!r}")


def _apply_regex(options: list[str], regex: str) -> list[str]:
    if not regex:
        return list(dict.fromkeys(options))
    literal = _REGEX_LITERAL.match(regex)
    pattern = re.compile(literal["body"] if literal else regex)
    out: list[str] = []
    for option in options:
        found = pattern.search(option)
        if found is None:
            continue
        value = found.groupdict().get("value") or (found[1] if pattern.groups else found[0])
        if value not in out:
            out.append(value)
    return out


def _sort(options: list[str], mode: int) -> list[str]:
    if mode in (0, 1):
        return sorted(options)
    if mode == 2:
        return sorted(options, reverse=True)
    if mode in (3, 4):
        return sorted(options, key=_number, reverse=mode == 4)
    return sorted(options, key=str.lower, reverse=mode == 6)


def _number(text: str) -> float:
    found = re.search(r"-?\d+(\.\d+)?", text)
    return float(found[0]) if found else float("-inf")


def _select(var: Mapping[str, Any], name: str, options: list[str]) -> Variable:
    """The value Grafana shows on load: the saved `current` if still valid, else the first option
    ("All" when the variable has it)."""
    include_all = bool(var.get("includeAll"))
    multi = bool(var.get("multi"))
    current = var.get("current") or {}
    saved = current.get("value")
    saved_values = [str(v) for v in (saved if isinstance(saved, list) else [saved]) if v]
    if saved_values and all(v in options for v in saved_values):
        chosen = saved_values
    elif include_all:
        chosen = [ALL]
    else:
        chosen = [options[0]]
    if chosen == [ALL]:
        all_value = var.get("allValue")
        if all_value:
            return Variable(name, tuple(options), str(all_value))
        chosen = options
    if not multi and not include_all:
        return Variable(name, tuple(chosen), plain_escape(chosen[0]))
    escaped = [regex_escape(v) for v in chosen]
    text = escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return Variable(name, tuple(chosen), text)
