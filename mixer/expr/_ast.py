"""The syntax tree both dialect parsers produce. Columns are 1-based, for error messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from mixer.expr._errors import CompileError

# Deepest expression tree accepted: bounds compile-time and evaluation-time recursion.
MAX_TREE_DEPTH = 100
# What a compiler reports as the constant value of a non-constant expression.
NOT_CONSTANT: Any = object()


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant as written; `kind` is int, uint, double, string, bytes, bool or null."""

    value: object
    kind: str
    col: int


@dataclass(frozen=True, slots=True)
class Ident:
    """A bare name (`absolute` for CEL's leading-dot form `.name`)."""

    name: str
    col: int
    absolute: bool = False


@dataclass(frozen=True, slots=True)
class Select:
    """`operand.field` (`optional`: CEL's `operand.?field`)."""

    operand: Node
    field: str
    col: int
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Index:
    """`operand[index]` (`optional`: CEL's `operand[?index]`)."""

    operand: Node
    index: Node
    col: int
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """`function(args)` or, with a target, `target.function(args)`."""

    function: str
    target: Node | None
    args: tuple[Node, ...]
    col: int


@dataclass(frozen=True, slots=True)
class Unary:
    """`op operand` with op `!` or `-`."""

    op: str
    operand: Node
    col: int


@dataclass(frozen=True, slots=True)
class Binary:
    """`left op right`; op is the operator as written (`==`, `&&`, `|`, `in`, ...)."""

    op: str
    left: Node
    right: Node
    col: int


@dataclass(frozen=True, slots=True)
class Conditional:
    """`cond ? then : otherwise`."""

    cond: Node
    then: Node
    otherwise: Node
    col: int


@dataclass(frozen=True, slots=True)
class ListLit:
    """`[a, b, ...]`; `optional` holds the positions of CEL's optional elements (`[?a]`)."""

    items: tuple[Node, ...]
    col: int
    optional: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class MapLit:
    """`{k: v, ...}`; `optional` holds the positions of CEL's optional entries (`{?k: v}`)."""

    entries: tuple[tuple[Node, Node], ...]
    col: int
    optional: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class MessageLit:
    """`Name{field: value, ...}` (parsed so it can be rejected with a clear message)."""

    type_name: str
    fields: tuple[tuple[str, Node], ...]
    col: int


Node = (
    Literal
    | Ident
    | Select
    | Index
    | Call
    | Unary
    | Binary
    | Conditional
    | ListLit
    | MapLit
    | MessageLit
)


def dotted_name(node: Node) -> str | None:
    """`a.b.c` for a chain of selections on an identifier, else None."""
    parts: list[str] = []
    while isinstance(node, Select):
        parts.append(node.field)
        node = node.operand
    if isinstance(node, Ident) and not node.absolute:
        parts.append(node.name)
        return ".".join(reversed(parts))
    return None


def attribute_names(node: Node, prefixes: tuple[str, ...] = ("",)) -> frozenset[str]:
    """Every attribute name evaluating `node` might look up, a superset of what either dialect
    resolves: each identifier, and each dotted prefix of a selection chain (`a.b.c` gives `a`,
    `a.b` and `a.b.c`), under each of the container `prefixes` (CEL's resolution order)."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        fields: list[str] = []
        base = current
        while isinstance(base, Select):
            fields.append(base.field)
            base = base.operand
        if isinstance(base, Ident):
            parts = [base.name, *reversed(fields)]
            for n in range(1, len(parts) + 1):
                dotted = ".".join(parts[:n])
                if base.absolute:
                    names.add(dotted)
                else:
                    names.update(prefix + dotted for prefix in prefixes)
            continue
        stack.extend(children(current))
    return frozenset(names)


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of `node`."""
    if isinstance(node, Select):
        return (node.operand,)
    if isinstance(node, Index):
        return (node.operand, node.index)
    if isinstance(node, Call):
        return node.args if node.target is None else (node.target, *node.args)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Conditional):
        return (node.cond, node.then, node.otherwise)
    if isinstance(node, ListLit):
        return node.items
    if isinstance(node, MapLit):
        return tuple(part for entry in node.entries for part in entry)
    if isinstance(node, MessageLit):
        return tuple(value for _, value in node.fields)
    return ()


def check_depth(node: Node) -> Node:
    """`node`, if its tree is at most MAX_TREE_DEPTH high (long `a + b + c ...` chains count)."""
    if depth(node) > MAX_TREE_DEPTH:
        raise CompileError(f"expression nests deeper than {MAX_TREE_DEPTH} levels")
    return node


def depth(node: Node) -> int:
    """The height of the tree (iteratively: the tree may be deeper than Python's stack)."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children(current))
    return deepest


class Token(NamedTuple):
    """A lexical token: its regex group name, text and 1-based column."""

    kind: str
    text: str
    col: int


def tokenize(text: str, pattern: re.Pattern[str], unexpected: str) -> list[Token]:
    """Split `text` by a dialect's token regex (named groups; ``ws`` is dropped), ending in
    ``eof``; `unexpected` prefixes the error for a character no group matches."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        found = pattern.match(text, pos)
        if found is None:
            raise CompileError(f"{unexpected} {text[pos]!r}", pos + 1)
        kind = found.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, found.group(), pos + 1))
        pos = found.end()
    tokens.append(Token("eof", "", len(text) + 1))
    return tokens
