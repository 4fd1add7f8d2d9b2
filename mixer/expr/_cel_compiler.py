"""Compile a CEL tree to nested Python closures with CEL's semantics, and from them one Python
function per expression (`_cel_codegen`: each node's recipe generates what its closure does).

- Errors are exceptions; `&&`, `||`, `all` and `exists` absorb them exactly where CEL's
  commutative logic says so (`error || true` is true, `error && false` is false).
- With a vocabulary, names resolve at compile time to attributes (longest dotted prefix, the
  rest is map field selection), and unknown names, unknown functions and clear type mismatches
  are CompileErrors. Without one, names resolve at evaluation time as CEL specifies (longest
  qualified name first, container-prefixed candidates before plain ones).
- Attributes are read with `activation.get(name, default)`, string-map keys with the map's
  `get`/`in`, and only when evaluation reaches them, so a TrackingBag sees exactly what counted.
- Sub-expressions whose operands are all constants are evaluated once, at compile time (unless
  that raises: a CEL error stays an evaluation-time value that `||`/`&&` may still absorb).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mixer.expr import _cel_codegen as gen
from mixer.expr import _cel_ext_optionals as opt
from mixer.expr import _cel_ext_strings as strings
from mixer.expr import _cel_libraries as cel_libraries
from mixer.expr import _cel_runtime as rt
from mixer.expr._ast import (
    NOT_CONSTANT,
    Binary,
    Call,
    Conditional,
    Ident,
    Index,
    ListLit,
    Literal,
    MapLit,
    MessageLit,
    Node,
    Select,
    Unary,
    attribute_names,
    check_depth,
)
from mixer.expr._cel_ext_block import BIND, expand_blocks
from mixer.expr._cel_parser import parse
from mixer.expr._errors import UNWRAPPED_TYPES, CompileError, EvaluationError, guarded

DYN = "dyn"
Activation = Any
Fn = Callable[[Activation], Any]

_MISSING: Any = object()
# Iterations one top-level comprehension may run, nested comprehensions included.
MAX_COMPREHENSION_ITERATIONS = 100_000

# Mixer ValueType -> CEL kind, and the result type a CEL kind reports as.
_KIND_OF_VALUE_TYPE = {
    "STRING": "string",
    "EMAIL_ADDRESS": "string",
    "URI": "string",
    "DNS_NAME": "string",
    "INT64": "int",
    "DOUBLE": "double",
    "BOOL": "bool",
    "TIMESTAMP": "timestamp",
    "DURATION": "duration",
    "IP_ADDRESS": "bytes",
    "STRING_MAP": "map",
    "DYNAMIC": DYN,
}
_VALUE_TYPE_OF_KIND = {
    "string": "STRING",
    "int": "INT64",
    "double": "DOUBLE",
    "bool": "BOOL",
    "timestamp": "TIMESTAMP",
    "duration": "DURATION",
}
_LITERAL_KIND = {
    "int": "int",
    "uint": "uint",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "bool": "bool",
    "null": "null",
}
# Result kinds (and Mixer ValueTypes) of functions, for result_type and checking.
_FUNCTION_RESULTS: dict[str, tuple[str, str | None]] = {
    "size": ("int", None),
    "contains": ("bool", None),
    "startsWith": ("bool", None),
    "endsWith": ("bool", None),
    "matches": ("bool", None),
    "int": ("int", None),
    "uint": ("uint", None),
    "double": ("double", None),
    "string": ("string", None),
    "bytes": ("bytes", None),
    "bool": ("bool", None),
    "timestamp": ("timestamp", None),
    "duration": ("duration", None),
    "type": ("type", None),
    "dyn": (DYN, None),
    "match": ("bool", None),
    "ip": ("bytes", "IP_ADDRESS"),
    "email": ("string", "EMAIL_ADDRESS"),
    "dnsName": ("string", "DNS_NAME"),
    "uri": ("string", "URI"),
    "emptyStringMap": ("map", "STRING_MAP"),
    "reverse": ("string", None),
    "toLower": ("string", None),
    **{name: ("int", None) for name in rt.TIME_ACCESSORS},
}
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": rt.add,
    "-": rt.subtract,
    "*": rt.multiply,
    "/": rt.divide,
    "%": rt.modulo,
}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": rt.less,
    "<=": rt.less_equal,
    ">": rt.greater,
    ">=": rt.greater_equal,
}
_PY_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# Kinds each arithmetic operator takes when both operands have the same kind.
_ARITHMETIC_KINDS = {
    "+": frozenset({"int", "uint", "double", "string", "bytes", "list", "duration"}),
    "-": frozenset({"int", "uint", "double", "duration"}),
    "*": rt.NUMERIC,
    "/": rt.NUMERIC,
    "%": frozenset({"int", "uint"}),
}
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# Two-variable comprehensions (library two_var_comprehensions) and their result kinds.
_TWO_VAR_MACROS = {
    "all": "bool",
    "exists": "bool",
    "existsOne": "bool",
    "transformList": "list",
    "transformMap": "map",
}
# The variable a two-variable comprehension's loop assigns (key, value) pairs to; not a name
# an expression can write.
_PAIR = "@pair"
_ORDERED_KINDS = frozenset(
    {"int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration", DYN}
)


_Environment = tuple[
    Mapping[str, rt.CelType],
    Mapping[str, Callable[..., Any]],
    Mapping[str, tuple[str, str | None]],
    frozenset[str],
]


@functools.lru_cache(maxsize=64)
def _environment(libraries: tuple[str, ...] | None) -> _Environment:
    """(type names, functions, result kinds, macros) of the core plus `libraries`."""
    type_names = dict(rt.TYPES)
    functions = dict(rt.FUNCTIONS)
    results = dict(_FUNCTION_RESULTS)
    macros: set[str] = set()
    for lib in cel_libraries.resolve(libraries):
        functions.update(lib.functions)
        for name in {*lib.results, *lib.value_types}:
            results[name] = (lib.results.get(name, DYN), lib.value_types.get(name))
        type_names.update({name: rt.CelType(name) for name in lib.types})
        macros.update(lib.macros)
    return type_names, functions, results, frozenset(macros)


class _Scope:
    """The activation inside a comprehension: attribute reads go to the root activation,
    comprehension variables live in `vars` (so they never leak into attribute lookups)."""

    __slots__ = ("budget", "root", "vars")

    def __init__(self, root: Any, variables: dict[str, Any], budget: list[int]) -> None:
        self.root = root
        self.vars = variables
        self.budget = budget  # iterations left, shared by nested comprehensions

    def get(self, key: str, default: Any = None) -> Any:
        return self.root.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.root


class _Code:
    """One compiled node: static kind (CEL kind or "dyn"), Mixer ValueType if known, closure,
    and the recipe that generates the same evaluation as Python source (`_cel_codegen`)."""

    __slots__ = ("const", "fn", "kind", "recipe", "value_type")

    def __init__(
        self,
        kind: str,
        fn: Fn,
        const: Any = NOT_CONSTANT,
        value_type: str | None = None,
        recipe: gen.Recipe | None = None,
    ) -> None:
        self.kind = kind
        self.fn = fn
        self.const = const
        self.value_type = value_type
        self.recipe = recipe

    @property
    def is_const(self) -> bool:
        return self.const is not NOT_CONSTANT


def _constant(value: Any, kind: str | None = None) -> _Code:
    return _Code(kind or rt.kind(value), lambda act: value, value)


def _raiser(error: rt.CelError) -> Fn:
    def fn(act: Activation) -> Any:
        raise error

    return fn


def _present(name: str) -> _Code:
    return _Code("bool", lambda act: name in act, recipe=gen.present(name))


class CelCompiler:
    """Compiles one CEL expression; `vocabulary=None` means names resolve when evaluated.
    `libraries` names the extension libraries the expression may use (None: the default set
    of `_cel_libraries`)."""

    def __init__(
        self,
        vocabulary: Mapping[str, str] | None,
        container: str = "",
        libraries: Iterable[str] | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.checked = vocabulary is not None
        parts = container.split(".") if container else []
        self.prefixes = [".".join(parts[:n]) + "." for n in range(len(parts), 0, -1)] + [""]
        env = _environment(None if libraries is None else tuple(libraries))
        # Shared between compilers of the same library set: read, never written.
        self.type_names, self.functions, self.results, self.macros = env
        # After `compile`: every attribute name the expression might read (`attribute_names`).
        self.names: frozenset[str] = frozenset()

    def compile(self, text: str) -> tuple[Fn, str, Any]:
        """(evaluate, result ValueType name, constant value or NOT_CONSTANT); `evaluate` raises
        only EvaluationError and hands a string map out unwrapped (`_errors.guarded`)."""
        tree = check_depth(parse(text))
        if "cel.block" in self.macros:
            tree = expand_blocks(tree)
        self.names = attribute_names(tree, tuple(self.prefixes))
        code = self.node(tree, frozenset())
        if code.value_type == "IP_ADDRESS" and code.kind == DYN:
            # An address from ip() leaves the program as Mixer's IP_ADDRESS: plain bytes.
            get = code.fn
            code = self.fold(
                _Code("bytes", lambda act: bytes(get(act)), value_type="IP_ADDRESS"),
                (code,),
            )
            code.recipe = gen.call(bytes, [_Code(DYN, get)]) if not code.is_const else None
        result = code.value_type or _VALUE_TYPE_OF_KIND.get(code.kind, "DYNAMIC")
        unwraps = result in UNWRAPPED_TYPES
        if code.is_const or code.recipe is None:
            return guarded(code.fn, text, unwraps), result, code.const
        return gen.function(code, text, unwraps), result, code.const

    # -- helpers ------------------------------------------------------------------------------

    def require(self, code: _Code, kinds: Iterable[str], what: str, col: int) -> None:
        allowed = set(kinds)
        if self.checked and code.kind != DYN and code.kind not in allowed:
            expected = " or ".join(sorted(allowed))
            raise CompileError(f"{what} must be {expected}, got {code.kind}", col)

    @staticmethod
    def fold(code: _Code, operands: Iterable[_Code]) -> _Code:
        """Evaluate now when every operand is a constant and evaluation succeeds."""
        if not all(op.is_const for op in operands):
            return code
        try:
            value = code.fn({})
        except (EvaluationError, ArithmeticError, ValueError, TypeError):
            return code
        return _Code(code.kind, lambda act: value, value, code.value_type)

    # -- nodes --------------------------------------------------------------------------------

    def node(self, node: Node, scope: frozenset[str]) -> _Code:
        if isinstance(node, Literal):
            value = node.value
            if node.kind == "uint":
                assert isinstance(value, int)
                value = rt.UInt(value)
            return _constant(value, _LITERAL_KIND[node.kind])
        if isinstance(node, Ident | Select):
            path = self.path_of(node, scope)
            if path is not None:
                return self.name(path, node, scope)
            assert isinstance(node, Select)
            operand = self.node(node.operand, scope)
            if node.optional:
                return self.optional_access(opt.select, operand, _constant(node.field), node.col)
            return self.select(operand, node.field, node.col)
        if isinstance(node, Index):
            return self.index(node, scope)
        if isinstance(node, Call):
            return self.call(node, scope)
        if isinstance(node, Unary):
            return self.unary(node, scope)
        if isinstance(node, Binary):
            return self.binary(node, scope)
        if isinstance(node, Conditional):
            return self.conditional(node, scope)
        if isinstance(node, ListLit):
            return self.list_literal(node, scope)
        if isinstance(node, MapLit):
            return self.map_literal(node, scope)
        assert isinstance(node, MessageLit)
        raise CompileError(
            f"message construction ({node.type_name}{{...}}) is not supported", node.col
        )

    @staticmethod
    def path_of(node: Node, scope: frozenset[str]) -> tuple[list[str], bool] | None:
        """(parts, absolute) of a dotted name `a.b.c`, or None if the root is not a name."""
        parts: list[str] = []
        while isinstance(node, Select):
            if node.optional:
                return None
            parts.append(node.field)
            node = node.operand
        if not isinstance(node, Ident):
            return None
        parts.append(node.name)
        parts.reverse()
        return parts, node.absolute

    def name(
        self, path: tuple[list[str], bool], node: Ident | Select, scope: frozenset[str]
    ) -> _Code:
        parts, absolute = path
        col = _start_col(node)
        if not absolute and parts[0] in scope:
            local = parts[0]

            def read(act: Activation) -> Any:
                return act.vars[local]

            code = _Code(DYN, read, recipe=gen.local(local, read))
            for field in parts[1:]:
                code = self.select(code, field, col)
            return code
        if self.vocabulary is not None:
            return self.typed_name(parts, absolute, col)
        return self.dynamic_name(parts, absolute, col)

    def typed_name(self, parts: list[str], absolute: bool, col: int) -> _Code:
        assert self.vocabulary is not None
        # cel-spec's order, as in `dynamic_name`: the longest name first, in the innermost
        # container first; a leading '.' names the root only.
        prefixes = [""] if absolute else self.prefixes
        for n in range(len(parts), 0, -1):
            for prefix in prefixes:
                name = prefix + ".".join(parts[:n])
                value_type = self.vocabulary.get(name)
                if value_type is not None:
                    code = self.attribute(name, value_type)
                    for field in parts[n:]:
                        code = self.select(code, field, col)
                    return code
        dotted = ".".join(parts)
        if dotted in self.type_names:
            return _constant(self.type_names[dotted], "type")
        raise CompileError(f"unknown attribute '{dotted}'", col)

    @staticmethod
    def attribute(name: str, value_type: str) -> _Code:
        missing = rt.CelError(f"no such attribute: '{name}'")

        def fn(act: Activation) -> Any:
            value = act.get(name, _MISSING)
            if value is _MISSING:
                raise missing
            return value

        kind = _KIND_OF_VALUE_TYPE[value_type]
        return _Code(
            kind,
            fn,
            value_type=value_type if value_type != "DYNAMIC" else None,
            recipe=gen.attribute(name, missing),
        )

    def dynamic_name(self, parts: list[str], absolute: bool, col: int) -> _Code:
        prefixes = [""] if absolute else self.prefixes
        candidates = [
            (prefix + ".".join(parts[:n]), tuple(parts[n:]))
            for n in range(len(parts), 0, -1)
            for prefix in prefixes
        ]
        dotted = ".".join(parts)
        fallback = self.type_names.get(dotted)
        undeclared = rt.CelError(f"undeclared reference to '{dotted}'")
        if len(candidates) == 1 and fallback is None:
            only = candidates[0][0]

            def single(act: Activation) -> Any:
                value = act.get(only, _MISSING)
                if value is _MISSING:
                    raise undeclared
                return value

            return _Code(DYN, single, recipe=gen.attribute(only, undeclared))

        def resolve(act: Activation) -> Any:
            for name, fields in candidates:
                value = act.get(name, _MISSING)
                if value is not _MISSING:
                    for field in fields:
                        value = rt.select(value, field)
                    return value
            if fallback is not None:
                return fallback
            raise undeclared

        return _Code(DYN, resolve)

    def select(self, operand: _Code, field: str, col: int) -> _Code:
        self.require(operand, ("map",), f"the operand of '.{field}'", col)
        missing = rt.CelError(f"no such key: '{field}'")
        fn = _key_lookup(operand.fn, field, missing, rt.select)
        kind = "string" if operand.value_type == "STRING_MAP" else DYN
        recipe = gen.key_lookup(operand, field, missing, rt.select)
        return self.fold(_Code(kind, fn, recipe=recipe), (operand,))

    def optional_syntax(self, col: int) -> None:
        """Raise unless the optionals library (and so its syntax) is enabled."""
        if "?" not in self.macros:
            raise CompileError("optional syntax ('?') needs the CEL library 'optionals'", col)

    def optional_access(
        self, access: Callable[[Any, Any], Any], operand: _Code, key: _Code, col: int
    ) -> _Code:
        """`operand.?field` or `operand[?key]`: an optional, none when absent."""
        self.optional_syntax(col)
        self.require(operand, ("map", "list", "optional_type"), "the operand of '?'", col)
        get, get_key = operand.fn, key.fn
        code = _Code(
            "optional_type",
            lambda act: access(get(act), get_key(act)),
            recipe=gen.call(access, [operand, key]),
        )
        return self.fold(code, (operand, key))

    def index_or_value(self, target: Index, default: Node, scope: frozenset[str]) -> _Code:
        """`operand[?key].orValue(default)` without the optional in between: the same
        evaluation order (operand, key, the lookup, default) and the same errors."""
        self.optional_syntax(target.col)
        operand = self.node(target.operand, scope)
        key = self.node(target.index, scope)
        self.require(operand, ("map", "list", "optional_type"), "the operand of '?'", target.col)
        other = self.node(default, scope)
        lookup, absent = opt.lookup, opt.ABSENT
        get, get_key, get_other = operand.fn, key.fn, other.fn

        def fn(act: Activation) -> Any:
            found = lookup(get(act), get_key(act))
            fallback = get_other(act)
            return fallback if found is absent else found

        recipe = gen.found_or(lookup, operand, key, other, absent)
        return self.fold(_Code(DYN, fn, recipe=recipe), (operand, key, other))

    def index(self, node: Index, scope: frozenset[str]) -> _Code:
        operand = self.node(node.operand, scope)
        key = self.node(node.index, scope)
        if node.optional:
            return self.optional_access(opt.index, operand, key, node.col)
        self.require(operand, ("map", "list"), "an indexed value", node.col)
        kind = "string" if operand.value_type == "STRING_MAP" else DYN
        get = operand.fn
        if key.is_const and isinstance(key.const, str):
            k = key.const
            missing = rt.CelError(f"no such key: {k!r}")
            const_key = _key_lookup(get, k, missing, rt.index)
            recipe = gen.key_lookup(operand, k, missing, rt.index)
            return self.fold(_Code(kind, const_key, recipe=recipe), (operand, key))
        get_key = key.fn
        code = _Code(
            kind,
            lambda act: rt.index(get(act), get_key(act)),
            recipe=gen.call(rt.index, [operand, key]),
        )
        return self.fold(code, (operand, key))

    def list_literal(self, node: ListLit, scope: frozenset[str]) -> _Code:
        items = [self.node(item, scope) for item in node.items]
        fns = [item.fn for item in items]
        if node.optional:
            self.optional_syntax(node.col)
            marked = [(f, i in node.optional) for i, f in enumerate(fns)]

            def elements(act: Activation) -> list[Any]:
                values = [opt.element(f(act), "a list element") if o else f(act) for f, o in marked]
                return [value for value in values if value is not opt.ABSENT]

            return self.fold(_Code("list", elements), items)
        code = _Code("list", lambda act: [f(act) for f in fns], recipe=gen.list_of(list(items)))
        return self.fold(code, items)

    def map_literal(self, node: MapLit, scope: frozenset[str]) -> _Code:
        entries = [(self.node(k, scope), self.node(v, scope)) for k, v in node.entries]
        fns = [(k.fn, v.fn) for k, v in entries]
        code = _Code("map", lambda act: rt.make_map([(k(act), v(act)) for k, v in fns]))
        if node.optional:
            self.optional_syntax(node.col)
            marked = [(k, v, i in node.optional) for i, (k, v) in enumerate(fns)]

            def make(act: Activation) -> dict[Any, Any]:
                pairs = [
                    (k(act), opt.element(v(act), "a map value") if o else v(act))
                    for k, v, o in marked
                ]
                return rt.make_map([(k, v) for k, v in pairs if v is not opt.ABSENT])

            code = _Code("map", make)
        return self.fold(code, [c for pair in entries for c in pair])

    def unary(self, node: Unary, scope: frozenset[str]) -> _Code:
        operand = self.node(node.operand, scope)
        f = operand.fn
        if node.op == "!":
            self.require(operand, ("bool",), "the operand of '!'", node.col)
            code = _Code("bool", lambda act: rt.logical_not(f(act)), recipe=gen.negation(operand))
            return self.fold(code, (operand,))
        self.require(operand, ("int", "double"), "the operand of '-'", node.col)
        code = _Code(
            operand.kind, lambda act: rt.negate(f(act)), recipe=gen.call(rt.negate, [operand])
        )
        return self.fold(code, (operand,))

    def conditional(self, node: Conditional, scope: frozenset[str]) -> _Code:
        cond = self.node(node.cond, scope)
        then = self.node(node.then, scope)
        otherwise = self.node(node.otherwise, scope)
        self.require(cond, ("bool",), "the condition of '?:'", node.col)
        if cond.const is True:
            return then
        if cond.const is False:
            return otherwise
        c, t, e = cond.fn, then.fn, otherwise.fn

        def fn(act: Activation) -> Any:
            value = c(act)
            if value is True:
                return t(act)
            if value is False:
                return e(act)
            raise rt.no_overload("_?_:_", value)

        kind = then.kind if then.kind == otherwise.kind else DYN
        value_type = then.value_type if then.value_type == otherwise.value_type else None
        return _Code(
            kind, fn, value_type=value_type, recipe=gen.choice(cond, then, otherwise, "_?_:_")
        )

    def binary(self, node: Binary, scope: frozenset[str]) -> _Code:
        op = node.op
        left, right = self.node(node.left, scope), self.node(node.right, scope)
        if op in ("&&", "||"):
            return self.logical(op, left, right, node.col)
        lf, rf = left.fn, right.fn
        code: _Code
        if op in ("==", "!="):
            self.check_comparable(op, left, right, node.col, ordered=False)
            negate = op == "!="
            code = _Code(
                "bool",
                _equality(lf, rf, left, right, negate),
                recipe=gen.equality(left, right, negate),
            )
        elif op in _ORDERING:
            self.check_comparable(op, left, right, node.col, ordered=True)
            recipe = gen.ordering(op, _ORDERING[op], left, right)
            code = _Code("bool", _ordering(op, lf, rf, right), recipe=recipe)
        elif op == "in":
            self.require(right, ("list", "map"), "the right operand of 'in'", node.col)
            recipe = gen.membership(left, right, maybe_map=right.kind in ("map", DYN))
            code = _Code("bool", _membership(lf, rf, right), recipe=recipe)
        else:
            arith = _ARITHMETIC[op]
            code = _Code(
                self.arithmetic_kind(op, left, right, node.col),
                lambda act: arith(lf(act), rf(act)),
                recipe=gen.call(arith, [left, right]),
            )
        return self.fold(code, (left, right))

    def check_comparable(self, op: str, left: _Code, right: _Code, col: int, ordered: bool) -> None:
        if not self.checked or DYN in (left.kind, right.kind) or "null" in (left.kind, right.kind):
            return
        numeric = left.kind in rt.NUMERIC and right.kind in rt.NUMERIC
        if left.kind != right.kind and not numeric:
            raise CompileError(
                f"no matching overload for '{op}' applied to ({left.kind}, {right.kind})", col
            )
        if ordered and left.kind not in _ORDERED_KINDS:
            raise CompileError(f"'{op}' is not defined for {left.kind}", col)

    def arithmetic_kind(self, op: str, left: _Code, right: _Code, col: int) -> str:
        a, b = left.kind, right.kind
        if DYN in (a, b):
            return DYN
        if a == b and a in _ARITHMETIC_KINDS[op]:
            return a
        if (
            op in "+-"
            and {a, b} == {"timestamp", "duration"}
            and not (op == "-" and a == "duration")
        ):
            return "timestamp"
        if op == "-" and a == b == "timestamp":
            return "duration"
        if self.checked:
            raise CompileError(f"no matching overload for '{op}' applied to ({a}, {b})", col)
        return DYN

    def logical(self, op: str, left: _Code, right: _Code, col: int) -> _Code:
        self.require(left, ("bool",), f"the left operand of '{op}'", col)
        self.require(right, ("bool",), f"the right operand of '{op}'", col)
        fn = _and(left.fn, right.fn) if op == "&&" else _or(left.fn, right.fn)
        short = op == "||"
        code = _Code("bool", fn, recipe=gen.logical(left, right, conjunction=not short))
        # Constant folding keeps CEL's logic: `true || x` is true whatever x is.
        if left.const is short or right.const is short:
            return _constant(short, "bool")
        if left.const is (not short):
            return right if right.kind == "bool" else self.fold(code, (left, right))
        if right.const is (not short):
            return left if left.kind == "bool" else self.fold(code, (left, right))
        return self.fold(code, (left, right))

    def call(self, node: Call, scope: frozenset[str]) -> _Code:
        name = node.function
        if name == "has" and node.target is None:
            return self.has(node, scope)
        if name == BIND and node.target is None:
            return self.bind(node.args, scope, node.col)
        if name in ("optMap", "optFlatMap") and name in self.macros and node.target is not None:
            return self.optional_map(node, scope)
        if (
            name in _TWO_VAR_MACROS
            and name in self.macros
            and node.target is not None
            and len(node.args) in (3, 4)
            and isinstance(node.args[0], Ident)
            and isinstance(node.args[1], Ident)
        ):
            return self.comprehension2(node, scope)
        if (
            name in _MACROS
            and node.target is not None
            and node.args
            and isinstance(node.args[0], Ident)
        ):
            return self.comprehension(node, scope)
        if (
            name == "orValue"
            and name in self.functions
            and isinstance(node.target, Index)
            and node.target.optional
            and len(node.args) == 1
        ):
            return self.index_or_value(node.target, node.args[0], scope)
        qualified = self.qualified_function(node, scope)
        if qualified == "cel.bind" and qualified in self.macros:
            return self.bind(node.args, scope, node.col)
        if qualified is not None:
            name, node = qualified, Call(qualified, None, node.args, node.col)
        target = self.node(node.target, scope) if node.target is not None else None
        args = [self.node(arg, scope) for arg in node.args]
        operands = ([target] if target is not None else []) + args
        impl = self.functions.get(name)
        if impl is None:
            return self.unknown_function(name, node.col)
        kind, value_type = self.results.get(name, (DYN, None))
        if name == "conditional" and len(args) == 3:
            return self.conditional_function(args, node.col)
        fn = _apply(impl, [op.fn for op in operands])
        recipe: gen.Recipe
        if name in ("startsWith", "endsWith", "contains"):
            recipe = gen.string_test(name, impl, list(operands))
        elif name == "size":
            recipe = gen.size(impl, list(operands))
        else:
            recipe = gen.call(impl, list(operands))
        if name == "format" and impl is strings.format_string and target is not None:
            recipe = self.format_recipe(target, node, scope) or recipe
        if name == "join" and impl is strings.join:
            recipe = self.join_recipe(node, args, scope) or recipe
        return self.fold(_Code(kind, fn, value_type=value_type, recipe=recipe), operands)

    def join_recipe(
        self, node: Call, args: list[_Code], scope: frozenset[str]
    ) -> gen.Recipe | None:
        """`[a, b].join(sep)` on a list literal with a constant separator: `str.join` on the
        items when they are exact strs whose lengths allow it, else the library function."""
        literal = node.target
        if not isinstance(literal, ListLit) or literal.optional or not literal.items:
            return None
        if args and not (len(args) == 1 and isinstance(args[0].const, str)):
            return None
        separator = args[0].const if args else ""
        items = [self.node(item, scope) for item in literal.items]
        room = rt.MAX_VALUE_SIZE - len(separator) * (len(items) - 1)
        return gen.python_join(strings.join, separator, bool(args), items, room)

    def format_recipe(
        self, template: _Code, node: Call, scope: frozenset[str]
    ) -> gen.Recipe | None:
        """`"...%s...%d".format([a, b])` with a constant template of %s and %d clauses only,
        one per item of a list literal: Python's `%` on the items when their types allow it
        (exact str for %s, exact int for either), else the library function."""
        if not (isinstance(template.const, str) and len(node.args) == 1):
            return None
        literal = node.args[0]
        if not isinstance(literal, ListLit) or literal.optional:
            return None
        plan = strings.python_format(template.const)
        if plan is None or len(plan[1]) != len(literal.items):
            return None
        python, verbs = plan
        items = [self.node(item, scope) for item in literal.items]
        return gen.python_format(
            strings.format_string, template.const, python, verbs, items, rt.MAX_VALUE_SIZE
        )

    def qualified_function(self, node: Call, scope: frozenset[str]) -> str | None:
        """`math.greatest` for `math.greatest(...)` when a library provides that name (a
        qualified name wins over a receiver, as in cel-go), else None."""
        if node.target is None:
            return None
        path = self.path_of(node.target, scope)
        if path is None or path[1] or path[0][0] in scope:
            return None
        qualified = ".".join(path[0]) + "." + node.function
        if qualified in self.functions or qualified in self.macros:
            return qualified
        # A function of a library left out: resolved, so the error can name the library.
        return qualified if cel_libraries.library_of(qualified) is not None else None

    def unknown_function(self, name: str, col: int) -> _Code:
        """A call of a function no enabled library provides: a CompileError when checking,
        else an evaluation error (as cel-spec's unchecked evaluation wants)."""
        owner = cel_libraries.library_of(name)
        if owner is not None:
            message = f"function '{name}' is in the CEL library '{owner}', which is not enabled"
        else:
            message = (
                f"unknown function '{name}'" if self.checked else f"unbound function: '{name}'"
            )
        if self.checked:
            raise CompileError(message, col)
        return _Code(DYN, _raiser(rt.CelError(message)))

    def conditional_function(self, args: list[_Code], col: int) -> _Code:
        cond, then, otherwise = args
        self.require(cond, ("bool",), "argument 1 of conditional()", col)
        c, t, e = cond.fn, then.fn, otherwise.fn

        def fn(act: Activation) -> Any:
            value = c(act)
            if value is True:
                return t(act)
            if value is False:
                return e(act)
            raise rt.no_overload("conditional", value)

        kind = then.kind if then.kind == otherwise.kind else DYN
        recipe = gen.choice(cond, then, otherwise, "conditional")
        return self.fold(_Code(kind, fn, value_type=then.value_type, recipe=recipe), args)

    def has(self, node: Call, scope: frozenset[str]) -> _Code:
        if len(node.args) != 1 or not isinstance(node.args[0], Select):
            raise CompileError("invalid argument to has() macro", node.col)
        arg = node.args[0]
        path = self.path_of(arg, scope)
        if path is not None and not path[1] and path[0][0] not in scope:
            vocabulary = self.vocabulary or {}
            for prefix in self.prefixes:
                dotted = prefix + ".".join(path[0])
                if dotted in vocabulary:
                    # has(request.headers): is the attribute present?
                    return _present(dotted)
        operand = self.node(arg.operand, scope)
        self.require(operand, ("map",), "the operand of has()", node.col)
        get, field = operand.fn, arg.field
        code = _Code(
            "bool",
            lambda act: rt.has_field(get(act), field),
            recipe=gen.call(rt.has_field, [operand, _constant(field)]),
        )
        return self.fold(code, (operand,))

    def comprehension(self, node: Call, scope: frozenset[str]) -> _Code:
        name = node.function
        variable = node.args[0]
        assert isinstance(variable, Ident) and node.target is not None
        arity = {"all": 2, "exists": 2, "exists_one": 2, "filter": 2, "map": (2, 3)}[name]
        if len(node.args) not in (arity if isinstance(arity, tuple) else (arity,)):
            raise CompileError(f"wrong number of arguments to the {name}() macro", node.col)
        target = self.node(node.target, scope)
        self.require(target, ("list", "map"), f"the receiver of {name}()", node.col)
        inner = scope | {variable.name}
        steps = [self.node(arg, inner).fn for arg in node.args[1:]]
        var = variable.name
        get_range = target.fn
        kinds = {
            "all": "bool",
            "exists": "bool",
            "exists_one": "bool",
            "filter": "list",
            "map": "list",
        }
        loop = _LOOPS[name] if not (name == "map" and len(steps) == 2) else _map_filtered

        def fn(act: Activation) -> Any:
            items = _range(get_range(act), name)
            return loop(items, _loop_scope(act, len(items)), var, steps)

        return _Code(kinds[name], fn)

    def comprehension2(self, node: Call, scope: frozenset[str]) -> _Code:
        """`r.all(k, v, p)`, `exists`, `existsOne`, `transformList(k, v, [filter,] e)` and
        `transformMap(...)`: k is a list's index or a map's key, v the element or value."""
        name = node.function
        first, second = node.args[0], node.args[1]
        assert isinstance(first, Ident) and isinstance(second, Ident) and node.target
        if first.name == second.name:
            raise CompileError(f"{name}(): the two variables must differ", node.col)
        filtered = len(node.args) == 4
        if filtered and _TWO_VAR_MACROS[name] == "bool":
            raise CompileError(f"wrong number of arguments to the {name}() macro", node.col)
        target = self.node(node.target, scope)
        self.require(target, ("list", "map"), f"the receiver of {name}()", node.col)
        inner = scope | {first.name, second.name}
        steps = [
            _unpacking(self.node(arg, inner).fn, first.name, second.name) for arg in node.args[2:]
        ]
        loop = _TWO_VAR_LOOPS[name, filtered]
        get_range = target.fn

        def fn(act: Activation) -> Any:
            pairs = _pairs(get_range(act), name)
            return loop(pairs, _loop_scope(act, len(pairs)), _PAIR, steps)

        return _Code(_TWO_VAR_MACROS[name], fn)

    def optional_map(self, node: Call, scope: frozenset[str]) -> _Code:
        """`o.optMap(x, e)`: none, or optional.of(e) with `x` the value; `o.optFlatMap(x, e)`:
        none, or `e` (an optional) with `x` the value."""
        name = node.function
        if len(node.args) != 2 or not isinstance(node.args[0], Ident):
            raise CompileError(f"{name}() takes a name and an expression", node.col)
        assert node.target is not None
        local = node.args[0].name
        target = self.node(node.target, scope)
        body = self.node(node.args[1], scope | {local})
        get, get_body, flat = target.fn, body.fn, name == "optFlatMap"

        def fn(act: Activation) -> Any:
            found = get(act)
            if not isinstance(found, opt.Optional):
                raise rt.no_overload(name, found)
            if not found.has_value:
                return opt.NONE
            result = get_body(_bound(act, local, found.value))
            if not flat:
                return opt.Optional(result)
            if not isinstance(result, opt.Optional):
                raise rt.no_overload(name, result)
            return result

        return _Code("optional_type", fn)

    def bind(self, args: tuple[Node, ...], scope: frozenset[str], col: int) -> _Code:
        """`cel.bind(name, value, body)`: `body` with the local `name` bound to `value`."""
        if len(args) != 3 or not isinstance(args[0], Ident) or args[0].absolute:
            raise CompileError("cel.bind() takes a name, a value and an expression", col)
        local = args[0].name
        init = self.node(args[1], scope)
        body = self.node(args[2], scope | {local})
        get_init, get_body = init.fn, body.fn

        def fn(act: Activation) -> Any:
            return get_body(_bound(act, local, get_init(act)))

        return _Code(body.kind, fn, recipe=gen.bind(local, init, body, _bound))


# -- closures for operators ------------------------------------------------------------------------


def _key_lookup(get: Fn, key: str, missing: rt.CelError, fallback: Callable[[Any, str], Any]) -> Fn:
    """`container[key]` by the container's `get` (a TrackingBag records just that key); a value
    without `get` (a list, a message) goes to `fallback`, which raises CEL's error."""

    def fn(act: Activation) -> Any:
        container = get(act)
        try:
            value = container.get(key, _MISSING)
        except AttributeError:
            return fallback(container, key)
        if value is _MISSING:
            raise missing
        return value

    return fn


def _start_col(node: Node) -> int:
    while isinstance(node, Select | Index):
        node = node.operand
    return node.col


def _apply(impl: Callable[..., Any], fns: list[Fn]) -> Fn:
    # One closure per arity: a call without building an argument list is cheaper.
    if len(fns) == 1:
        (a,) = fns
        return lambda act: impl(a(act))
    if len(fns) == 2:
        a, b = fns
        return lambda act: impl(a(act), b(act))
    return lambda act: impl(*[f(act) for f in fns])


def _ordering(op: str, lf: Fn, rf: Fn, right: _Code) -> Fn:
    order = _ORDERING[op]
    const = right.const
    if type(const) in (int, float, str):
        # `x > 1024`: when x has the literal's exact kind, Python's comparison is CEL's.
        exact, py_compare = type(const), _PY_ORDERING[op]

        def fast(act: Activation) -> bool:
            value = lf(act)
            if type(value) is exact:
                return py_compare(value, const)  # type: ignore[no-any-return]
            return order(value, const)

        return fast
    return lambda act: order(lf(act), rf(act))


def _membership(lf: Fn, rf: Fn, right: _Code) -> Fn:
    const = right.const
    if isinstance(const, list) and const and all(type(item) is str for item in const):
        # `method in ["GET", "HEAD"]`: a set lookup when the element is a string.
        members = frozenset(const)

        def fast(act: Activation) -> bool:
            value = lf(act)
            if type(value) is str:
                return value in members
            return rt.contains(value, const)

        return fast
    return lambda act: rt.contains(lf(act), rf(act))


def _equality(lf: Fn, rf: Fn, left: _Code, right: _Code, negate: bool) -> Fn:
    # `x == "literal"`: Python's == on a str (or bytes) already is CEL's (other kinds: false).
    const = right.const if right.is_const else left.const if left.is_const else NOT_CONSTANT
    if isinstance(const, str | bytes) and not isinstance(const, bool):
        f = lf if right.is_const else rf
        if negate:
            return lambda act: f(act) != const
        return lambda act: f(act) == const
    eq = rt.equal
    if negate:
        return lambda act: not eq(lf(act), rf(act))
    return lambda act: eq(lf(act), rf(act))


def _and(lf: Fn, rf: Fn) -> Fn:
    def fn(act: Activation) -> bool:
        try:
            left = lf(act)
        except EvaluationError:
            if rf(act) is False:  # error && false == false
                return False
            raise
        if left is False:
            return False
        right = rf(act)
        if left is True and (right is True or right is False):
            return right
        if right is False:
            return False
        raise rt.no_overload("_&&_", left, right)

    return fn


def _or(lf: Fn, rf: Fn) -> Fn:
    def fn(act: Activation) -> bool:
        try:
            left = lf(act)
        except EvaluationError:
            if rf(act) is True:  # error || true == true
                return True
            raise
        if left is True:
            return True
        right = rf(act)
        if left is False and (right is True or right is False):
            return right
        if right is True:
            return True
        raise rt.no_overload("_||_", left, right)

    return fn


def _bound(act: Activation, name: str, value: Any) -> _Scope:
    """The scope of `act` with the local `name` bound to `value`."""
    if isinstance(act, _Scope):
        return _Scope(act.root, {**act.vars, name: value}, act.budget)
    return _Scope(act, {name: value}, [MAX_COMPREHENSION_ITERATIONS])


def _loop_scope(act: Activation, iterations: int) -> _Scope:
    """A fresh scope for a comprehension's variables, `iterations` charged to the budget the
    whole expression shares."""
    if isinstance(act, _Scope):
        scope = _Scope(act.root, dict(act.vars), act.budget)
    else:
        scope = _Scope(act, {}, [MAX_COMPREHENSION_ITERATIONS])
    scope.budget[0] -= iterations
    if scope.budget[0] < 0:
        raise rt.CelError(
            f"comprehensions would iterate more than {MAX_COMPREHENSION_ITERATIONS} times"
        )
    return scope


def _pairs(value: Any, macro: str) -> list[tuple[Any, Any]]:
    k = rt.kind(value)
    if k == "list":
        return list(enumerate(value))
    if k == "map":
        return list(value.items())
    raise rt.no_overload(macro, value)


def _unpacking(step: Fn, first: str, second: str) -> Fn:
    """`step` with the loop's current (key, value) pair assigned to `first` and `second`."""

    def fn(scope: _Scope) -> Any:
        scope.vars[first], scope.vars[second] = scope.vars[_PAIR]
        return step(scope)

    return fn


def _transform_map(items: list[Any], scope: _Scope, var: str, steps: list[Fn]) -> dict[Any, Any]:
    *predicate, transform = steps
    out = {}
    for item in items:
        scope.vars[var] = item
        if predicate:
            result = predicate[0](scope)
            if result is False:
                continue
            if result is not True:
                raise rt.no_overload("transformMap", result)
        out[item[0]] = transform(scope)
    return out


def _range(value: Any, macro: str) -> list[Any]:
    k = rt.kind(value)
    if k not in ("list", "map"):
        raise rt.no_overload(macro, value)
    items = list(value)
    return items


def _quantifier(macro: str, decisive: bool) -> Callable[[list[Any], _Scope, str, list[Fn]], bool]:
    """``all`` (decisive False) or ``exists`` (decisive True), with CEL's error absorption: a
    decisive result wins over errors from other elements; otherwise the first error is raised."""

    def loop(items: list[Any], scope: _Scope, var: str, steps: list[Fn]) -> bool:
        (predicate,) = steps
        settled: bool = decisive
        error: EvaluationError | None = None
        for item in items:
            scope.vars[var] = item
            try:
                result = predicate(scope)
            except EvaluationError as err:
                error = error or err
                continue
            if result is settled:
                return decisive is True
            if result is not (not settled):
                error = error or rt.no_overload(macro, result)
        if error is not None:
            raise error
        return not decisive

    return loop


def _loop_exists_one(items: list[Any], scope: _Scope, var: str, steps: list[Fn]) -> bool:
    (predicate,) = steps
    count = 0
    for item in items:
        scope.vars[var] = item
        result = predicate(scope)
        if result is True:
            count += 1
        elif result is not False:
            raise rt.no_overload("exists_one", result)
    return count == 1


def _loop_filter(items: list[Any], scope: _Scope, var: str, steps: list[Fn]) -> list[Any]:
    (predicate,) = steps
    kept = []
    for item in items:
        scope.vars[var] = item
        result = predicate(scope)
        if result is True:
            kept.append(item)
        elif result is not False:
            raise rt.no_overload("filter", result)
    return kept


def _loop_map(items: list[Any], scope: _Scope, var: str, steps: list[Fn]) -> list[Any]:
    (transform,) = steps
    out = []
    for item in items:
        scope.vars[var] = item
        out.append(transform(scope))
    return out


def _map_filtered(items: list[Any], scope: _Scope, var: str, steps: list[Fn]) -> list[Any]:
    predicate, transform = steps
    out = []
    for item in items:
        scope.vars[var] = item
        result = predicate(scope)
        if result is True:
            out.append(transform(scope))
        elif result is not False:
            raise rt.no_overload("map", result)
    return out


_LOOPS: dict[str, Callable[[list[Any], _Scope, str, list[Fn]], Any]] = {
    "all": _quantifier("all", decisive=False),
    "exists": _quantifier("exists", decisive=True),
    "exists_one": _loop_exists_one,
    "filter": _loop_filter,
    "map": _loop_map,
}
# Loops of two-variable comprehensions, by (macro, with a filter).
_TWO_VAR_LOOPS: dict[tuple[str, bool], Callable[[list[Any], _Scope, str, list[Fn]], Any]] = {
    ("all", False): _LOOPS["all"],
    ("exists", False): _LOOPS["exists"],
    ("existsOne", False): _LOOPS["exists_one"],
    ("transformList", False): _loop_map,
    ("transformList", True): _map_filtered,
    ("transformMap", False): _transform_map,
    ("transformMap", True): _transform_map,
}
