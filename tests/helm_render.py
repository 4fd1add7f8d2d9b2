"""Render the Helm templates of Istio's mixer chart (the subset they use) with given values.

Go templates as that chart writes them: ``{{ .Values.a.b }}``, ``{{ .Release.Namespace }}``,
``{{ template "NAME" . }}`` (from a table of named templates), and ``{{ if COND }}`` ...
``{{ end }}`` blocks whose conditions are value paths, ``and``/``or``/``not`` and
parentheses; ``{{-`` and ``-}}`` trim the whitespace beside them. Anything else is an error,
so a template that needs more fails loudly instead of rendering wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class RenderError(ValueError):
    pass


def render(
    text: str, values: Mapping[str, Any], release: Mapping[str, Any], named: Mapping[str, str]
) -> str:
    scope = {"Values": values, "Release": release}
    out: list[str] = []
    # One frame per open `if`: whether its body is emitted.
    stack: list[bool] = []
    pos = 0
    for match in _ACTION.finditer(text):
        literal = text[pos : match.start()]
        if match.group(1):
            literal = literal.rstrip()
        pos = match.end()
        if match.group(3):
            while pos < len(text) and text[pos].isspace():
                pos += 1
        if all(stack):
            out.append(literal)
        action = match.group(2)
        if action.startswith("if "):
            stack.append(all(stack) and _truthy(_condition(action[3:], scope)))
        elif action == "end":
            if not stack:
                raise RenderError("`end` without `if`")
            stack.pop()
        elif not all(stack):
            continue
        elif action.startswith("template "):
            name = re.fullmatch(r'template "([^"]+)" \.', action)
            if name is None or name.group(1) not in named:
                raise RenderError(f"unknown template call {action!r}")
            out.append(named[name.group(1)])
        elif action.startswith("."):
            out.append(str(_lookup(action, scope)))
        else:
            raise RenderError(f"unsupported action {action!r}")
    if stack:
        raise RenderError("unclosed `if`")
    out.append(text[pos:])
    return "".join(out)


def _lookup(path: str, scope: Mapping[str, Any]) -> Any:
    value: Any = scope
    for part in path.lstrip(".").split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _truthy(value: Any) -> bool:
    return bool(value)


def _condition(text: str, scope: Mapping[str, Any]) -> Any:
    tokens = re.findall(r"\(|\)|[^\s()]+", text)
    value, rest = _expr(tokens, scope)
    if rest:
        raise RenderError(f"cannot read condition {text!r}")
    return value


def _expr(tokens: list[str], scope: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """A pipeline: a function and its arguments, or one operand."""
    head, rest = tokens[0], tokens[1:]
    if head in ("and", "or", "not"):
        args: list[Any] = []
        while rest and rest[0] != ")":
            arg, rest = _operand(rest, scope)
            args.append(arg)
        if head == "not":
            return not _truthy(args[0]), rest
        if head == "and":
            return all(_truthy(a) for a in args), rest
        return any(_truthy(a) for a in args), rest
    return _operand(tokens, scope)


def _operand(tokens: list[str], scope: Mapping[str, Any]) -> tuple[Any, list[str]]:
    head, rest = tokens[0], tokens[1:]
    if head == "(":
        value, rest = _expr(rest, scope)
        if not rest or rest[0] != ")":
            raise RenderError("unbalanced parentheses")
        return value, rest[1:]
    if head.startswith("."):
        return _lookup(head, scope), rest
    raise RenderError(f"unsupported operand {head!r}")
