"""The expression engine behind rule matches, instance fields and header operations.

`compile(text, dialect=..., vocabulary=...)` parses and type-checks once and returns a `Program`
whose `evaluate(activation)` runs compiled Python: one generated function per expression
(`_cel_codegen`, `_mixer_codegen`), nested closures where generation does not reach. Dialects:

- ``"mixer"`` (default, as in Istio): CEXL, the Go-expression subset with `|` defaults;
- ``"cel"``: the Common Expression Language (own compiler, cel-spec semantics) plus Mixer's
  functions `match`, `ip`, `email`, `dnsName`, `uri`, `emptyStringMap`, `reverse`, `toLower`,
  `conditional`, and cel-go's extension libraries named in `CEL_LIBRARIES` (strings, math,
  encoders, ...; `_cel_libraries` says what each provides and why all are on by default);
- ``"compat"``: CEXL syntax with the semantics of Istio's CEL-compatibility mode, as Istio's
  expression table states them: an absent attribute reads as its type's zero value (so
  ``a | b`` is ``a``), a key a string map lacks is an error, ``s.matches(re)`` takes the string
  as its receiver (docs/expressions.md).

Programs read attributes only through ``activation.get(name)`` and string-map keys only through
the map's ``get``/``in``, and only the ones evaluation needs, so a `TrackingBag` records exactly
the attributes an answer depended on.

Values: bag types in (see `mixer.attributes.bag`); CEL results may also be lists, dicts, None,
`mixer.expr._cel_runtime.UInt` (an int subclass for CEL's uint) and CEL type values.
Limits against hostile expressions: 16 KiB of text, a tree at most 100 levels deep, 100,000
comprehension iterations per evaluation and 1 MiB per concatenated string, bytes or list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mixer.expr._ast import MAX_TREE_DEPTH, NOT_CONSTANT
from mixer.expr._cel_compiler import CelCompiler
from mixer.expr._cel_libraries import DEFAULT_LIBRARIES as CEL_LIBRARIES
from mixer.expr._errors import CompileError, EvaluationError
from mixer.expr._mixer_compiler import MixerCompiler
from mixer.expr.value_types import VALUE_TYPES

__all__ = ["CEL_LIBRARIES", "VALUE_TYPES", "CompileError", "EvaluationError", "Program", "compile"]

_DIALECTS = ("mixer", "cel", "compat")
_CONTAINER = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*(\.[_a-zA-Z][_a-zA-Z0-9]*)*")


class Program:
    """A compiled expression: evaluate it against any number of activations."""

    __slots__ = {
        "constant": "The expression's value if it does not depend on the activation, else None.",
        "dialect": "The dialect the text was compiled in.",
        "evaluate": (
            "evaluate(activation) -> the expression's value; raises EvaluationError (missing"
            " attribute, bad value, ...)."
        ),
        "names": (
            "Every attribute name evaluation might look up (a superset): callers that decode"
            " only what is read (a Report) rely on it."
        ),
        "result_type": "The ValueType name of the expression's values.",
        "text": "The expression's source text.",
    }

    def __init__(
        self,
        text: str,
        dialect: str,
        result_type: str,
        constant: object | None,
        evaluate: Callable[[Mapping[str, Any]], object],
        names: frozenset[str] = frozenset(),
    ) -> None:
        self.text = text
        self.names = names
        self.dialect = dialect
        self.result_type = result_type
        self.constant = constant
        # An instance attribute, not a method: callers reach the compiled function in one call.
        self.evaluate = evaluate

    def __repr__(self) -> str:
        return f"Program({self.text!r}, dialect={self.dialect!r}, result_type={self.result_type!r})"


def compile(
    text: str,
    *,
    dialect: str = "mixer",
    vocabulary: Mapping[str, str] | None = None,
    libraries: Iterable[str] | None = None,
    container: str = "",
) -> Program:
    """Compile `text` in `dialect`; with a `vocabulary` (attribute name -> ValueType name),
    unknown attributes and type errors are CompileErrors. `libraries` names the CEL extension
    libraries a ``"cel"`` expression may use (None: all of `CEL_LIBRARIES`); a function of
    another library is a CompileError that names its library.

    `container` (``"cel"`` only) is a dotted namespace, as cel-spec defines it: in container
    ``a.b`` the name ``x.y`` means the first of ``a.b.x.y``, ``a.x.y``, ``x.y`` that exists
    (the longest name first), and ``.x.y`` means ``x.y`` only. A container that is not dotted
    identifiers is a CompileError."""
    if dialect not in _DIALECTS:
        raise CompileError(f"unknown expression dialect {dialect!r} (use one of {_DIALECTS})")
    if container:
        if dialect != "cel":
            raise CompileError(f"a container needs the CEL dialect, not {dialect!r}")
        if not _CONTAINER.fullmatch(container):
            raise CompileError(f"container {container!r} is not a dotted name like 'a.b.c'")
    if vocabulary is not None:
        unknown = {t for t in vocabulary.values() if t not in VALUE_TYPES}
        if unknown:
            raise CompileError(f"vocabulary uses unknown value types {sorted(unknown)}")
    if dialect == "cel":
        compiler: CelCompiler | MixerCompiler = CelCompiler(
            vocabulary, container, libraries=libraries
        )
    else:
        compiler = MixerCompiler(vocabulary, compat=dialect == "compat")
    try:
        evaluate, result_type, const = compiler.compile(text)
    except RecursionError:
        raise CompileError(f"expression nests deeper than {MAX_TREE_DEPTH} levels") from None
    if const is NOT_CONSTANT:
        return Program(text, dialect, result_type, None, evaluate, compiler.names)
    # A constant cannot fail: skip the error guard (instance fields like `value: "1"`).
    return Program(text, dialect, result_type, const, _returning(const))


def _returning(value: object) -> Callable[[Mapping[str, Any]], object]:
    def constant(activation: Mapping[str, Any]) -> object:
        return value

    return constant
