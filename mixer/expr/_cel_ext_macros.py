"""Libraries that are macros the compiler expands: cel.bind, two-variable comprehensions and
cel.block (`_cel_compiler.CelCompiler.bind`, `.comprehension2`; `_cel_ext_block`)."""

from __future__ import annotations

from mixer.expr._cel_library import Library

BINDINGS = Library(
    name="bindings",
    summary="cel.bind(name, value, expression): a local name for a value",
    macros=frozenset({"cel.bind"}),
)
TWO_VAR_COMPREHENSIONS = Library(
    name="two_var_comprehensions",
    summary="all/exists/existsOne/transformList/transformMap with (index or key, value) names",
    macros=frozenset({"all", "exists", "existsOne", "transformList", "transformMap"}),
)
BLOCK = Library(
    name="block",
    summary="cel.block([values], expression) with cel.index(i): what cel-go's optimizer writes",
    macros=frozenset({"cel.block", "cel.index", "cel.iterVar", "cel.accuVar"}),
)
