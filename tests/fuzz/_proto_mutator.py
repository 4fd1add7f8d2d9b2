"""A structure-aware mutator for the protobuf harnesses (decoder, envoy).

libFuzzer mutates bytes, and protobuf parsing is native code (upb) that atheris cannot instrument,
so byte flips mostly produce messages that fail to parse or differ only in ways the parser hides.
This mutator parses the input (a selector byte, then a message of the type the selector picks),
changes a field the way a hostile client would (boundary integers, NaN, huge strings, new map
entries, extra repeated elements, cleared sub-messages, timestamps at the edge of what Python's
datetime can hold) and serializes it again. `fuzz_main` alternates it with libFuzzer's own byte
mutations; the suite uses it through `mutations(..., structural=...)`.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

_FD = FieldDescriptor
# The stubs type descriptors' fields as a union of the upb and pure-Python classes, which differ.
_Field = Any
_INT_RANGES = {
    _FD.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.CPPTYPE_ENUM: (-(2**31), 2**31 - 1),
    _FD.CPPTYPE_UINT32: (0, 2**32 - 1),
    _FD.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.CPPTYPE_UINT64: (0, 2**64 - 1),
}
# Boundaries of int types, of Timestamp/Duration validity, of Python's datetime and timedelta.
INTERESTING_INTS = (
    0, 1, -1, 2, 7, 100, 255, 256, 65535, 65536, 999_999_999, 1_000_000_000, -999_999_999,
    2**31 - 1, -(2**31), 2**32 - 1, 2**53, 2**62, 2**63 - 1, -(2**63),
    253_402_300_799, 253_402_300_800, -62_135_596_800, -62_135_596_801,
    315_576_000_000, 315_576_000_001, 86_399_999_999_999, 86_400_000_000_000,
)  # fmt: skip
INTERESTING_FLOATS = (0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 1e308, 5e-324, -1e-300)
INTERESTING_STRINGS = (
    "", "a", "0", "-1", "\x00", "\u00e9", "\U0010ffff", "x" * 300,
    "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "[::1]:80", "host:8080", "::", "1.2.3.4.5",
    "source.ip", "request.headers", "destination.service.host", "context.reporter.kind",
    "x-request-id", "content-type", "application/grpc", "grpc-status", "user-agent",
    "outbound|9080|v1|reviews.default.svc.cluster.local", "inbound|||", "istio.outbound_http",
    "/p?a=1&a=2&&=x#f", "?", "#", "spiffe://td/ns/a/sa/b",
)  # fmt: skip
INTERESTING_BYTES = (b"", b"\x00" * 4, b"\x7f\x00\x00\x01", b"\xff" * 16, b"\x01\x02\x03", b"A")
MAX_DEPTH = 12


def _clip(value: int, cpp_type: int) -> int:
    low, high = _INT_RANGES[cpp_type]
    return min(max(value, low), high)


def _scalar(field: _Field, rng: random.Random, old: Any = None) -> Any:
    """A new value for a scalar field (or map key/value), often a boundary value."""
    cpp = field.cpp_type
    if cpp in _INT_RANGES:
        if isinstance(old, int) and rng.random() < 0.3:
            value = old + rng.choice((-1, 1, -(2**32), 2**32, old, -old - 1))
        else:
            value = rng.choice(INTERESTING_INTS)
        return _clip(value, cpp)
    if cpp in (_FD.CPPTYPE_DOUBLE, _FD.CPPTYPE_FLOAT):
        return rng.choice(INTERESTING_FLOATS)
    if cpp == _FD.CPPTYPE_BOOL:
        return not old if isinstance(old, bool) else rng.random() < 0.5
    if field.type == _FD.TYPE_BYTES:
        return (
            rng.choice(INTERESTING_BYTES)
            if rng.random() < 0.7
            else rng.randbytes(rng.randint(0, 20))
        )
    if isinstance(old, str) and old and rng.random() < 0.4:
        at = rng.randint(0, len(old))
        return old[:at] + rng.choice(INTERESTING_STRINGS)[:40] + old[at:]
    return rng.choice(INTERESTING_STRINGS)


def _is_map(field: _Field) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def _sites(msg: Message, depth: int, out: list[tuple[Message, _Field]]) -> None:
    """Every (message, field) the mutator may change: all fields of every message present."""
    out.extend((msg, field) for field in msg.DESCRIPTOR.fields)
    if depth >= MAX_DEPTH:
        return
    for listed, value in msg.ListFields():
        field: _Field = listed
        if field.cpp_type != _FD.CPPTYPE_MESSAGE:
            continue
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            if value_field.cpp_type == _FD.CPPTYPE_MESSAGE:
                for item in value.values():
                    _sites(item, depth + 1, out)
        elif field.is_repeated:
            for item in value:
                _sites(item, depth + 1, out)
        else:
            _sites(value, depth + 1, out)


def _touch(msg: Message, rng: random.Random) -> None:
    """Make a new sub-message non-empty: set one of its scalar fields."""
    scalars = [f for f in msg.DESCRIPTOR.fields if f.cpp_type != _FD.CPPTYPE_MESSAGE]
    if scalars:
        field = rng.choice(scalars)
        if field.is_repeated:
            getattr(msg, field.name).append(_scalar(field, rng))
        else:
            setattr(msg, field.name, _scalar(field, rng))


def _mutate_map(msg: Message, field: _Field, rng: random.Random) -> None:
    entries = getattr(msg, field.name)
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    keys = list(entries.keys())
    if keys and rng.random() < 0.25:
        del entries[rng.choice(keys)]
        return
    key = rng.choice(keys) if keys and rng.random() < 0.5 else _scalar(key_field, rng)
    if value_field.cpp_type == _FD.CPPTYPE_MESSAGE:
        _touch(entries[key], rng)
    else:
        entries[key] = _scalar(value_field, rng, entries.get(key))


def _mutate_repeated(msg: Message, field: _Field, rng: random.Random) -> None:
    items = getattr(msg, field.name)
    if len(items) and rng.random() < 0.3:
        del items[rng.randrange(len(items))]
    elif field.cpp_type == _FD.CPPTYPE_MESSAGE:
        if len(items) and rng.random() < 0.5:
            items.add().CopyFrom(items[rng.randrange(len(items))])
        else:
            _touch(items.add(), rng)
    elif len(items) and rng.random() < 0.5:
        at = rng.randrange(len(items))
        items[at] = _scalar(field, rng, items[at])
    else:
        items.append(_scalar(field, rng))


def mutate_message(msg: Message, rng: random.Random) -> None:
    """Apply one structural mutation somewhere in `msg`."""
    sites: list[tuple[Message, _Field]] = []
    _sites(msg, 0, sites)
    if not sites:
        return
    parent, field = rng.choice(sites)
    if _is_map(field):
        _mutate_map(parent, field, rng)
    elif field.is_repeated:
        _mutate_repeated(parent, field, rng)
    elif field.cpp_type == _FD.CPPTYPE_MESSAGE:
        if parent.HasField(field.name) and rng.random() < 0.3:
            parent.ClearField(field.name)
        else:
            _touch(getattr(parent, field.name), rng)
            getattr(parent, field.name).SetInParent()
    else:
        # A closed (proto2) enum refuses unknown numbers; skip such a mutation.
        with contextlib.suppress(ValueError):
            setattr(parent, field.name, _scalar(field, rng, getattr(parent, field.name)))


class ProtoMutator:
    """Structural mutations of ``selector byte + serialized message`` inputs."""

    def __init__(self, messages: Sequence[type[Message]]) -> None:
        self.messages = tuple(messages)

    def __call__(self, data: bytes, rng: random.Random) -> bytes | None:
        """A mutated input, or None when `data` does not parse (use a byte mutation then)."""
        selector = data[0] if data else rng.randrange(len(self.messages))
        cls = self.messages[selector % len(self.messages)]
        try:
            msg = cls.FromString(data[1:])
        except DecodeError:
            return None
        for _ in range(rng.randint(1, 3)):
            mutate_message(msg, rng)
        return bytes([selector]) + msg.SerializeToString()
