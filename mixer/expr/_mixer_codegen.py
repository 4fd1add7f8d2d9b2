"""Turn a compiled CEXL tree into one generated Python function, as `_cel_codegen` does for CEL.

Same machinery (`_cel_codegen.Source`, `function`): each node of `_mixer_compiler` carries a
recipe writing what its closure does as statements of one ``def _f(act)``, performing the same
Python operations in the same order, so values, errors and reads are the closures' own.

Mixer's `|` adds a second way to evaluate the nodes that can be absent (attributes, map lookups,
`|` itself): an *absent recipe* writes what the node's `try_fn` does, leaving None where `try_fn`
returns ABSENT. None can stand for absence because no CEXL value is None: attributes and map
values are absent exactly when `get` returns None, and nothing else yields None. A chain
``a | b | "x"`` thus becomes flat ``v = act.get(a)`` / ``if v is None:`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from mixer.expr import _cel_codegen as gen

Fn = Callable[[Any], Any]
Recipe = gen.Recipe
RequireBool = Callable[[Any, str], bool]

# What a closure's try_fn returns for an absent value.
ABSENT: Any = object()
# Binary operators whose closure applies exactly Python's operator (pasted into the source).
_PYTHON_OPERATORS = frozenset({"+", "<", "<=", ">", ">="})


class Compiled(gen.Compiled, Protocol):
    """What generation needs of a compiled CEXL node (`_mixer_compiler._Code`)."""

    @property
    def try_fn(self) -> Fn | None:
        """The closure returning ABSENT for an absent value; None if the node cannot be absent."""

    @property
    def try_recipe(self) -> Recipe | None:
        """How to generate `try_fn`'s evaluation, if it can be."""


def function(node: Compiled, text: str, unwraps: bool) -> Fn:
    """One Python function evaluating `node` as `guarded(node.fn, text, unwraps)` would."""
    return gen.function(node, text, unwraps, filename="<mixer>")


def _local(src: gen.Source, name: str) -> str:
    # Recipes below reassign the name they got; a constant's name must stay the constant.
    return name if src.is_local(name) else src.assign(name)


def absent_or_value(src: gen.Source, node: Compiled) -> str:
    """Emit what evaluates `node` as its `try_fn` would (its `fn` if it cannot be absent) and
    return a name holding the value, or None where the node is absent."""
    if node.try_fn is None:
        return src.value(node)
    if node.try_recipe is not None and not src.too_deep():
        return node.try_recipe(src)
    value = src.assign(f"{src.constant(node.try_fn)}(act)")
    with src.block(f"if {value} is {src.constant(ABSENT)}:"):
        src.emit(f"{value} = None")
    return value


def _check_bool(src: gen.Source, value: str, require: RequireBool, what: str) -> None:
    # `require` raises for a non-BOOL; a BOOL passes without a call.
    with src.block(f"if {value} is not True and {value} is not False:"):
        src.emit(f"{src.constant(require)}({value}, {src.constant(what)})")


# -- recipes ---------------------------------------------------------------------------------------


def attribute(name: str, missing: str) -> tuple[Recipe, Recipe]:
    """`act.get(name)`: the value recipe raises EvaluationError(`missing`) when it is None."""

    def recipe(src: gen.Source) -> str:
        value = try_recipe(src)
        with src.block(f"if {value} is None:"):
            src.emit(f"raise _EE({src.constant(missing)})")
        return value

    def try_recipe(src: gen.Source) -> str:
        return src.assign(f"act.get({src.constant(name)})")

    return recipe, try_recipe


def key_lookup(target: Compiled, key: str) -> tuple[Recipe, Recipe]:
    """`target[key]` for a constant key, through the map's `get`: a missing key is ``""`` as a
    value and absent on the left of ``|`` (Istio's semantics)."""

    def recipe(src: gen.Source) -> str:
        return src.assign(f"{src.value(target)}.get({src.constant(key)}, '')")

    def try_recipe(src: gen.Source) -> str:
        container = absent_or_value(src, target)
        if target.try_fn is None:
            return src.assign(f"{container}.get({src.constant(key)})")
        container = _local(src, container)
        with src.block(f"if {container} is not None:"):
            src.emit(f"{container} = {container}.get({src.constant(key)})")
        return container

    return recipe, try_recipe


def dynamic_lookup(target: Compiled, key: Compiled) -> tuple[Recipe, Recipe]:
    """`target[key]` for a computed key: the map, then the key, then the map's `get`; a missing
    key is ``""`` as a value and absent on the left of ``|``."""

    def recipe(src: gen.Source) -> str:
        container, k = src.value(target), src.value(key)
        return src.assign(f"{container}.get({k}, '')")

    def try_recipe(src: gen.Source) -> str:
        value = src.fresh("v")
        src.emit(f"{value} = None")
        container = absent_or_value(src, target)
        with src.block(f"if {container} is not None:"):
            k = absent_or_value(src, key)
            with src.block(f"if {k} is not None:"):
                src.emit(f"{value} = {container}.get({k})")
        return value

    return recipe, try_recipe


def default(left: Compiled, right: Compiled) -> tuple[Recipe, Recipe]:
    """`left | right`: `right` (as a value, or absent in turn) only where `left` is absent."""

    def make(evaluate_right: Callable[[gen.Source, Compiled], str]) -> Recipe:
        def recipe(src: gen.Source) -> str:
            value = _local(src, absent_or_value(src, left))
            with src.block(f"if {value} is None:"):
                src.emit(f"{value} = {evaluate_right(src, right)}")
            return value

        return recipe

    return make(gen.Source.value), make(absent_or_value)


def logical(
    left: Compiled, right: Compiled, conjunction: bool, require: RequireBool | None, op: str
) -> Recipe:
    """`&&` / `||`, short-circuiting. Without `require` (both operands typed BOOL) it is Python's
    `and` / `or`, truthiness included, as the closure; with it, both operands must be BOOLs."""

    def recipe(src: gen.Source) -> str:
        value = _local(src, src.value(left))
        if require is None:
            header = f"if {value}:" if conjunction else f"if not {value}:"
        else:
            _check_bool(src, value, require, op)
            header = f"if {value} is {conjunction}:"
        with src.block(header):
            src.emit(f"{value} = {src.value(right)}")
            if require is not None:
                _check_bool(src, value, require, op)
        return value

    return recipe


def checked_bool(operand: Compiled, require: RequireBool, what: str) -> Recipe:
    """`require(operand, what)`: the operand's value, which must be a BOOL."""

    def recipe(src: gen.Source) -> str:
        value = src.value(operand)
        _check_bool(src, value, require, what)
        return value

    return recipe


def choice(
    cond: Compiled, then: Compiled, otherwise: Compiled, require: RequireBool | None, what: str
) -> Recipe:
    """`conditional(cond, then, otherwise)`: only the chosen branch is evaluated; the condition
    is taken by truthiness as the closure does, after `require` when given."""

    def recipe(src: gen.Source) -> str:
        c = src.value(cond)
        if require is not None:
            _check_bool(src, c, require, what)
        result = src.fresh("v")
        with src.block(f"if {c}:"):
            src.emit(f"{result} = {src.value(then)}")
        with src.block("else:"):
            src.emit(f"{result} = {src.value(otherwise)}")
        return result

    return recipe


def compare_constant(operand: Compiled, const: Any, negate: bool) -> Recipe:
    """`operand == const` (or `!=`) with Python's operator, the operand on the left."""

    def recipe(src: gen.Source) -> str:
        value = src.value(operand)
        return src.assign(f"{value} {'!=' if negate else '=='} {src.constant(const)}")

    return recipe


def equality(
    left: Compiled, right: Compiled, equal: Callable[[Any, Any], bool], negate: bool
) -> Recipe:
    """`equal(left, right)`, negated with `not` for `!=`."""

    def recipe(src: gen.Source) -> str:
        a, b = src.value(left), src.value(right)
        return src.assign(f"{'not ' if negate else ''}{src.constant(equal)}({a}, {b})")

    return recipe


def binary(op: str, left: Compiled, right: Compiled) -> Recipe:
    """`left op right` for `+` and the orderings: the closures apply Python's operator."""
    assert op in _PYTHON_OPERATORS  # pasted into the source

    def recipe(src: gen.Source) -> str:
        a, b = src.value(left), src.value(right)
        return src.assign(f"{a} {op} {b}")

    return recipe


def glob(value: Compiled, pattern: str) -> Recipe:
    """`match(value, pattern)` for a constant pattern: the one string test `glob_match` picks
    for it, applied as `glob_match` applies it."""
    if pattern.endswith("*"):
        test, argument = "{0}.startswith({1})", pattern[:-1]
    elif pattern.startswith("*"):
        test, argument = "{0}.endswith({1})", pattern[1:]
    else:
        test, argument = "{0} == {1}", pattern

    def recipe(src: gen.Source) -> str:
        v = src.value(value)
        return src.assign(test.format(v, src.constant(argument)))

    return recipe


def regex_search(search: Any, operand: Compiled) -> Recipe:
    """`"pattern".matches(operand)` with the pattern compiled once: `search(text)` is the
    unanchored search (`_externs.searcher`)."""

    def recipe(src: gen.Source) -> str:
        return src.assign(f"{src.constant(search)}({src.value(operand)})")

    return recipe


# A function call is generated as in CEL: the operands left to right, then the implementation.
call = gen.call
