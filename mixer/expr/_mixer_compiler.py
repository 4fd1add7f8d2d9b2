"""Type-check a CEXL tree against a vocabulary and turn it into nested Python closures, and from
them one Python function per expression (`_mixer_codegen`: each node's recipes generate what its
closures do).

Semantics follow Istio's compiler (`mixer/pkg/lang/compiler/compiler.go`, `ast/func.go`):
operands of `==`, `|`, `+`, `conditional` must have one type; `&&`/`||` take BOOL; `m[k]` takes a
STRING_MAP and a STRING. `a | b` yields `a` unless `a` is an absent attribute or map key (only
attributes, map lookups and nested `|` can be absent; a function's failure is an error).

Each node becomes a `_Code`: its type, `fn(activation)` (absence is an EvaluationError) and, for
nodes that can be absent, `try_fn(activation)` that returns `_ABSENT` instead; plus the recipes
generating each of them.
"""

from __future__ import annotations

import datetime
import operator
from collections.abc import Callable, Mapping
from typing import Any

from mixer.attributes.bag import StringMap
from mixer.expr import _externs as ext
from mixer.expr import _mixer_codegen as gen
from mixer.expr._ast import (
    NOT_CONSTANT,
    Binary,
    Call,
    Ident,
    Index,
    Literal,
    Node,
    Select,
    attribute_names,
    check_depth,
    dotted_name,
)
from mixer.expr._errors import UNWRAPPED_TYPES, CompileError, EvaluationError, guarded
from mixer.expr._mixer_parser import parse

DYN = "DYNAMIC"
Activation = Mapping[str, Any]
Fn = Callable[[Activation], Any]

# The generated code recognises this sentinel where it falls back to calling a try_fn.
_ABSENT = gen.ABSENT
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ORDERED = frozenset({"STRING", "INT64", "DOUBLE", "TIMESTAMP", "DURATION", DYN})
_ADDABLE = frozenset({"STRING", "INT64", "DOUBLE", DYN})
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class _Code:
    """One compiled node: its type, closures and the recipes generating them (`_mixer_codegen`)."""

    __slots__ = ("const", "fn", "recipe", "try_fn", "try_recipe", "type")

    def __init__(
        self,
        type_: str,
        fn: Fn,
        try_fn: Fn | None = None,
        const: Any = NOT_CONSTANT,
        recipe: gen.Recipe | None = None,
        try_recipe: gen.Recipe | None = None,
    ) -> None:
        self.type = type_
        self.fn = fn
        self.try_fn = try_fn
        self.const = const
        self.recipe = recipe
        self.try_recipe = try_recipe

    @property
    def is_const(self) -> bool:
        return self.const is not NOT_CONSTANT


def _constant(type_: str, value: Any) -> _Code:
    return _Code(type_, lambda act: value, None, value)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# What an absent attribute reads as in Istio's CEL-compatibility mode, by type.
_ZERO: dict[str, Any] = {
    "STRING": "",
    "INT64": 0,
    "DOUBLE": 0.0,
    "BOOL": False,
    "TIMESTAMP": _EPOCH,
    "DURATION": datetime.timedelta(0),
    "IP_ADDRESS": b"",
    "EMAIL_ADDRESS": "",
    "URI": "",
    "DNS_NAME": "",
    "STRING_MAP": StringMap(),
}


def _zero_default(name: str, type_: str) -> _Code:
    """An attribute that reads as its type's zero value when absent (never absent itself)."""
    zero = _ZERO.get(type_)
    missing = f"lookup failed: '{name}'"

    def fn(act: Activation) -> Any:
        value = act.get(name)
        if value is None:
            if zero is None:
                raise EvaluationError(missing)
            return zero
        return value

    return _Code(type_, fn)


def _strict_lookup(get_map: Fn, get_key: Fn) -> _Code:
    """`map[key]` where a key the map does not hold is an error (CEL's "no such key")."""

    def fn(act: Activation) -> Any:
        m = get_map(act)
        k = get_key(act)
        value = m.get(k)
        if value is None:
            raise EvaluationError(f"no such key: '{k}'")
        return value

    return _Code("STRING", fn)


def _pick(type_: str, left: Fn, right: Fn) -> _Code:
    """``left | right`` in the compat dialect: the left value unless it fails to evaluate (a
    missing map key); absent attributes already read as zero values there."""

    def fn(act: Activation) -> Any:
        try:
            return left(act)
        except EvaluationError:
            return right(act)

    return _Code(type_, fn)


def _failing(type_: str, message: str) -> _Code:
    """A node that always fails to evaluate with `message` (not a constant: never folded)."""

    def fn(act: Activation) -> Any:
        raise EvaluationError(message)

    return _Code(type_, fn)


def _size(value: object) -> int:
    # Go's len() of a string counts UTF-8 bytes; Mixer's size() is exactly that.
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, Mapping):
        return len(value)
    raise EvaluationError(f"size() needs a STRING, got {type(value).__name__}")


def _reverse(value: str) -> str:
    return value[::-1]


def _to_lower(value: str) -> str:
    return value.lower()


# name -> (argument types, return type, implementation); DYN arguments accept anything.
_FUNCTIONS: dict[str, tuple[tuple[str, ...], str, Callable[..., Any]]] = {
    "match": (("STRING", "STRING"), "BOOL", ext.glob_match),
    "ip": (("STRING",), "IP_ADDRESS", ext.parse_ip),
    "timestamp": (("STRING",), "TIMESTAMP", ext.parse_timestamp),
    "email": (("STRING",), "EMAIL_ADDRESS", ext.email),
    "dnsName": (("STRING",), "DNS_NAME", ext.dns_name),
    "uri": (("STRING",), "URI", ext.uri),
    "emptyStringMap": ((), "STRING_MAP", ext.empty_string_map),
    "toLower": (("STRING",), "STRING", _to_lower),
    "size": (("STRING",), "INT64", _size),
    "reverse": (("STRING",), "STRING", _reverse),
}
# method name -> (receiver type, argument types, implementation(receiver, *args))
_METHODS: dict[str, tuple[str, tuple[str, ...], Callable[..., bool]]] = {
    "matches": ("STRING", ("STRING",), ext.regex_matches),
    "startsWith": ("STRING", ("STRING",), str.startswith),
    "endsWith": ("STRING", ("STRING",), str.endswith),
}
_PLAIN_EQUALITY = frozenset(
    {"STRING", "INT64", "DOUBLE", "BOOL", "DURATION", "TIMESTAMP", "STRING_MAP"}
)
_EQUALITY: dict[str, Callable[[Any, Any], bool]] = {
    "IP_ADDRESS": ext.ip_equal,
    "DNS_NAME": ext.dns_equal,
    "EMAIL_ADDRESS": ext.email_equal,
    "URI": ext.uri_equal,
}


def _dynamic_equal(a: Any, b: Any) -> bool:
    """Equality for untyped operands: IP bytes compare as addresses; bools never equal numbers."""
    if isinstance(a, bytes) and isinstance(b, bytes):
        return ext.ip_equal(a, b)
    if (type(a) is bool) != (type(b) is bool):
        return False
    return bool(a == b)


def _require_bool(value: Any, what: str) -> bool:
    if value is True or value is False:
        return value
    raise EvaluationError(f"{what} needs BOOL operands, got {type(value).__name__}")


def _start_col(node: Node) -> int:
    while isinstance(node, Select | Index):
        node = node.operand
    return node.col


class MixerCompiler:
    """Compiles one CEXL expression; `vocabulary=None` means untyped (DYNAMIC) attributes.

    With `compat`, the CEXL text gets the semantics of Istio's CEL-compatibility mode: an absent
    attribute of a known type reads as its type's zero value (so ``a | b`` is ``a``), a key a
    string map does not hold is an error, and ``s.matches(re)`` takes the string as its receiver.
    """

    def __init__(self, vocabulary: Mapping[str, str] | None, *, compat: bool = False) -> None:
        self.vocabulary = vocabulary
        self.compat = compat
        self.checked = vocabulary is not None
        # After `compile`: every attribute name the expression might read (`attribute_names`).
        self.names: frozenset[str] = frozenset()

    def compile(self, text: str) -> tuple[Fn, str, Any]:
        """(evaluate, result type, constant value or NOT_CONSTANT); `evaluate` raises only
        EvaluationError and hands a string map out unwrapped (`_errors.guarded`)."""
        tree = check_depth(parse(text))
        self.names = attribute_names(tree)
        code = self.node(tree)
        unwraps = code.type in UNWRAPPED_TYPES
        if code.is_const:
            return guarded(code.fn, text, unwraps), code.type, code.const
        return gen.function(code, text, unwraps), code.type, code.const

    # -- type helpers -------------------------------------------------------------------------

    def unify(self, a: _Code, b: _Code, what: str, col: int) -> str:
        if a.type == b.type:
            return a.type
        if self.checked and DYN not in (a.type, b.type):
            raise CompileError(f"type mismatch: {what} between {a.type} and {b.type}", col)
        return DYN

    def expect(self, code: _Code, expected: str, what: str, col: int) -> None:
        if self.checked and code.type not in (expected, DYN):
            raise CompileError(f"{what} must be {expected}, got {code.type}", col)

    def fold(self, code: _Code, col: int) -> _Code:
        """Evaluate a node whose operands are all constants once, now. One that fails (a
        conversion such as ``ip("10.1.12")``) fails at evaluation instead, as in Istio: a config
        that Istio loads loads here, and the expression's error surfaces where Istio's does."""
        try:
            value = code.fn({})
        except (EvaluationError, TypeError, ValueError, AttributeError, OverflowError) as err:
            return _failing(code.type, str(err))
        return _constant(code.type, value)

    # -- nodes --------------------------------------------------------------------------------

    def node(self, node: Node) -> _Code:
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Ident | Select):
            return self.path(node)
        if isinstance(node, Index):
            return self.index(self.node(node.operand), self.node(node.index), node.col)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Binary):
            return self.binary(node)
        raise CompileError("unsupported expression", getattr(node, "col", None))

    def literal(self, node: Literal) -> _Code:
        value = node.value
        if node.kind == "int":
            assert isinstance(value, int)
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise CompileError("integer literal out of INT64 range", node.col)
            return _constant("INT64", value)
        if node.kind == "double":
            return _constant("DOUBLE", value)
        if node.kind == "bool":
            return _constant("BOOL", value)
        assert isinstance(value, str)
        duration = ext.parse_go_duration(value)
        if duration is not None:
            return _constant("DURATION", duration)
        return _constant("STRING", value)

    def path(self, node: Ident | Select) -> _Code:
        name = dotted_name(node)
        col = _start_col(node)
        if name is None:
            raise CompileError("field selection is only allowed on attribute names", node.col)
        if self.vocabulary is None:
            return self.attribute(name, DYN)
        if name in self.vocabulary:
            if self.compat:
                return _zero_default(name, self.vocabulary[name])
            return self.attribute(name, self.vocabulary[name])
        # `destination.labels.app` reads key "app" of the STRING_MAP `destination.labels`.
        prefix, _, key = name.rpartition(".")
        if prefix and self.vocabulary.get(prefix) == "STRING_MAP":
            return self.index(self.attribute(prefix, "STRING_MAP"), _constant("STRING", key), col)
        raise CompileError(f"unknown attribute '{name}'", col)

    @staticmethod
    def attribute(name: str, type_: str) -> _Code:
        missing = f"lookup failed: '{name}'"

        def fn(act: Activation) -> Any:
            value = act.get(name)
            if value is None:
                raise EvaluationError(missing)
            return value

        def try_fn(act: Activation) -> Any:
            value = act.get(name)
            return _ABSENT if value is None else value

        recipe, try_recipe = gen.attribute(name, missing)
        return _Code(type_, fn, try_fn, recipe=recipe, try_recipe=try_recipe)

    def index(self, target: _Code, key: _Code, col: int) -> _Code:
        self.expect(target, "STRING_MAP", "an indexed value", col)
        self.expect(key, "STRING", "a map key", col)
        get_map, try_map = target.fn, target.try_fn or target.fn
        if self.compat:
            return _strict_lookup(get_map, key.fn)
        # As in Istio, a key the map does not hold reads as "" (only an absent map is a lookup
        # error); on the left of `|` it is absent, so that the default applies.
        if key.is_const:
            k = key.const

            def fn(act: Activation) -> Any:
                return get_map(act).get(k, "")

            def try_fn(act: Activation) -> Any:
                m = try_map(act)
                if m is _ABSENT:
                    return _ABSENT
                value = m.get(k)
                return _ABSENT if value is None else value

            recipe, try_recipe = gen.key_lookup(target, k)
            return _Code("STRING", fn, try_fn, recipe=recipe, try_recipe=try_recipe)

        get_key, try_key = key.fn, key.try_fn or key.fn

        def dyn_fn(act: Activation) -> Any:
            m = get_map(act)
            k = get_key(act)
            return m.get(k, "")

        def dyn_try_fn(act: Activation) -> Any:
            m = try_map(act)
            if m is _ABSENT:
                return _ABSENT
            k = try_key(act)
            if k is _ABSENT:
                return _ABSENT
            value = m.get(k)
            return _ABSENT if value is None else value

        recipe, try_recipe = gen.dynamic_lookup(target, key)
        return _Code("STRING", dyn_fn, dyn_try_fn, recipe=recipe, try_recipe=try_recipe)

    def call(self, node: Call) -> _Code:
        if node.target is not None:
            return self.method(node)
        name = node.function
        if name in ("conditional", "conditionalString"):
            return self.conditional(node)
        if name not in _FUNCTIONS:
            if name in _METHODS:
                raise CompileError(f"'{name}' is a method: write target.{name}(...)", node.col)
            raise CompileError(f"unknown function '{name}'", node.col)
        arg_types, result_type, impl = _FUNCTIONS[name]
        args = self.arguments(node, arg_types, name)
        code = self.apply(result_type, impl, args, node.col)
        if name == "match" and not code.is_const and type(args[1].const) is str:
            # The usual rule shape, a literal pattern: one string test instead of glob_match.
            code.recipe = gen.glob(args[0], args[1].const)
        return code

    def method(self, node: Call) -> _Code:
        name = node.function
        if name not in _METHODS:
            raise CompileError(f"unknown method '{name}'", node.col)
        receiver_type, arg_types, impl = _METHODS[name]
        assert node.target is not None
        target = self.node(node.target)
        self.expect(target, receiver_type, f"the receiver of {name}()", node.col)
        args = self.arguments(node, arg_types, name)
        if name == "matches" and self.compat:
            # CEL's order: the receiver is the string, the argument the pattern.
            return self.apply("BOOL", impl, [args[0], target], node.col)
        if name == "matches" and target.is_const and not all(a.is_const for a in args):
            # Compile the receiver regex once; a bad pattern is a config error, not a runtime one.
            try:
                regex = ext.compile_regex(target.const)
            except EvaluationError as err:
                raise CompileError(str(err), node.target.col) from None
            (arg,) = args
            get = arg.fn
            search = ext.searcher(regex)
            return _Code(
                "BOOL",
                lambda act: search(get(act)),
                recipe=gen.regex_search(search, arg),
            )
        return self.apply("BOOL", impl, [target, *args], node.col)

    def arguments(self, node: Call, arg_types: tuple[str, ...], name: str) -> list[_Code]:
        if len(node.args) != len(arg_types):
            raise CompileError(
                f"{name}() takes {len(arg_types)} argument(s), got {len(node.args)}", node.col
            )
        args = [self.node(arg) for arg in node.args]
        for i, (arg, expected) in enumerate(zip(args, arg_types, strict=True)):
            self.expect(arg, expected, f"argument {i + 1} of {name}()", node.args[i].col)
        return args

    def apply(
        self, result_type: str, impl: Callable[..., Any], args: list[_Code], col: int
    ) -> _Code:
        code: _Code
        if not args:
            code = _Code(result_type, lambda act: impl())
        elif len(args) == 1:
            a = args[0].fn
            code = _Code(result_type, lambda act: impl(a(act)))
        elif len(args) == 2:
            a, b = args[0].fn, args[1].fn
            code = _Code(result_type, lambda act: impl(a(act), b(act)))
        else:
            fns = [arg.fn for arg in args]
            code = _Code(result_type, lambda act: impl(*[f(act) for f in fns]))
        if all(arg.is_const for arg in args):
            return self.fold(code, col)
        code.recipe = gen.call(impl, args)
        return code

    def conditional(self, node: Call) -> _Code:
        if len(node.args) != 3:
            raise CompileError(
                f"{node.function}() takes 3 arguments, got {len(node.args)}", node.col
            )
        cond, then, otherwise = (self.node(arg) for arg in node.args)
        self.expect(cond, "BOOL", f"argument 1 of {node.function}()", node.args[0].col)
        if node.function == "conditionalString":
            self.expect(then, "STRING", "argument 2 of conditionalString()", node.args[1].col)
            self.expect(otherwise, "STRING", "argument 3 of conditionalString()", node.args[2].col)
        result_type = self.unify(then, otherwise, f"{node.function}() branches", node.col)
        if cond.is_const:
            return then if _require_bool(cond.const, node.function) else otherwise
        c, t, f = cond.fn, then.fn, otherwise.fn
        what = node.function
        if cond.type == "BOOL":
            recipe = gen.choice(cond, then, otherwise, None, what)
            return _Code(result_type, lambda act: t(act) if c(act) else f(act), recipe=recipe)
        recipe = gen.choice(cond, then, otherwise, _require_bool, what)
        return _Code(
            result_type,
            lambda act: t(act) if _require_bool(c(act), what) else f(act),
            recipe=recipe,
        )

    def binary(self, node: Binary) -> _Code:
        op = node.op
        left, right = self.node(node.left), self.node(node.right)
        if op == "|":
            return self.default(left, right, node.col)
        if op in ("&&", "||"):
            return self.logical(op, left, right, node.col)
        if op in ("==", "!="):
            return self.equality(op, left, right, node.col)
        type_ = self.unify(left, right, f"'{op}'", node.col)
        allowed = _ORDERED if op in _COMPARISONS else _ADDABLE
        if self.checked and type_ not in allowed:
            raise CompileError(f"'{op}' is not defined for {type_}", node.col)
        lf, rf = left.fn, right.fn
        recipe = gen.binary(op, left, right)
        if op == "+":
            code = _Code(type_, lambda act: lf(act) + rf(act), recipe=recipe)
        else:
            compare = _COMPARISONS[op]
            code = _Code("BOOL", lambda act: compare(lf(act), rf(act)), recipe=recipe)
        if left.is_const and right.is_const:
            return self.fold(code, node.col)
        return code

    def default(self, left: _Code, right: _Code, col: int) -> _Code:
        type_ = self.unify(left, right, "'|'", col)
        if self.compat:
            return _pick(type_, left.fn, right.fn)
        if left.try_fn is None:
            # The left side is never absent (a constant or a function), so the default is moot.
            return _Code(type_, left.fn, None, left.const, left.recipe)
        try_left, rf = left.try_fn, right.fn
        try_right = right.try_fn or right.fn

        def fn(act: Activation) -> Any:
            value = try_left(act)
            return rf(act) if value is _ABSENT else value

        def try_fn(act: Activation) -> Any:
            value = try_left(act)
            return try_right(act) if value is _ABSENT else value

        recipe, try_recipe = gen.default(left, right)
        return _Code(type_, fn, try_fn, recipe=recipe, try_recipe=try_recipe)

    def logical(self, op: str, left: _Code, right: _Code, col: int) -> _Code:
        self.expect(left, "BOOL", f"the left operand of '{op}'", col)
        self.expect(right, "BOOL", f"the right operand of '{op}'", col)
        is_and = op == "&&"
        if left.is_const:
            if not isinstance(left.const, bool):
                raise CompileError(f"the left operand of '{op}' must be BOOL", col)
            value = left.const
            if value is not is_and:  # false && x, true || x
                return _constant("BOOL", value)
            if right.type == "BOOL":
                return right
            rf0 = right.fn
            recipe = gen.checked_bool(right, _require_bool, op)
            return _Code("BOOL", lambda act: _require_bool(rf0(act), op), recipe=recipe)
        lf, rf = left.fn, right.fn
        if left.type == "BOOL" and right.type == "BOOL":
            recipe = gen.logical(left, right, is_and, None, op)
            if is_and:
                return _Code("BOOL", lambda act: lf(act) and rf(act), recipe=recipe)
            return _Code("BOOL", lambda act: lf(act) or rf(act), recipe=recipe)

        def checked(act: Activation) -> bool:
            if _require_bool(lf(act), op) is not is_and:
                return not is_and
            return _require_bool(rf(act), op)

        return _Code("BOOL", checked, recipe=gen.logical(left, right, is_and, _require_bool, op))

    def equality(self, op: str, left: _Code, right: _Code, col: int) -> _Code:
        type_ = self.unify(left, right, f"'{op}'", col)
        known = type_ if type_ != DYN else (left.type if left.type != DYN else right.type)
        equal = _EQUALITY.get(known)
        if equal is None and known in _PLAIN_EQUALITY:
            equal = operator.eq
        negate = op == "!="
        code: _Code
        if equal is operator.eq and (right.is_const or left.is_const):
            # The common rule shape `attr == "literal"`: one call less per evaluation.
            c = right.const if right.is_const else left.const
            operand = left if right.is_const else right
            f = operand.fn
            recipe = gen.compare_constant(operand, c, negate)
            if negate:
                code = _Code("BOOL", lambda act: f(act) != c, recipe=recipe)
            else:
                code = _Code("BOOL", lambda act: f(act) == c, recipe=recipe)
        else:
            eq = equal or _dynamic_equal
            lf, rf = left.fn, right.fn
            recipe = gen.equality(left, right, eq, negate)
            if negate:
                code = _Code("BOOL", lambda act: not eq(lf(act), rf(act)), recipe=recipe)
            else:
                code = _Code("BOOL", lambda act: eq(lf(act), rf(act)), recipe=recipe)
        if left.is_const and right.is_const:
            return self.fold(code, col)
        return code
