"""A minimal protobuf wire encoder/decoder written from the field numbers of Istio's protos.

It shares no code with our generated classes, so a test that talks to the server through it
checks that an Istio-era client, built from Istio's own definitions, is served unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 31)


def unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, payload: bytes) -> bytes:
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def map_sint32_sint32(number: int, key: int, value: int) -> bytes:
    entry = field_varint(1, zigzag(key)) + field_varint(2, zigzag(value))
    return field_bytes(number, entry)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of a message."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == 2:
            length, pos = read_varint(data, pos)
            yield number, wire_type, data[pos : pos + length]
            pos += length
        elif wire_type == 5:
            yield number, wire_type, data[pos : pos + 4]
            pos += 4
        elif wire_type == 1:
            yield number, wire_type, data[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def first(data: bytes, number: int) -> int | bytes | None:
    for n, _, value in fields(data):
        if n == number:
            return value
    return None
