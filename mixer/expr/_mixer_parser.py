"""Parser for Mixer's expression language (CEXL): the subset of Go expression syntax Istio accepts.

Precedence climbing over Go's binary operator levels (`||` < `&&` < comparisons < `+ - |` < `*`),
so `a | b == c` groups as `(a | b) == c` exactly as Go's parser (and so Istio) reads it.
"""

from __future__ import annotations

import re

from mixer.expr._ast import Binary, Call, Ident, Index, Literal, Node, Select, Token, tokenize
from mixer.expr._errors import CompileError

MAX_LENGTH = 16_384
MAX_DEPTH = 50  # nesting of parentheses and calls

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|\d[\d_]*)
  | (?P<ident>[^\W\d]\w*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\[^\n]+?)')
  | (?P<op>&&|\|\||==|!=|<=|>=|<<|>>|&\^|[-+*/%&|^<>!()\[\],.])
    """,
    re.VERBOSE,
)

# Go binary operator precedence; only the ones Mixer implements are accepted after parsing.
_BINARY_PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "+": 4,
    "-": 4,
    "|": 4,
    "^": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "<<": 5,
    ">>": 5,
    "&": 5,
    "&^": 5,
}
SUPPORTED_BINARY = frozenset({"||", "&&", "==", "!=", "<", "<=", ">", ">=", "+", "|"})

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


_Token = Token


def _unquote(body: str, quote: str, col: int) -> str:
    """Go `strconv.Unquote` of the text between the quotes."""
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        esc = body[i + 1] if i + 1 < len(body) else ""
        if esc in _SIMPLE_ESCAPES and (esc not in "'\"" or esc == quote):
            out += _SIMPLE_ESCAPES[esc].encode()
            i += 2
        elif esc in "01234567" and re.fullmatch(r"[0-3][0-7]{2}", body[i + 1 : i + 4]):
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        elif esc == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            digits = body[i + 2 : i + 2 + width]
            if not re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", digits):
                raise CompileError("invalid escape in string literal", col)
            try:
                out += chr(int(digits, 16)).encode()
            except (ValueError, UnicodeEncodeError, OverflowError):
                raise CompileError("invalid Unicode code point in string literal", col) from None
            i += 2 + width
        else:
            raise CompileError(f"invalid escape '\\{esc}' in string literal", col)
    return out.decode("utf-8", errors="replace")


def _tokenize(text: str) -> list[_Token]:
    return tokenize(text, _TOKEN_RE, "unexpected character")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, op: str) -> _Token:
        token = self.take()
        if token.kind != "op" or token.text != op:
            raise CompileError(f"expected '{op}', found {_describe(token)}", token.col)
        return token

    def parse(self) -> Node:
        node = self.binary(1)
        token = self.peek()
        if token.kind != "eof":
            raise CompileError(f"unexpected {_describe(token)}", token.col)
        return node

    def binary(self, min_precedence: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CompileError(f"expression nests deeper than {MAX_DEPTH}", self.peek().col)
        left = self.unary()
        while True:
            token = self.peek()
            precedence = _BINARY_PRECEDENCE.get(token.text, 0) if token.kind == "op" else 0
            if precedence < min_precedence:
                break
            self.take()
            if token.text not in SUPPORTED_BINARY:
                raise CompileError(f"operator '{token.text}' is not supported", token.col)
            right = self.binary(precedence + 1)
            left = Binary(token.text, left, right, token.col)
        self.depth -= 1
        return left

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text in ("-", "+", "!", "^", "*", "&"):
            self.take()
            if token.text == "!":
                raise CompileError(
                    "operator '!' is not supported in Mixer expressions (write 'x == false')",
                    token.col,
                )
            operand = self.unary()
            numeric = isinstance(operand, Literal) and operand.kind in ("int", "double")
            if token.text in ("-", "+") and numeric:
                assert isinstance(operand, Literal)
                value = operand.value
                assert isinstance(value, int | float)
                return Literal(-value if token.text == "-" else value, operand.kind, token.col)
            raise CompileError(f"unary operator '{token.text}' is not supported", token.col)
        return self.postfix(self.primary())

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "ident":
            if token.text in ("true", "false"):
                return Literal(token.text == "true", "bool", token.col)
            return Ident(token.text, token.col)
        if token.kind == "int":
            try:
                return Literal(int(token.text.replace("_", ""), 0), "int", token.col)
            except ValueError:
                raise CompileError(f"invalid integer literal {token.text}", token.col) from None
        if token.kind == "float":
            return Literal(float(token.text), "double", token.col)
        if token.kind == "string":
            return Literal(_unquote(token.text[1:-1], '"', token.col), "string", token.col)
        if token.kind == "raw":
            return Literal(token.text[1:-1].replace("\r", ""), "string", token.col)
        if token.kind == "char":
            value = _unquote(token.text[1:-1], "'", token.col)
            if len(value) != 1:
                raise CompileError("invalid character literal", token.col)
            return Literal(value, "string", token.col)
        if token.kind == "op" and token.text == "(":
            inner = self.binary(1)
            self.expect(")")
            return inner
        raise CompileError(f"unexpected {_describe(token)}", token.col)

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.kind != "op":
                return node
            if token.text == ".":
                self.take()
                name = self.take()
                if name.kind != "ident":
                    raise CompileError(
                        f"expected a name after '.', found {_describe(name)}", name.col
                    )
                if self.peek().text == "(" and self.peek().kind == "op":
                    self.take()
                    node = Call(name.text, node, self.arguments(), name.col)
                else:
                    node = Select(node, name.text, name.col)
            elif token.text == "[":
                self.take()
                index = self.binary(1)
                self.expect("]")
                node = Index(node, index, token.col)
            elif token.text == "(":
                self.take()
                if not isinstance(node, Ident):
                    raise CompileError("only named functions can be called", token.col)
                node = Call(node.name, None, self.arguments(), node.col)
            else:
                return node

    def arguments(self) -> tuple[Node, ...]:
        args: list[Node] = []
        if self.peek().kind == "op" and self.peek().text == ")":
            self.take()
            return ()
        while True:
            args.append(self.binary(1))
            token = self.take()
            if token.kind == "op" and token.text == ")":
                return tuple(args)
            if token.kind != "op" or token.text != ",":
                raise CompileError(f"expected ',' or ')', found {_describe(token)}", token.col)


def _describe(token: _Token) -> str:
    return "end of expression" if token.kind == "eof" else repr(token.text)


def parse(text: str) -> Node:
    """Parse CEXL `text`; raises CompileError with the column of the problem."""
    if len(text) > MAX_LENGTH:
        raise CompileError(f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise CompileError("empty expression")
    return _Parser(text).parse()
