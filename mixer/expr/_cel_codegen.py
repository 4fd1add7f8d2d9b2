"""Turn a compiled CEL tree into one generated Python function.

The closures `_cel_compiler` builds cost a Python call per node, several times what a
hand-written lambda pays for a whole rule. So the node kinds rules are made of (attribute reads,
map lookups by a literal key, comparisons, `in`, `&&`, `||`, `!`, `?:`, string functions,
`size`, function calls) also carry a *recipe* that writes their evaluation as statements of a
single ``def _f(act)``; a node without one (comprehensions, names resolved at evaluation time
through several candidates) is called as its closure from that function.

A recipe does exactly what its node's closure does, in the same order, with the same errors:
fast paths only where Python's operation provably is CEL's (a guard on the operand's exact type,
the runtime function otherwise), and `&&`/`||` keep CEL's error absorption by holding an error
as a value until the other operand has had its say. Constants, attribute names and runtime
functions reach the generated code as names in its globals, never as source text. `Source` and
`function` also generate the Mixer dialect's functions (`_mixer_codegen`).
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import CodeType
from typing import Any, Protocol

from mixer.expr import _cel_runtime as rt
from mixer.expr._errors import RUNTIME_ERRORS, EvaluationError, evaluation_error, unwrap

Fn = Callable[[Any], Any]
Recipe = Callable[["Source"], str]

# Python allows 100 levels of indentation and 20 nested try blocks in a function; deeper
# sub-expressions (rare: the tree may be 100 levels deep) are called as their closures.
_MAX_LEVEL = 40
_MAX_TRY_DEPTH = 10
_MISSING: Any = object()
_ORDERING_OPERATORS = frozenset({"<", "<=", ">", ">="})
# Types of a constant operand for which Python's `==` (_FAST_SCALARS) or ordering
# (_FAST_ORDERED) is CEL's when the other operand has the same exact type.
_FAST_SCALARS = (int, float, bool)
_FAST_ORDERED = (int, float, str)


class Compiled(Protocol):
    """What generation needs of a compiled node (`_cel_compiler._Code`)."""

    @property
    def const(self) -> Any:
        """The node's value when it is a constant, else NOT_CONSTANT."""

    @property
    def fn(self) -> Fn:
        """The node's closure."""

    @property
    def recipe(self) -> Recipe | None:
        """How to generate the node's evaluation, if it can be."""

    @property
    def is_const(self) -> bool:
        """Whether `const` holds the node's value."""


def _logic_error(op: str) -> Callable[[Any, Any], EvaluationError]:
    def error(left: Any, right: Any) -> EvaluationError:
        # A held error from the left operand wins, as the closures re-raise it.
        if isinstance(left, EvaluationError):
            return left
        return rt.no_overload(op, left, right)

    return error


_GLOBALS: dict[str, Any] = {
    "__builtins__": builtins,
    "_EE": EvaluationError,
    "_RUNTIME_ERRORS": RUNTIME_ERRORS,
    "_M": _MISSING,
    "_and_error": _logic_error("_&&_"),
    "_or_error": _logic_error("_||_"),
}


class Source:
    """The function being generated: its lines and the globals they refer to."""

    __slots__ = ("binder", "bound", "count", "level", "lines", "namespace", "try_depth")

    def __init__(self) -> None:
        self.lines = ["def _f(act):"]
        self.level = 1
        self.try_depth = 0
        self.namespace = dict(_GLOBALS)
        self.count = 0
        # cel.bind locals in scope where code is being emitted: (CEL name, Python name), and
        # the function that binds one in an activation, for closures called from inside.
        self.bound: list[tuple[str, str]] = []
        self.binder: Callable[[Any, str, Any], Any] | None = None

    def emit(self, line: str) -> None:
        """Append a statement at the current indentation."""
        self.lines.append("    " * self.level + line)

    def fresh(self, prefix: str) -> str:
        """A name not used before in this function."""
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, value: object) -> str:
        """A name the generated code reads `value` by."""
        if value is None or value is True or value is False:
            return repr(value)
        name = self.fresh("_k")
        self.namespace[name] = value
        return name

    def is_local(self, name: str) -> bool:
        """Whether `name` (from `value`) is a local of the function rather than a constant."""
        return name.startswith("v")

    def assign(self, expression: str) -> str:
        """A new local holding `expression`, which must only combine names."""
        name = self.fresh("v")
        self.emit(f"{name} = {expression}")
        return name

    @contextmanager
    def block(self, header: str, *, trying: bool = False) -> Iterator[None]:
        """Statements emitted inside are the body of `header` (an if, else, try, except ...)."""
        self.emit(header)
        self.level += 1
        self.try_depth += trying
        yield
        self.try_depth -= trying
        self.level -= 1

    def too_deep(self) -> bool:
        """Whether statements emitted now would nest beyond what Python compiles."""
        return self.level > _MAX_LEVEL or self.try_depth > _MAX_TRY_DEPTH

    def value(self, node: Compiled) -> str:
        """Emit what evaluates `node` and return a local or constant name holding its value."""
        if node.is_const:
            return self.constant(node.const)
        recipe = node.recipe
        if recipe is None or self.too_deep():
            return self.assign(f"{self.constant(node.fn)}({self.activation()})")
        return recipe(self)

    def activation(self) -> str:
        """The activation a closure called here needs: `act`, with the cel.bind locals in
        scope bound in it (closures read locals from the activation, generated code from
        Python locals)."""
        expression = "act"
        for name, value in self.bound:
            assert self.binder is not None
            expression = (
                f"{self.constant(self.binder)}({expression}, {self.constant(name)}, {value})"
            )
        return expression

    def local(self, name: str) -> str | None:
        """The Python name holding the cel.bind local `name` here, if one is in scope."""
        for bound_name, value in reversed(self.bound):
            if bound_name == name:
                return value
        return None


def function(node: Compiled, text: str, unwraps: bool, filename: str = "<cel>") -> Fn:
    """One Python function evaluating `node` as `guarded(node.fn, text, unwraps)` would;
    `filename` names its code object (the dialect it was generated for)."""
    source = Source()
    with source.block("try:", trying=True):
        result = source.value(node)
    with source.block("except _RUNTIME_ERRORS as err:"):
        fail = f"{source.constant(evaluation_error)}({source.constant(text)}, err)"
        source.emit(f"raise {fail} from None")
    if unwraps:
        result = f"{source.constant(unwrap)}({result})"
    source.emit(f"return {result}")
    namespace = source.namespace
    exec(_code("\n".join(source.lines), filename), namespace)
    fn: Fn = namespace["_f"]
    return fn


@functools.lru_cache(maxsize=1024)
def _code(source: str, filename: str) -> CodeType:
    # Rules often differ only in constants, which are not in the source: compile a shape once.
    return compile(source, filename, "exec")


# -- recipes ---------------------------------------------------------------------------------------


def attribute(name: str, missing: EvaluationError) -> Recipe:
    """`act.get(name)`, raising `missing` when the activation has no such name."""

    def recipe(src: Source) -> str:
        value = src.assign(f"act.get({src.constant(name)}, _M)")
        with src.block(f"if {value} is _M:"):
            src.emit(f"raise {src.constant(missing)}")
        return value

    return recipe


def key_lookup(
    operand: Compiled, key: str, missing: EvaluationError, fallback: Callable[[Any, str], Any]
) -> Recipe:
    """`operand[key]` or `operand.key` through the map's `get`; `fallback` for a non-map."""

    def recipe(src: Source) -> str:
        container = src.value(operand)
        k = src.constant(key)
        value = src.fresh("v")
        with src.block("try:", trying=True):
            src.emit(f"{value} = {container}.get({k}, _M)")
        with src.block("except AttributeError:"):
            src.emit(f"{value} = {src.constant(fallback)}({container}, {k})")
        with src.block(f"if {value} is _M:"):
            src.emit(f"raise {src.constant(missing)}")
        return value

    return recipe


def call(impl: Callable[..., Any], operands: Sequence[Compiled]) -> Recipe:
    """`impl(*operands)`, the operands evaluated left to right."""

    def recipe(src: Source) -> str:
        args = ", ".join([src.value(op) for op in operands])
        return src.assign(f"{src.constant(impl)}({args})")

    return recipe


def bind(
    name: str, init: Compiled, body: Compiled, binder: Callable[[Any, str, Any], Any]
) -> Recipe:
    """`cel.bind(name, init, body)`: `init` into a Python local, `body` reading it there."""

    def recipe(src: Source) -> str:
        value = src.value(init)
        src.binder = binder
        src.bound.append((name, value))
        try:
            return src.value(body)
        finally:
            src.bound.pop()

    return recipe


def local(name: str, read: Fn) -> Recipe:
    """A cel.bind local: the Python local its bind recipe made, else (a comprehension's
    variable) the closure `read` on the activation."""

    def recipe(src: Source) -> str:
        value = src.local(name)
        if value is not None:
            # A copy: recipes may assign to the name a sub-expression gives them.
            return src.assign(value)
        return src.assign(f"{src.constant(read)}({src.activation()})")

    return recipe


def found_or(
    lookup: Callable[[Any, Any], Any],
    operand: Compiled,
    key: Compiled,
    default: Compiled,
    absent: object,
) -> Recipe:
    """`lookup(operand, key)`, then `default` (always evaluated, as a call's argument is),
    which is the result when the lookup gave `absent`."""

    def recipe(src: Source) -> str:
        found = src.assign(f"{src.constant(lookup)}({src.value(operand)}, {src.value(key)})")
        other = src.value(default)
        return src.assign(f"{other} if {found} is {src.constant(absent)} else {found}")

    return recipe


def python_format(
    impl: Callable[[str, list[Any]], str],
    template: str,
    python: str,
    verbs: Sequence[str],
    items: Sequence[Compiled],
    max_size: int,
) -> Recipe:
    """`template.format([items])` as Python's `python % (items)` when every item has the
    exact type its verb prints as Python does (str for %s, int for %s and %d) and the strs
    leave room under `max_size`; `impl(template, [items])` otherwise."""
    # An int prints in at most 20 characters; the rest of the room is for the strs.
    room = max_size - len(template) - 20 * len(verbs)

    def recipe(src: Source) -> str:
        values = [src.value(item) for item in items]
        guards = []
        lengths = []
        for value, verb in zip(values, verbs, strict=True):
            if verb == "s":
                guards.append(f"(type({value}) is str or type({value}) is int)")
                lengths.append(f"(len({value}) if type({value}) is str else 0)")
            else:
                guards.append(f"type({value}) is int")
        if lengths:
            guards.append(f"{' + '.join(lengths)} <= {room}")
        args = ", ".join(values)
        fast = f"{src.constant(python)} % ({args},)"
        slow = f"{src.constant(impl)}({src.constant(template)}, [{args}])"
        return src.assign(f"{fast} if {' and '.join(guards)} else {slow}")

    return recipe


def python_join(
    impl: Callable[..., str],
    separator: str,
    explicit: bool,
    items: Sequence[Compiled],
    room: int,
) -> Recipe:
    """`[items].join(separator)` as `separator.join` when every item is an exact str and
    their lengths total at most `room`; `impl([items], separator)` (or without the separator
    when the call had none) otherwise."""

    def recipe(src: Source) -> str:
        values = [src.value(item) for item in items]
        types = " and ".join(f"type({value}) is str" for value in values)
        lengths = " + ".join(f"len({value})" for value in values)
        listed = ", ".join(values)
        sep = src.constant(separator)
        fast = f"{sep}.join(({listed},))"
        slow = f"{src.constant(impl)}([{listed}]{', ' + sep if explicit else ''})"
        return src.assign(f"{fast} if {types} and {lengths} <= {room} else {slow}")

    return recipe


def present(name: str) -> Recipe:
    """`has(attribute)`: whether the activation holds `name`."""

    def recipe(src: Source) -> str:
        return src.assign(f"{src.constant(name)} in act")

    return recipe


def list_of(items: list[Compiled]) -> Recipe:
    """A list literal."""

    def recipe(src: Source) -> str:
        return src.assign(f"[{', '.join([src.value(item) for item in items])}]")

    return recipe


def equality(left: Compiled, right: Compiled, negate: bool) -> Recipe:
    """CEL `==` / `!=`: Python's `==` when one side is a constant of a kind where it agrees."""

    def recipe(src: Source) -> str:
        a, b = src.value(left), src.value(right)
        op = "!=" if negate else "=="
        slow = f"{'not ' if negate else ''}{src.constant(rt.equal)}({a}, {b})"
        if left.is_const == right.is_const:
            return src.assign(slow)
        const, operand, k = (right.const, a, b) if right.is_const else (left.const, b, a)
        if isinstance(const, str | bytes):
            # Python's == between a str (or bytes) and any other value is CEL's.
            return src.assign(f"{operand} {op} {k}")
        if type(const) in _FAST_SCALARS:
            exact = type(const).__name__
            return src.assign(f"{operand} {op} {k} if type({operand}) is {exact} else {slow}")
        return src.assign(slow)

    return recipe


def ordering(op: str, order: Callable[[Any, Any], bool], left: Compiled, right: Compiled) -> Recipe:
    """CEL `<`, `<=`, `>`, `>=`: Python's when the left value has the right constant's type."""
    assert op in _ORDERING_OPERATORS  # pasted into the source

    def recipe(src: Source) -> str:
        a, b = src.value(left), src.value(right)
        slow = f"{src.constant(order)}({a}, {b})"
        if right.is_const and type(right.const) in _FAST_ORDERED:
            exact = type(right.const).__name__
            return src.assign(f"{a} {op} {b} if type({a}) is {exact} else {slow}")
        return src.assign(slow)

    return recipe


def membership(left: Compiled, right: Compiled, maybe_map: bool) -> Recipe:
    """CEL `in`: a set lookup for a constant list of strings, the map's `get` for a string key."""

    def recipe(src: Source) -> str:
        a, b = src.value(left), src.value(right)
        slow = f"{src.constant(rt.contains)}({a}, {b})"
        const = right.const
        if isinstance(const, list) and const and all(type(item) is str for item in const):
            members = src.constant(frozenset(const))
            return src.assign(f"{a} in {members} if type({a}) is str else {slow}")
        if not maybe_map:
            return src.assign(slow)
        if left.is_const and type(left.const) is str:
            return _string_key_in(src, a, b, slow)
        value = src.fresh("v")
        with src.block(f"if type({a}) is str:"):
            _string_key_in(src, a, b, slow, value)
        with src.block("else:"):
            src.emit(f"{value} = {slow}")
        return value

    return recipe


def _string_key_in(src: Source, key: str, container: str, slow: str, value: str = "") -> str:
    # rt.contains looks a string up with the map's get: do that without its kind dispatch.
    value = value or src.fresh("v")
    with src.block("try:", trying=True):
        src.emit(f"{value} = {container}.get({key}, _M) is not _M")
    with src.block("except AttributeError:"):
        src.emit(f"{value} = {slow}")
    return value


def logical(left: Compiled, right: Compiled, conjunction: bool) -> Recipe:
    """CEL `&&` / `||`, commutative over errors: the left error is held until the right value
    shows whether it decides the result (`error && false` is false)."""
    decisive, other = ("False", "True") if conjunction else ("True", "False")
    error = "_and_error" if conjunction else "_or_error"

    def recipe(src: Source) -> str:
        with src.block("try:", trying=True):
            a = src.value(left)
            if not src.is_local(a):
                a = src.assign(a)
        caught = src.fresh("e")
        with src.block(f"except _EE as {caught}:"):
            src.emit(f"{a} = {caught}")
        result = src.fresh("v")
        with src.block(f"if {a} is {decisive}:"):
            src.emit(f"{result} = {decisive}")
        with src.block("else:"):
            b = src.value(right)
            with src.block(f"if {b} is {decisive}:"):
                src.emit(f"{result} = {decisive}")
            with src.block(f"elif {a} is {other} and {b} is {other}:"):
                src.emit(f"{result} = {other}")
            with src.block("else:"):
                src.emit(f"raise {error}({a}, {b})")
        return result

    return recipe


def negation(operand: Compiled) -> Recipe:
    """CEL `!`."""

    def recipe(src: Source) -> str:
        a = src.value(operand)
        slow = f"{src.constant(rt.logical_not)}({a})"
        return src.assign(f"({a} is False) if ({a} is True or {a} is False) else {slow}")

    return recipe


def choice(cond: Compiled, then: Compiled, otherwise: Compiled, op: str) -> Recipe:
    """`cond ? then : otherwise` (and `conditional()`): only the chosen branch is evaluated."""

    def recipe(src: Source) -> str:
        c = src.value(cond)
        result = src.fresh("v")
        with src.block(f"if {c} is True:"):
            src.emit(f"{result} = {src.value(then)}")
        with src.block(f"elif {c} is False:"):
            src.emit(f"{result} = {src.value(otherwise)}")
        with src.block("else:"):
            src.emit(f"raise {src.constant(rt.no_overload)}({src.constant(op)}, {c})")
        return result

    return recipe


# Python spelling of CEL's string predicates, `{0}` the receiver and `{1}` the argument.
_STRING_TESTS = {
    "startsWith": "{0}.startswith({1})",
    "endsWith": "{0}.endswith({1})",
    "contains": "{1} in {0}",
}


def string_test(name: str, impl: Callable[[Any, Any], bool], operands: list[Compiled]) -> Recipe:
    """`s.startsWith(t)`, `s.endsWith(t)`, `s.contains(t)`: str methods on two exact strs."""
    if len(operands) != 2:
        return call(impl, operands)
    target, arg = operands

    def recipe(src: Source) -> str:
        a, b = src.value(target), src.value(arg)
        guard = f"type({a}) is str"
        if not (arg.is_const and type(arg.const) is str):
            guard += f" and type({b}) is str"
        fast = _STRING_TESTS[name].format(a, b)
        return src.assign(f"{fast} if {guard} else {src.constant(impl)}({a}, {b})")

    return recipe


def size(impl: Callable[[Any], int], operands: list[Compiled]) -> Recipe:
    """`size(x)`: len() of a str (code points, as CEL counts), the runtime otherwise."""
    if len(operands) != 1:
        return call(impl, operands)
    (operand,) = operands

    def recipe(src: Source) -> str:
        a = src.value(operand)
        return src.assign(f"len({a}) if type({a}) is str else {src.constant(impl)}({a})")

    return recipe
