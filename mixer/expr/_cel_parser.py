"""Parser for the Common Expression Language (cel-spec `doc/langdef.md`), to `mixer.expr._ast`.

Hand-written recursive descent: CEL's grammar is small, and owning it gives exact string/bytes
escapes (`\\?`, `\\X..`, raw and triple-quoted literals), backtick-quoted field names, accurate
columns in errors and a fraction of a general parser generator's cost per expression.
"""

from __future__ import annotations

import re

from mixer.expr._ast import (
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
    Token,
    Unary,
    tokenize,
)
from mixer.expr._errors import CompileError

MAX_LENGTH = 16_384
MAX_DEPTH = 50  # nesting of parentheses, lists, calls and unary operators
RESERVED = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
        "in",
    }
)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[\t\n\f\r ]+|//[^\n]*)
  | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''(?:[^\\]|\\.)*?'''
        |"(?:[^"\\\n\r]|\\.)*"|'(?:[^'\\\n\r]|\\.)*'))
  | (?P<float>(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>(?:0[xX][0-9a-fA-F]+|\d+)[uU]?)
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<quoted>`[^`\n\r]*`)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:.,\[\](){}])
    """,
    re.VERBOSE | re.DOTALL,
)
_SIMPLE_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
    "?": 63,
    '"': 34,
    "'": 39,
    "`": 96,
}
_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})


_Token = Token


def _decode(token: _Token) -> Literal:
    """A string or bytes literal token as its value."""
    text = token.text
    prefix_len = 0
    while text[prefix_len] not in "'\"":
        prefix_len += 1
    prefix = text[:prefix_len].lower()
    body = text[prefix_len:]
    quote = 3 if body[:3] in ('"""', "'''") else 1
    body = body[quote:-quote]
    is_bytes = "b" in prefix
    if "r" in prefix:
        return Literal(
            body.encode() if is_bytes else body, "bytes" if is_bytes else "string", token.col
        )
    out = bytearray()
    chars: list[str] = []  # for strings, collected as text so \x and octal give code points
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            if is_bytes:
                out += c.encode()
            else:
                chars.append(c)
            i += 1
            continue
        esc = body[i + 1] if i + 1 < len(body) else ""
        code: int
        if esc in _SIMPLE_ESCAPES:
            code, i = _SIMPLE_ESCAPES[esc], i + 2
        elif esc in "xX" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            code, i = int(body[i + 2 : i + 4], 16), i + 4
        elif esc in "0123" and re.fullmatch(r"[0-7]{3}", body[i + 1 : i + 4]):
            code, i = int(body[i + 1 : i + 4], 8), i + 4
        elif esc in "uU" and not is_bytes:
            width = 4 if esc == "u" else 8
            digits = body[i + 2 : i + 2 + width]
            if not re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", digits):
                raise CompileError("invalid unicode escape in string literal", token.col)
            code, i = int(digits, 16), i + 2 + width
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise CompileError("invalid unicode code point in string literal", token.col)
        else:
            raise CompileError(f"invalid escape sequence '\\{esc}'", token.col)
        if is_bytes:
            out.append(code)
        else:
            chars.append(chr(code))
    if is_bytes:
        return Literal(bytes(out), "bytes", token.col)
    return Literal("".join(chars), "string", token.col)


def _tokenize(text: str) -> list[_Token]:
    return tokenize(text, _TOKEN_RE, "syntax error: unexpected character")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self, op: str | None = None) -> bool:
        token = self.tokens[self.pos]
        return token.kind == "op" and (op is None or token.text == op)

    def at(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, op: str) -> _Token:
        token = self.take()
        if token.kind != "op" or token.text != op:
            raise CompileError(
                f"syntax error: expected '{op}', found {_describe(token)}", token.col
            )
        return token

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CompileError(f"expression nests deeper than {MAX_DEPTH}", self.at().col)

    def expr(self) -> Node:
        self.enter()
        cond = self.logical_or()
        if self.peek("?"):
            col = self.take().col
            then = self.logical_or()
            self.expect(":")
            otherwise = self.expr()
            cond = Conditional(cond, then, otherwise, col)
        self.depth -= 1
        return cond

    def logical_or(self) -> Node:
        left = self.logical_and()
        while self.peek("||"):
            col = self.take().col
            left = Binary("||", left, self.logical_and(), col)
        return left

    def logical_and(self) -> Node:
        left = self.relation()
        while self.peek("&&"):
            col = self.take().col
            left = Binary("&&", left, self.relation(), col)
        return left

    def relation(self) -> Node:
        left = self.addition()
        while True:
            token = self.at()
            is_in = token.kind == "ident" and token.text == "in"
            if not (is_in or (token.kind == "op" and token.text in _RELATIONS)):
                return left
            self.take()
            left = Binary(token.text, left, self.addition(), token.col)

    def addition(self) -> Node:
        left = self.multiplication()
        while self.peek("+") or self.peek("-"):
            token = self.take()
            left = Binary(token.text, left, self.multiplication(), token.col)
        return left

    def multiplication(self) -> Node:
        left = self.unary()
        while self.peek("*") or self.peek("/") or self.peek("%"):
            token = self.take()
            left = Binary(token.text, left, self.unary(), token.col)
        return left

    def unary(self) -> Node:
        if self.peek("!") or self.peek("-"):
            token = self.take()
            self.enter()
            if token.text == "-" and self.at().kind in ("int", "float"):
                # A negative literal: -9223372036854775808 only exists with its sign.
                node = self.postfix(self.literal(self.take(), negative=True))
            else:
                node = Unary(token.text, self.unary(), token.col)
            self.depth -= 1
            return node
        return self.postfix(self.primary())

    def literal(self, token: _Token, negative: bool = False) -> Literal:
        text = token.text
        if token.kind == "float":
            value = float(text)
            return Literal(-value if negative else value, "double", token.col)
        unsigned = text[-1] in "uU"
        digits = text[:-1] if unsigned else text
        number = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits)
        if unsigned:
            if negative or number > _UINT64_MAX:
                raise CompileError("uint literal out of range", token.col)
            return Literal(number, "uint", token.col)
        number = -number if negative else number
        if not -(2**63) <= number <= _INT64_MAX:
            raise CompileError("int literal out of range", token.col)
        return Literal(number, "int", token.col)

    def primary(self) -> Node:
        token = self.take()
        kind = token.kind
        if kind in ("int", "float"):
            return self.literal(token)
        if kind == "string":
            return _decode(token)
        if kind == "ident":
            text = token.text
            if text in ("true", "false"):
                return Literal(text == "true", "bool", token.col)
            if text == "null":
                return Literal(None, "null", token.col)
            if text in RESERVED:
                raise CompileError(f"syntax error: reserved identifier '{text}'", token.col)
            if self.peek("("):
                self.take()
                return Call(text, None, self.arguments(")"), token.col)
            return Ident(text, token.col)
        if kind == "op":
            if token.text == ".":
                name = self.take()
                if name.kind != "ident" or name.text in RESERVED:
                    raise CompileError("syntax error: expected a name after '.'", name.col)
                if self.peek("("):
                    self.take()
                    return Call(name.text, None, self.arguments(")"), name.col)
                return Ident(name.text, token.col, absolute=True)
            if token.text == "(":
                inner = self.expr()
                self.expect(")")
                return inner
            if token.text == "[":
                items, optional = self.elements()
                return ListLit(items, token.col, optional)
            if token.text == "{":
                entries, optional = self.map_entries()
                return MapLit(entries, token.col, optional)
        raise CompileError(f"syntax error: unexpected {_describe(token)}", token.col)

    def postfix(self, node: Node) -> Node:
        while self.peek():
            token = self.at()
            if token.text == ".":
                self.take()
                optional = self.optional_marker()
                name = self.take()
                if name.kind == "quoted":
                    node = Select(node, name.text[1:-1], name.col, optional)
                    continue
                if name.kind != "ident":
                    raise CompileError("syntax error: expected a name after '.'", name.col)
                if self.peek("(") and not optional:
                    self.take()
                    node = Call(name.text, node, self.arguments(")"), name.col)
                else:
                    node = Select(node, name.text, name.col, optional)
            elif token.text == "[":
                self.take()
                optional = self.optional_marker()
                index = self.expr()
                self.expect("]")
                node = Index(node, index, token.col, optional)
            elif token.text == "{" and _type_name(node) is not None:
                self.take()
                node = MessageLit(_type_name(node) or "", self.field_inits(), token.col)
            else:
                break
        return node

    def arguments(self, close: str) -> tuple[Node, ...]:
        args: list[Node] = []
        while not self.peek(close):
            args.append(self.expr())
            if not self.peek(","):
                break
            self.take()
        self.expect(close)
        return tuple(args)

    def optional_marker(self) -> bool:
        """Take the `?` of CEL's optional syntax (`.?f`, `[?i]`, `[?e]`, `{?k: v}`) if next."""
        if self.peek("?"):
            self.take()
            return True
        return False

    def elements(self) -> tuple[tuple[Node, ...], frozenset[int]]:
        """A list literal's elements after `[`, and the positions marked optional."""
        items: list[Node] = []
        optional: set[int] = set()
        while not self.peek("]"):
            if self.optional_marker():
                optional.add(len(items))
            items.append(self.expr())
            if not self.peek(","):
                break
            self.take()
        self.expect("]")
        return tuple(items), frozenset(optional)

    def map_entries(self) -> tuple[tuple[tuple[Node, Node], ...], frozenset[int]]:
        entries: list[tuple[Node, Node]] = []
        optional: set[int] = set()
        while not self.peek("}"):
            if self.optional_marker():
                optional.add(len(entries))
            key = self.expr()
            self.expect(":")
            entries.append((key, self.expr()))
            if not self.peek(","):
                break
            self.take()
        self.expect("}")
        return tuple(entries), frozenset(optional)

    def field_inits(self) -> tuple[tuple[str, Node], ...]:
        fields: list[tuple[str, Node]] = []
        while not self.peek("}"):
            name = self.take()
            if name.kind != "ident":
                raise CompileError("syntax error: expected a field name", name.col)
            self.expect(":")
            fields.append((name.text, self.expr()))
            if not self.peek(","):
                break
            self.take()
        self.expect("}")
        return tuple(fields)


def _type_name(node: Node) -> str | None:
    parts: list[str] = []
    while isinstance(node, Select):
        parts.append(node.field)
        node = node.operand
    if isinstance(node, Ident):
        parts.append(("." if node.absolute else "") + node.name)
        return ".".join(reversed(parts))
    return None


def _describe(token: _Token) -> str:
    return "end of expression" if token.kind == "eof" else repr(token.text)


def parse(text: str) -> Node:
    """Parse CEL `text`; raises CompileError ("syntax error: ...") with the column."""
    if len(text) > MAX_LENGTH:
        raise CompileError(f"expression longer than {MAX_LENGTH} characters")
    parser = _Parser(text)
    node = parser.expr()
    token = parser.at()
    if token.kind != "eof":
        raise CompileError(f"syntax error: unexpected {_describe(token)}", token.col)
    return node
