"""Mixer's extern functions (Istio `mixer/pkg/lang/externs.go`) as plain Python.

Both dialects use these. Values follow `mixer.attributes.bag`: IP addresses are 4 or 16 raw bytes,
timestamps tz-aware datetimes (UTC), durations timedeltas, EMAIL/DNS/URI values plain strings.
Failures raise `EvaluationError` so the caller gets one exception type.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import string
import urllib.parse
from collections.abc import Callable, Mapping
from functools import lru_cache

import re2

from mixer.attributes.bag import StringMap
from mixer.expr._errors import EvaluationError

# Go's time.ParseDuration: a sequence of decimal numbers with units, optional sign; "0" alone too.
_DURATION_RE = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_MICROS = {
    "ns": 0.001,
    "us": 1.0,
    "µs": 1.0,
    "μs": 1.0,
    "ms": 1000.0,
    "s": 1_000_000.0,
    "m": 60_000_000.0,
    "h": 3_600_000_000.0,
}
_RFC3339_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)
_DNS_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def parse_go_duration(text: str) -> datetime.timedelta | None:
    """The duration `text` denotes in Go's syntax ("10s", "1h2m", "0"), or None if it is not one."""
    if text in ("0", "+0", "-0"):
        return datetime.timedelta(0)
    if not _DURATION_RE.fullmatch(text):
        return None
    micros = 0.0
    for number, unit in _DURATION_PART.findall(text):
        micros += float(number) * _UNIT_MICROS[unit]
    if text.startswith("-"):
        micros = -micros
    try:
        return datetime.timedelta(microseconds=round(micros))
    except OverflowError:
        return None


def glob_match(value: str, pattern: str) -> bool:
    """Mixer `match(str, pattern)`: trailing `*` = prefix match, leading `*` = suffix match."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is reported through EvaluationError, not stderr


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> re2._Regexp:
    """An RE2 program for `pattern`; invalid patterns raise EvaluationError."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as err:
        raise EvaluationError(f"invalid regular expression {pattern!r}: {_text(err)}") from None


def _text(err: Exception) -> str:
    detail = err.args[0] if err.args else err
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


# google-re2's `search` builds a match object through a Python generator; a yes/no answer needs
# only its C++ `Match` on the UTF-8 text (measured in docs/benchmarks.md, third round, item 3).
# Both are looked up once, and a release without them gets the public API.
_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


def searcher(regex: re2._Regexp) -> Callable[[str], bool]:
    """``lambda text: regex.search(text) is not None``, in one C++ call where possible."""
    match = getattr(getattr(regex, "_regexp", None), "Match", None)

    def public(text: str) -> bool:
        return regex.search(text) is not None

    if match is None or _UNANCHORED is None:
        return public

    def search(text: str) -> bool:
        try:
            encoded = text.encode()
        except (AttributeError, UnicodeEncodeError):  # not a str, or a lone surrogate
            return public(text)
        spans: list[tuple[int, int]] = match(_UNANCHORED, encoded, 0, len(encoded))
        return spans[0][0] >= 0

    return search


@lru_cache(maxsize=1024)
def _pattern_searcher(pattern: str) -> Callable[[str], bool]:
    return searcher(compile_regex(pattern))


def regex_matches(pattern: str, value: str) -> bool:
    """Go `regexp.MatchString(pattern, value)`: an unanchored RE2 search."""
    search: Callable[[str], bool] = _pattern_searcher(pattern)
    return search(value)


def parse_ip(text: str) -> bytes:
    """Mixer `ip(s)`: 4 raw bytes for IPv4, 16 for IPv6."""
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        raise EvaluationError(f"could not convert {text!r} to IP_ADDRESS") from None


def _canonical_ip(value: bytes) -> bytes:
    if len(value) == 16 and value.startswith(_V4_MAPPED_PREFIX):
        return value[12:]
    return value


def ip_equal(a: object, b: object) -> bool:
    """Go `net.IP.Equal`: an IPv4 address equals its IPv4-mapped IPv6 form."""
    if isinstance(a, bytes) and isinstance(b, bytes):
        return a == b or _canonical_ip(a) == _canonical_ip(b)
    return False


def parse_timestamp(text: str) -> datetime.datetime:
    """Mixer `timestamp(s)`: RFC 3339 text to an aware UTC datetime (microsecond precision)."""
    found = _RFC3339_RE.fullmatch(text)
    if found is None:
        raise EvaluationError(f"could not convert {text!r} to TIMESTAMP. expected format: RFC3339")
    date, clock, fraction, zone = found.groups()
    iso = f"{date}T{clock}"
    if fraction:
        iso += "." + (fraction + "000000")[:6]
    iso += "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.datetime.fromisoformat(iso).astimezone(datetime.UTC)
    except ValueError:
        raise EvaluationError(f"could not convert {text!r} to TIMESTAMP: out of range") from None


def _dns_labels(name: str) -> list[str] | None:
    stripped = name[:-1] if name.endswith(".") else name
    if not stripped:
        return None
    try:
        ascii_name = stripped.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if len(ascii_name) > 253:
        return None
    labels = ascii_name.split(".")
    if all(_DNS_LABEL_RE.fullmatch(label) for label in labels):
        return labels
    return None


def dns_name(text: str) -> str:
    """Mixer `dnsName(s)`: validates a DNS name (labels of letters, digits, hyphens; lengths)."""
    if _dns_labels(text) is None:
        raise EvaluationError(f"error converting {text!r} to dns name")
    return text


def _dns_key(name: str) -> str:
    return name.lower()


def dns_equal(a: object, b: object) -> bool:
    """DNS names compare case-insensitively; a trailing dot on only one side is ignored."""
    if not (isinstance(a, str) and isinstance(b, str)) or not a or not b:
        return False
    n1, n2 = _dns_key(a), _dns_key(b)
    if n1.endswith(".") and not n2.endswith("."):
        n1 = n1[:-1]
    if n2.endswith(".") and not n1.endswith("."):
        n2 = n2[:-1]
    return n1 == n2


# RFC 5322 atext, the characters of an unquoted local part (Go's net/mail).
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")


def _unquote_local(quoted: str) -> str | None:
    """The content of a quoted-string local part (``"a b"``), or None when it is malformed."""
    out: list[str] = []
    i = 1
    while i < len(quoted) - 1:
        c = quoted[i]
        if c == "\\":
            i += 1
            if i >= len(quoted) - 1:
                return None
            c = quoted[i]
        elif c == '"' or not (c == " " or c == "\t" or 0x21 <= ord(c) <= 0x7E):
            return None
        out.append(c)
        i += 1
    return "".join(out)


def _is_dot_atom(text: str) -> bool:
    return bool(text) and all(part and set(part) <= _ATEXT for part in text.split("."))


def _email_parts(text: str) -> tuple[str, str] | None:
    """(local part, domain) of a bare address as Go's net/mail reads it: the local part a
    dot-atom or a quoted string (compared by its content, unquoted), the domain a DNS name."""
    local, at, domain = text.rpartition("@")
    if not at or not local or _dns_labels(domain) is None:
        return None
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        content = _unquote_local(local)
        return None if content is None else (content, domain)
    if "@" in local or any(c.isspace() or c in '<>,;"()' for c in local):
        return None
    return local, domain


def email(text: str) -> str:
    """Mixer `email(s)`: a bare address `local@domain` (no display name); returned unchanged."""
    if _email_parts(text) is None:
        raise EvaluationError(f"error converting {text!r} to e-mail")
    return text


def email_equal(a: object, b: object) -> bool:
    """Addresses are equal when the local parts match exactly and the domains as DNS names."""
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    p1, p2 = _email_parts(a), _email_parts(b)
    if p1 is None or p2 is None:
        return a == b
    return p1[0] == p2[0] and dns_equal(p1[1], p2[1])


def uri(text: str) -> str:
    """Mixer `uri(s)`: a non-empty URI without control characters or broken escapes."""
    if not text:
        raise EvaluationError("error converting string to uri: empty string")
    if text[0] == ":":
        raise EvaluationError(f"error converting string to uri {text!r}: missing protocol scheme")
    if _uri_scheme(text) is None and ":" in text.split("/", 1)[0]:
        raise EvaluationError(
            f"error converting string to uri {text!r}: first path segment in URL cannot contain"
            " colon"
        )
    if any(ord(c) < 0x20 or c == "\x7f" for c in text) or re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise EvaluationError(f"error converting string to uri {text!r}")
    try:
        urllib.parse.urlsplit(text).port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise EvaluationError(f"error converting string to uri {text!r}") from None
    return text


def _uri_scheme(text: str) -> str | None:
    """The scheme as Go's url.Parse finds it (a letter, then letters, digits, ``+-.``, then
    ``:``), or None when the text has none."""
    for i, c in enumerate(text):
        if c == ":":
            return text[:i] if i else None
        if not (c.isascii() and (c.isalpha() or (i and (c.isdigit() or c in "+-.")))):
            return None
    return None


def uri_equal(a: object, b: object) -> bool:
    """Schemes compare case-insensitively; http(s) hosts as DNS names; the rest exactly."""
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    try:
        u1, u2 = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
        if u1.scheme.lower() != u2.scheme.lower():
            return False
        if u1.scheme.lower() in ("http", "https"):
            if not dns_equal(u1.hostname or "", u2.hostname or "") and (u1.hostname or u2.hostname):
                return False
            if u1.port != u2.port:
                return False
            return (u1.username, u1.password, u1.path, u1.query, u1.fragment) == (
                u2.username,
                u2.password,
                u2.path,
                u2.query,
                u2.fragment,
            )
    except ValueError:
        return False
    return u1._replace(scheme="") == u2._replace(scheme="")


def empty_string_map() -> Mapping[str, str]:
    """Mixer `emptyStringMap()`."""
    return _EMPTY_MAP


_EMPTY_MAP = StringMap()
