"""Credentials out of text: the one helper that every log line, error message and debug page
that may hold a URL goes through."""

from __future__ import annotations

import re

# scheme://userinfo@ — the authority ends at '/', whitespace or a quote, so a URL inside a
# message, a repr or a JSON string is found as well as a bare one; userinfo runs to the last '@'
# of it, as URL parsers read it (a password may hold an unescaped '@').
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/'\"]*)@")


def _mask(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    # With a colon, what follows is the password and the user name stays readable; without one,
    # some clients (Redis among them) take the lone value as the password, so all of it goes.
    return f"{match.group(1)}{user}:***@" if colon else f"{match.group(1)}***@"


def mask_credentials(text: str) -> str:
    """`text` with the password of every ``scheme://user:password@…`` URL replaced by ``***``
    (and a lone ``scheme://secret@…`` userinfo as a whole); text without ``://…@`` is returned
    as it is."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_mask, text)
