"""Why a Check was decided as it was: per rule, matched or not and, when not, the first conjunct
of its match that failed with the attribute values that conjunct reads.

Explaining is slow on purpose: each conjunct of each rule's match is compiled and evaluated
again on its own, so it runs only on demand (``mixer check --explain``, ``mixer test -v``,
``/debug/explain``), never on the request path.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer import codes
from mixer.attributes.bag import Bag, StringMap
from mixer.expr import CompileError
from mixer.expr import compile as compile_expr
from mixer.runtime.dispatcher import CheckOutcome
from mixer.runtime.routing import Rule, request_namespace
from mixer.runtime.runtime import Runtime
from mixer.templates import Variety

_MAX_VALUE_CHARS = 200


@dataclass
class RuleExplanation:
    """One rule: whether it matched, and what failed when it did not."""

    rule: str
    matched: bool
    handlers: list[str] = field(default_factory=list)
    failed_conjunct: str = ""
    error: str = ""
    values: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "matched": self.matched}
        if self.handlers:
            out["handlers"] = self.handlers
        if self.failed_conjunct:
            out["failed_conjunct"] = self.failed_conjunct
            out["values"] = self.values
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Explanation:
    """A Check's answer and the reasons for it."""

    code: str
    message: str
    decided_by: str
    handlers: list[str]
    referenced: list[str]
    rules: list[RuleExplanation]

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data (``/debug/explain``, ``mixer check --explain --format json``)."""
        return {
            "code": self.code,
            "message": self.message,
            "decided_by": self.decided_by,
            "handlers": self.handlers,
            "referenced": self.referenced,
            "rules": [r.to_dict() for r in self.rules],
        }

    def to_text(self) -> str:
        """Lines for a terminal: the answer, then one line per rule."""
        lines = [f"answer: {self.code}" + (f" ({self.message})" if self.message else "")]
        if self.decided_by:
            lines.append(f"decided by: {self.decided_by} (handlers: {', '.join(self.handlers)})")
        for r in self.rules:
            if r.matched:
                lines.append(f"  matched     {r.rule} -> {', '.join(r.handlers) or '-'}")
                continue
            reason = r.error or f"{r.failed_conjunct} is false"
            read = ", ".join(f"{k}={v}" for k, v in r.values.items())
            lines.append(f"  not matched {r.rule}: {reason}" + (f" [{read}]" if read else ""))
        lines.append(f"referenced: {', '.join(self.referenced) or '-'}")
        return "\n".join(lines)


def shown(value: object) -> object:
    """A bag value as JSON-ready data (IP addresses as text, maps as dicts), shortened."""
    if value is None:
        return "<absent>"
    if isinstance(value, bytes):
        if len(value) in (4, 16):
            return str(ipaddress.ip_address(value))
        return base64.b64encode(value[:_MAX_VALUE_CHARS]).decode()
    if isinstance(value, StringMap | Mapping):
        return {str(k): str(v)[:_MAX_VALUE_CHARS] for k, v in value.items()}
    if isinstance(value, datetime.datetime | datetime.timedelta):
        return str(value)
    if isinstance(value, str):
        return value[:_MAX_VALUE_CHARS]
    return value


def conjuncts(text: str) -> list[str]:
    """The top-level ``&&`` operands of `text`, as written (quotes and parentheses respected)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "&" and text.startswith("&&", i) and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _why_not(rule: Rule, bag: Bag, vocabulary: Mapping[str, str]) -> RuleExplanation:
    match = rule.match
    assert match is not None
    dialect = getattr(match, "dialect", "mixer")
    for part in conjuncts(match.text):
        try:
            program = compile_expr(part, dialect=dialect, vocabulary=vocabulary)
        except CompileError:
            # Not a conjunct on its own (an unusual spelling): explain the whole match.
            return _failed(rule, match.text, getattr(match, "names", ()), bag, vocabulary)
        try:
            result = program.evaluate(bag)
        except Exception as exc:
            return _failed(rule, part, program.names, bag, vocabulary, f"{part}: {exc}")
        if result is not True:
            return _failed(rule, part, program.names, bag, vocabulary)
    return _failed(rule, match.text, getattr(match, "names", ()), bag, vocabulary)


def _failed(
    rule: Rule, part: str, names: Any, bag: Bag, vocabulary: Mapping[str, str], error: str = ""
) -> RuleExplanation:
    # `names` also holds the prefixes a dotted name could be selected from ("destination"):
    # only attributes are shown.
    values = {
        name: shown(bag.get(name)) for name in sorted(names) if name in bag or name in vocabulary
    }
    return RuleExplanation(rule.name, False, failed_conjunct=part, error=error, values=values)


def explain_rules(runtime: Runtime, bag: Bag, variety: Variety) -> list[RuleExplanation]:
    """Each rule of `variety` that applies to the request's namespace, in config order."""
    vocabulary = runtime.config.vocabulary if runtime.config is not None else {}
    routes = runtime.dispatcher.routes
    out = []
    for rule in routes.rules_for(variety, request_namespace(bag)):
        handlers = sorted({a.handler.name for a in rule.actions_of(variety)})
        if rule.match is None:
            out.append(RuleExplanation(rule.name, True, handlers))
            continue
        try:
            matched = rule.match.evaluate(bag) is True
        except Exception as exc:
            explanation = _why_not(rule, bag, vocabulary)
            explanation.error = explanation.error or f"match failed: {exc}"
            out.append(explanation)
            continue
        out.append(
            RuleExplanation(rule.name, True, handlers)
            if matched
            else _why_not(rule, bag, vocabulary)
        )
    return out


def explain_check(runtime: Runtime, bag: Bag, outcome: CheckOutcome) -> Explanation:
    """Explain `outcome`, the answer `runtime` gave to a Check of `bag`."""
    rules = explain_rules(runtime, bag, Variety.CHECK)
    handlers = next((r.handlers for r in rules if r.rule == outcome.decided_by), [])
    if not handlers and outcome.decided_by:
        # A quota decided: the handlers of the quota rules that allocate it.
        handlers = sorted(
            {
                action.handler.name
                for rule in runtime.dispatcher.routes.rules
                for action in rule.actions_of(Variety.QUOTA)
                if any(b.short_name == outcome.decided_by for b in action.instances)
            }
        )
    referenced = sorted(
        f"{name}[{key}]" if key is not None else name + ("" if present else " (absent)")
        for (name, key), present in outcome.references.reads.items()
    )
    return Explanation(
        codes.name(outcome.status_code),
        outcome.message,
        outcome.decided_by,
        handlers,
        referenced,
        rules,
    )
