"""`cel.block`, the form cel-go's optimizer writes common subexpressions in, as nested bindings.

``cel.block([e0, e1, ...], body)`` evaluates `body` where ``cel.index(i)`` is the value of `ei`
(each `ei` may use the ones before it); ``cel.iterVar(i, j)`` and ``cel.accuVar(i, j)`` are
names of comprehension variables. `expand_blocks` rewrites the tree so the compiler sees only
`BIND` calls and identifiers that no expression can spell (they start with ``@``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mixer.expr._ast import Call, Ident, ListLit, Literal, Node, children
from mixer.expr._errors import CompileError

# The function name of a binding: `Call(BIND, None, (Ident(name), value, body))`.
BIND = "@bind"
_NAMES = {"index": "@index", "iterVar": "@it", "accuVar": "@ac"}


def _is_cel_call(node: Node, function: str) -> bool:
    return (
        isinstance(node, Call)
        and node.function == function
        and isinstance(node.target, Ident)
        and node.target.name == "cel"
        and not node.target.absolute
    )


def _slot(node: Call) -> Ident:
    """`cel.index(i)`, `cel.iterVar(i, j)`, `cel.accuVar(i, j)` as the identifier they name."""
    numbers = [arg.value for arg in node.args if isinstance(arg, Literal) and arg.kind == "int"]
    if len(numbers) != len(node.args) or len(numbers) != (1 if node.function == "index" else 2):
        raise CompileError(f"cel.{node.function}() takes integer literals", node.col)
    return Ident(":".join([_NAMES[node.function], *map(str, numbers)]), node.col)


def _mentions_block(node: Node) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Call) and any(_is_cel_call(current, f) for f in ("block", *_NAMES)):
            return True
        stack.extend(children(current))
    return False


def expand_blocks(node: Node) -> Node:
    """`node` with every cel.block rewritten to nested `BIND` calls (unchanged if it has none)."""
    return _expand(node) if _mentions_block(node) else node


def _expand(node: Node) -> Node:
    if isinstance(node, Call) and _is_cel_call(node, "block"):
        if len(node.args) != 2 or not isinstance(node.args[0], ListLit):
            raise CompileError("cel.block() takes a list literal and an expression", node.col)
        result = _expand(node.args[1])
        for i, value in reversed(list(enumerate(node.args[0].items))):
            result = Call(BIND, None, (Ident(f"@index:{i}", node.col), _expand(value), result), 0)
        return result
    if isinstance(node, Call) and any(_is_cel_call(node, f) for f in _NAMES):
        return _slot(node)
    return _rebuild(node)


def _rebuild(node: Node) -> Node:
    """`node` with its children expanded (same node type and fields otherwise)."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if isinstance(value, tuple):
            changes[field.name] = tuple(_expand_item(item) for item in value)
        elif dataclasses.is_dataclass(value):
            changes[field.name] = _expand(value)  # type: ignore[arg-type]
    return dataclasses.replace(node, **changes) if changes else node


def _expand_item(item: object) -> object:
    if isinstance(item, tuple):  # a map entry (key, value) or a field init (name, value)
        return tuple(_expand_item(part) for part in item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return _expand(item)  # type: ignore[arg-type]
    return item
