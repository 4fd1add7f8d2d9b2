"""What a condition requires: the ``attribute == "constant"`` conjuncts of its top-level ``&&``.

A rule whose match requires such an equality cannot match a request where the attribute (or map
key) is absent or holds another value, so the routing table can index rules by it and skip
evaluating the rest. The leading conjunct is what evaluation reads first anyway, so indexing by
it records exactly the reads that evaluation would have made; a later conjunct is only used when
the index reads its attribute for every request anyway (`mixer.runtime.routing.RuleIndex`).

In Mixer's dialect ``(attribute | "default") == "constant"`` with a different default requires
``attribute == "constant"`` as well: an absent attribute compares its default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mixer.expr._ast import Binary, Ident, Index, Literal, Node, Select
from mixer.expr._cel_parser import parse as parse_cel
from mixer.expr._errors import CompileError
from mixer.expr._mixer_parser import parse as parse_mixer

# In the Mixer dialect a quoted Go duration is a DURATION constant, not a string.
_GO_DURATION = re.compile(r"^[+-]?(?:0|(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")


@dataclass(frozen=True, slots=True)
class Equality:
    """``attribute == value`` or ``attribute[key] == value`` with a string constant."""

    attribute: str
    key: str | None
    value: str


def _dotted(node: Node) -> str | None:
    if isinstance(node, Ident) and not node.absolute:
        return node.name
    if isinstance(node, Select):
        base = _dotted(node.operand)
        return None if base is None else f"{base}.{node.field}"
    return None


def _side(node: Node, vocabulary: Mapping[str, str] | None) -> tuple[str, str | None] | None:
    if isinstance(node, Index):
        name = _dotted(node.operand)
        index = node.index
        if name is None or not (isinstance(index, Literal) and index.kind == "string"):
            return None
        if vocabulary is not None and vocabulary.get(name) != "STRING_MAP":
            return None
        return name, str(index.value)
    name = _dotted(node)
    if name is None or (vocabulary is not None and vocabulary.get(name) != "STRING"):
        return None
    return name, None


def _conjuncts(node: Node) -> list[Node]:
    """The operands of a top-level ``&&`` chain, in evaluation order."""
    out: list[Node] = []
    stack = [node]
    while stack:
        top = stack.pop()
        if isinstance(top, Binary) and top.op == "&&":
            stack.extend((top.right, top.left))
        else:
            out.append(top)
    return out


def _equality(node: Node, dialect: str, vocabulary: Mapping[str, str] | None) -> Equality | None:
    if not (isinstance(node, Binary) and node.op == "=="):
        return None
    for attr_side, const_side in ((node.left, node.right), (node.right, node.left)):
        if not (isinstance(const_side, Literal) and const_side.kind == "string"):
            continue
        value = str(const_side.value)
        if dialect != "cel" and _GO_DURATION.match(value):
            return None
        if (
            dialect != "cel"
            and isinstance(attr_side, Binary)
            and attr_side.op == "|"
            and isinstance(attr_side.right, Literal)
            and attr_side.right.kind == "string"
            and str(attr_side.right.value) != value
        ):
            attr_side = attr_side.left
        side = _side(attr_side, vocabulary)
        if side is not None:
            return Equality(side[0], side[1], value)
    return None


def required_equalities(
    text: str, dialect: str, vocabulary: Mapping[str, str] | None = None
) -> tuple[tuple[Equality, ...], bool]:
    """Every equality conjunct that a match of `text` requires, in evaluation order, and
    whether the first of them is the leading conjunct. Empty for invalid text."""
    try:
        tree = parse_cel(text) if dialect == "cel" else parse_mixer(text)
    except (CompileError, RecursionError):
        return (), False
    found: list[Equality] = []
    leading = False
    for position, node in enumerate(_conjuncts(tree)):
        eq = _equality(node, dialect, vocabulary)
        if eq is not None:
            leading = leading or position == 0
            found.append(eq)
    return tuple(found), leading
