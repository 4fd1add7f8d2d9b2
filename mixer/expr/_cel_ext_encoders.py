"""cel-go's encoders extension library (`ext.Encoders`): base64.encode and base64.decode.

`base64.decode` takes standard base64 with or without its `=` padding, as cel-go does, and
raises a CEL error for anything else; `base64.encode` never builds a string longer than
`_cel_runtime.MAX_VALUE_SIZE`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from mixer.expr import _cel_runtime as rt
from mixer.expr._cel_library import Library


def encode(data: Any) -> str:
    """`base64.encode(bytes)`: standard base64, padded."""
    if rt.kind(data) != "bytes":
        raise rt.no_overload("base64.encode", data)
    if (len(data) + 2) // 3 * 4 > rt.MAX_VALUE_SIZE:
        raise rt.CelError(f"string longer than {rt.MAX_VALUE_SIZE}")
    return base64.b64encode(bytes(data)).decode("ascii")


def decode(text: Any) -> bytes:
    """`base64.decode(string)`: the bytes of standard base64 text, padding optional."""
    if rt.kind(text) != "string":
        raise rt.no_overload("base64.decode", text)
    padded = text + "=" * (-len(text) % 4) if len(text) % 4 != 1 else text
    try:
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise rt.CelError(f"illegal base64 data: {text[:64]!r}") from None


LIBRARY = Library(
    name="encoders",
    summary="base64.encode and base64.decode",
    functions={"base64.encode": encode, "base64.decode": decode},
    results={"base64.encode": "string", "base64.decode": "bytes"},
)
