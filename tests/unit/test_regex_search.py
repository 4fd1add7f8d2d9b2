"""The fast RE2 search agrees with google-re2's public `search` (and Go's MatchString)."""

from __future__ import annotations

import itertools

import pytest
import re2

from mixer.expr import _externs as ext

PATTERNS = [
    "^/api/v[0-9]+/",
    "reviews",
    "",
    "x*",
    "^$",
    "é+",
    "[^a-z]",
    "(a|b)c$",
    "^ratings\\.default\\.svc\\.cluster\\.local$",
]
TEXTS = [
    "",
    "/api/v1/reviews",
    "/API/v1",
    "reviews-v2",
    "café",
    "éé",
    "bc",
    "zzz",
    "a\nbc",
    "\ud800",
]


@pytest.mark.parametrize(("pattern", "text"), list(itertools.product(PATTERNS, TEXTS)))
def test_fast_search_agrees_with_the_public_api(pattern: str, text: str) -> None:
    regex = re2.compile(pattern)
    expected = regex.search(text) is not None if text != "\ud800" else None
    if expected is None:
        # A lone surrogate cannot be UTF-8 encoded: both ways must fail the same way.
        with pytest.raises(UnicodeEncodeError):
            regex.search(text)
        with pytest.raises(UnicodeEncodeError):
            ext.searcher(regex)(text)
        return
    assert ext.searcher(regex)(text) is expected
    assert ext.regex_matches(pattern, text) is expected


def test_the_fast_path_is_in_use() -> None:
    """If google-re2 moves its internals, the public API takes over: this says so loudly."""
    regex = re2.compile("a")
    assert ext.searcher(regex).__name__ == "search"
