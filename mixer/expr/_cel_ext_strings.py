"""cel-go's strings extension library (`ext.Strings`): charAt, indexOf, lastIndexOf, lowerAscii,
upperAscii, replace, split, substring, trim, join, reverse, format and strings.quote.

Indices count code points, as cel-go's count runes. Arguments of the wrong kind raise "no
matching overload"; an index outside the string raises "index out of range: N". No function
builds a string or list longer than `_cel_runtime.MAX_VALUE_SIZE`.
"""

from __future__ import annotations

import decimal
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from mixer.expr import _cel_runtime as rt
from mixer.expr._cel_library import Library

# Go's unicode.IsSpace, which strings.TrimSpace (and so trim()) strips.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_QUOTE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def _check(name: str, args: Sequence[Any], *kinds: str, optional: int = 0) -> None:
    """Raise "no matching overload" unless `args` have `kinds`, of which the last `optional`
    may be left out."""
    if not len(kinds) - optional <= len(args) <= len(kinds) or any(
        rt.kind(a) != k for a, k in zip(args, kinds, strict=False)
    ):
        raise rt.no_overload(name, *args)


def _bounded(value: str) -> str:
    if len(value) > rt.MAX_VALUE_SIZE:
        raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
    return value


def _out_of_range(index: int) -> rt.CelError:
    return rt.CelError(f"index out of range: {index}")


def char_at(text: Any, index: Any) -> str:
    """`s.charAt(i)`: the code point at `i`; "" at the end of the string."""
    if type(text) is not str or type(index) is not int:
        _check("charAt", (text, index), "string", "int")
    if not 0 <= index <= len(text):
        raise _out_of_range(index)
    return str(text[index : index + 1])


def index_of(text: Any, sub: Any, *offset: Any) -> int:
    """`s.indexOf(t[, from])`: the first index of `t` at or after `from`, else -1."""
    if type(text) is not str or type(sub) is not str or offset:
        _check("indexOf", (text, sub, *offset), "string", "string", "int", optional=1)
    start = offset[0] if offset else 0
    if not 0 <= start <= len(text):
        raise _out_of_range(start)
    return int(text.find(sub, start))


def last_index_of(text: Any, sub: Any, *offset: Any) -> int:
    """`s.lastIndexOf(t[, from])`: the last index of `t` starting at or before `from`, else -1."""
    if type(text) is not str or type(sub) is not str or offset:
        _check("lastIndexOf", (text, sub, *offset), "string", "string", "int", optional=1)
    if not offset:
        return len(text) if not sub else int(text.rfind(sub))
    start = offset[0]
    if not sub:
        return int(start)
    if not 0 <= start < len(text):
        raise _out_of_range(start)
    return int(text.rfind(sub, 0, start + len(sub)))


def lower_ascii(text: Any) -> str:
    """`s.lowerAscii()`: ASCII letters in lower case, every other code point unchanged."""
    if type(text) is not str:
        _check("lowerAscii", (text,), "string")
    return text.lower() if text.isascii() else str(text).translate(_ASCII_LOWER)


def upper_ascii(text: Any) -> str:
    """`s.upperAscii()`: ASCII letters in upper case, every other code point unchanged."""
    if type(text) is not str:
        _check("upperAscii", (text,), "string")
    return text.upper() if text.isascii() else str(text).translate(_ASCII_UPPER)


def replace(text: Any, old: Any, new: Any, *limit: Any) -> str:
    """`s.replace(old, new[, n])`: the first `n` occurrences (all when `n` < 0) replaced."""
    if type(text) is not str or type(old) is not str or type(new) is not str or limit:
        _check("replace", (text, old, new, *limit), "string", "string", "string", "int", optional=1)
    count = limit[0] if limit else -1
    found = text.count(old) if old else len(text) + 1
    if 0 <= count < found:
        found = count
    if len(text) + found * (len(new) - len(old)) > rt.MAX_VALUE_SIZE:
        raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
    return str(text.replace(old, new, count))


def split(text: Any, sep: Any, *limit: Any) -> list[str]:
    """`s.split(sep[, n])`: Go's strings.SplitN (n == 0: [], n < 0: no limit)."""
    if type(text) is not str or type(sep) is not str or limit:
        _check("split", (text, sep, *limit), "string", "string", "int", optional=1)
    count = limit[0] if limit else -1
    if count == 0:
        return []
    if sep:
        return list(text.split(sep, count - 1 if count > 0 else -1))
    parts = list(text)
    if 0 < count < len(parts):
        parts[count - 1 :] = ["".join(parts[count - 1 :])]
    return parts


def substring(text: Any, start: Any, *end: Any) -> str:
    """`s.substring(start[, end])`: the code points from `start` up to `end` (exclusive)."""
    if type(text) is not str or type(start) is not int or end:
        _check("substring", (text, start, *end), "string", "int", "int", optional=1)
    if not 0 <= start <= len(text):
        raise _out_of_range(start)
    if not end:
        return str(text[start:])
    stop = end[0]
    if not 0 <= stop <= len(text):
        raise _out_of_range(stop)
    if start > stop:
        raise rt.CelError(f"invalid substring range. start: {start}, end: {stop}")
    return str(text[start:stop])


def trim(text: Any) -> str:
    """`s.trim()`: leading and trailing white space (Go's unicode.IsSpace) removed."""
    if type(text) is not str:
        _check("trim", (text,), "string")
    return str(text).strip(_GO_SPACE)


def join(items: Any, *sep: Any) -> str:
    """`list.join([sep])`: the strings of a list, separated by `sep`."""
    if type(items) is not list or (sep and type(sep[0]) is not str):
        _check("join", (items, *sep), "list", "string", optional=1)
    separator = sep[0] if sep else ""
    try:
        # Bounded before building, as a list may hold one long string many times over. This
        # test counts one separator too many; the exact one below decides near the limit.
        if sum(map(len, items)) + len(separator) * len(items) <= rt.MAX_VALUE_SIZE:
            return separator.join(items)  # takes exactly CEL's strings: str and subclasses
    except TypeError:
        pass  # an item that is not a string
    if any(rt.kind(item) != "string" for item in items):
        raise rt.no_overload("join", items, *sep)
    if sum(map(len, items)) + len(separator) * max(len(items) - 1, 0) > rt.MAX_VALUE_SIZE:
        raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
    return separator.join(items)


def reverse(text: Any) -> str:
    """`s.reverse()`: the code points in reverse order."""
    if type(text) is not str:
        _check("reverse", (text,), "string")
    return str(text[::-1])


def quote(text: Any) -> str:
    """`strings.quote(s)`: `s` as a double-quoted CEL string literal."""
    _check("strings.quote", (text,), "string")
    body = "".join(_QUOTE_ESCAPES.get(c, c) for c in text)
    # A lone surrogate cannot be UTF-8; cel-go writes U+FFFD for invalid UTF-8.
    body = body.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _bounded(f'"{body}"')


# -- format ---------------------------------------------------------------------------------------


class _Output:
    """Pieces of the string `format` builds; outputs made by `nested` share one budget, so the
    whole result stays within MAX_VALUE_SIZE however deeply lists and maps nest."""

    __slots__ = ("budget", "parts")

    def __init__(self, budget: list[int] | None = None) -> None:
        self.parts: list[str] = []
        self.budget = budget if budget is not None else [rt.MAX_VALUE_SIZE]

    def add(self, text: str) -> None:
        self.budget[0] -= len(text)
        if self.budget[0] < 0:
            raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
        self.parts.append(text)

    def nested(self) -> _Output:
        return _Output(self.budget)

    def text(self) -> str:
        return "".join(self.parts)


def _format_error(message: str) -> rt.CelError:
    return rt.CelError(f"error during formatting: {message}")


def _type_name(value: Any) -> str:
    return rt.type_of(value).name


def _special_double(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return None


def _plain_double(value: float) -> str:
    """Go's strconv.FormatFloat(f, 'f', -1, 64): shortest round-trip digits, no exponent."""
    special = _special_double(value)
    if special is not None:
        return special
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return format(decimal.Decimal(repr(value)).normalize(), "f")


def _as_string(value: Any, out: _Output) -> None:
    k = rt.kind(value)
    if k in ("string", "int", "uint", "bool", "timestamp", "null", "bytes", "duration", "type"):
        if k == "bytes":
            out.add(bytes(value).decode("utf-8", "replace"))
        elif k == "duration":
            out.add(rt.format_duration(value))
        elif k == "null":
            out.add("null")
        elif k == "type":
            out.add(value.name)
        else:
            out.add(rt.to_string(value))
    elif k == "double":
        out.add(_plain_double(value))
    elif k == "list":
        out.add("[")
        for i, item in enumerate(value):
            if i:
                out.add(", ")
            _as_string(item, out)
        out.add("]")
    elif k == "map":
        entries = []
        for key, item in value.items():
            key_out, item_out = out.nested(), out.nested()
            _as_string(key, key_out)
            _as_string(item, item_out)
            entries.append((key_out.text(), item_out.text()))
        entries.sort(key=lambda entry: entry[0].encode())
        out.add("{")
        for i, (key_text, item_text) in enumerate(entries):
            out.add(", " if i else "")
            out.parts.append(key_text)  # key and value were charged as they were formatted
            out.add(": ")
            out.parts.append(item_text)
        out.add("}")
    else:
        raise _format_error(
            "string clause can only be used on strings, bools, bytes, ints, doubles, maps,"
            f" lists, types, durations, and timestamps, was given {_type_name(value)}"
        )


def _decimal(value: Any, precision: int) -> str:
    k = rt.kind(value)
    if k in ("int", "uint"):
        return str(int(value))
    if k == "double":
        return _plain_double(value)
    raise _format_error(
        "decimal clause can only be used on ints, uints, and doubles, was given"
        f" {_type_name(value)}"
    )


def _floating(clause: str, what: str) -> Callable[[Any, int], str]:
    def formatter(value: Any, precision: int) -> str:
        k = rt.kind(value)
        if k not in ("int", "uint", "double"):
            raise _format_error(
                f"{what} clause can only be used on ints, uints, and doubles, was given"
                f" {_type_name(value)}"
            )
        number = float(value)
        special = _special_double(number)
        if special is not None:
            return special
        return f"{number:.{precision}{clause}}"

    return formatter


def _binary(value: Any, precision: int) -> str:
    k = rt.kind(value)
    if k == "bool":
        return "1" if value else "0"
    if k in ("int", "uint"):
        return format(int(value), "b")
    raise _format_error(
        f"only ints, uints, and bools can be formatted as binary, was given {_type_name(value)}"
    )


def _octal(value: Any, precision: int) -> str:
    if rt.kind(value) in ("int", "uint"):
        return format(int(value), "o")
    raise _format_error(
        f"octal clause can only be used on ints and uints, was given {_type_name(value)}"
    )


def _hex(upper: bool) -> Callable[[Any, int], str]:
    def formatter(value: Any, precision: int) -> str:
        k = rt.kind(value)
        if k in ("int", "uint"):
            text = format(int(value), "x")
        elif k in ("string", "bytes"):
            data = value.encode("utf-8", "surrogatepass") if k == "string" else bytes(value)
            text = data.hex()
        else:
            raise _format_error(
                "only ints, uints, bytes, and strings can be formatted as hex, was given"
                f" {_type_name(value)}"
            )
        return text.upper() if upper else text

    return formatter


def _string_clause(value: Any, precision: int) -> str:
    out = _Output()
    _as_string(value, out)
    return out.text()


_CLAUSES: dict[str, Callable[[Any, int], str]] = {
    "s": _string_clause,
    "d": _decimal,
    "f": _floating("f", "fixed-point"),
    "e": _floating("e", "scientific"),
    "b": _binary,
    "o": _octal,
    "x": _hex(upper=False),
    "X": _hex(upper=True),
}


def format_string(template: Any, args: Any) -> str:
    """`s.format(list)`: printf-style substitution (%s %d %f %e %b %o %x %X, `.N` precision
    for %f and %e, %% for a percent sign), as cel-go's string.format."""
    if type(template) is not str or type(args) is not list:
        _check("format", (template, args), "string", "list")
    plan = _plan(template) if len(template) <= _PLAN_MAX_TEMPLATE else None
    if plan is None or len(plan.parts) - 1 > len(args):
        # Errors are reported where the scan meets them: leave them to the full scan.
        return _format_scanning(template, args)
    if plan.python is not None:
        # Only %s and %d: Python's % gives the same text for exact strs (%s) and ints.
        n = len(plan.verbs)
        for value, verb in zip(args, plan.verbs, strict=False):
            kind = type(value)
            if kind is not int and (kind is not str or verb != "s"):
                break
        else:
            text = plan.python % tuple(args[:n])
            if len(text) > rt.MAX_VALUE_SIZE:
                raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
            return text
    pieces: list[str] = []
    budget = rt.MAX_VALUE_SIZE
    for used, (literal, clause, precision, verb) in enumerate(plan.parts):
        budget -= len(literal)
        pieces.append(literal)
        if clause is None:
            break
        value = args[used]
        kind = type(value)
        # Exact str and int (not bool, not uint) print as themselves under %s and %d.
        if kind is str and verb == "s":
            text = value
        elif kind is int and (verb == "d" or verb == "s"):
            text = str(value)
        else:
            text = clause(value, precision)
        budget -= len(text)
        if budget < 0:
            raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
        pieces.append(text)
    if budget < 0:
        raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
    return "".join(pieces)


# Templates up to this long are parsed once and remembered (`_plan`); longer ones, which rules
# rarely write, are scanned on every call so the memo stays small.
_PLAN_MAX_TEMPLATE = 256


class _Plan:
    """A parsed template: `parts` is (literal before, clause formatter, precision, verb) per
    clause and a last (literal, None, 0, "") for the tail; `python` is the same template for
    Python's `%` when every clause is %s or %d (else None), `verbs` the clauses' verbs."""

    __slots__ = ("parts", "python", "verbs")

    def __init__(self, parts: list[tuple[str, Callable[[Any, int], str] | None, int, str]]):
        self.parts = tuple(parts)
        self.verbs = tuple(verb for _, clause, _, verb in parts if clause is not None)
        simple = all(verb in ("s", "d") for verb in self.verbs)
        self.python = (
            "".join(
                literal.replace("%", "%%") + ("%" + verb if verb else "")
                for literal, _, _, verb in parts
            )
            if simple
            else None
        )


def python_format(template: str) -> tuple[str, tuple[str, ...]] | None:
    """`template` for Python's `%` and its verbs, when it parses and has only %s and %d
    clauses (Python's `%` then prints exact strs and ints as `format` does), else None."""
    plan = _plan(template)
    if plan is None or plan.python is None:
        return None
    return plan.python, plan.verbs


@functools.lru_cache(maxsize=512)
def _plan(template: str) -> _Plan | None:
    """`template` parsed, or None when it does not parse."""
    parts: list[tuple[str, Callable[[Any, int], str] | None, int, str]] = []
    literal: list[str] = []
    i, end = 0, len(template)
    while i < end:
        if template[i] != "%":
            j = template.find("%", i)
            j = end if j < 0 else j
            literal.append(template[i:j])
            i = j
            continue
        if template[i + 1 : i + 2] == "%":
            literal.append("%")
            i += 2
            continue
        if i + 1 >= end:
            return None
        try:
            i, clause, precision = _clause(template, i + 1)
        except rt.CelError:
            return None
        parts.append(("".join(literal), clause, precision, template[i - 1]))
        literal = []
    parts.append(("".join(literal), None, 0, ""))
    return _Plan(parts)


def _format_scanning(template: str, args: list[Any]) -> str:
    out = _Output()
    i, used, end = 0, 0, len(template)
    while i < end:
        c = template[i]
        if c != "%":
            j = template.find("%", i)
            j = end if j < 0 else j
            out.add(template[i:j])
            i = j
            continue
        if template[i + 1 : i + 2] == "%":
            out.add("%")
            i += 2
            continue
        if i + 1 >= end:
            raise rt.CelError("unexpected end of string")
        if used >= len(args):
            raise rt.CelError(f"index {used} out of range")
        i, clause, precision = _clause(template, i + 1)
        out.add(clause(args[used], precision))
        used += 1
    return out.text()


def _clause(template: str, i: int) -> tuple[int, Callable[[Any, int], str], int]:
    """(index after the clause, its formatter, precision) for the clause at `template[i:]`."""
    precision = 6
    if template[i] == ".":
        j = i + 1
        while j < len(template) and template[j].isascii() and template[j].isdigit():
            j += 1
        if j >= len(template):
            raise rt.CelError(
                "could not parse formatting clause: error while parsing precision:"
                " could not find end of precision specifier"
            )
        digits = template[i + 1 : j]
        precision = int(digits) if digits else 0
        if precision > rt.MAX_VALUE_SIZE:
            raise rt.CelError(f"formatting precision larger than {rt.MAX_VALUE_SIZE}")
        i = j
    clause = _CLAUSES.get(template[i])
    if clause is None:
        raise rt.CelError(
            f'could not parse formatting clause: unrecognized formatting clause "{template[i]}"'
        )
    return i + 1, clause, precision


LIBRARY = Library(
    name="strings",
    summary="string functions: charAt, indexOf, replace, split, substring, trim, format, ...",
    functions={
        "charAt": char_at,
        "indexOf": index_of,
        "lastIndexOf": last_index_of,
        "lowerAscii": lower_ascii,
        "upperAscii": upper_ascii,
        "replace": replace,
        "split": split,
        "substring": substring,
        "trim": trim,
        "join": join,
        "reverse": reverse,
        "format": format_string,
        "strings.quote": quote,
    },
    results={
        "charAt": "string",
        "indexOf": "int",
        "lastIndexOf": "int",
        "lowerAscii": "string",
        "upperAscii": "string",
        "replace": "string",
        "split": "list",
        "substring": "string",
        "trim": "string",
        "join": "string",
        "reverse": "string",
        "format": "string",
        "strings.quote": "string",
    },
)
