"""Fuzz the Mixer v1 compressed-attribute decoder with arbitrary bytes.

Input: one selector byte, then a serialized message. Selector % 3 picks the message and the path
the Mixer v1 servicer takes with it:

0. ``CompressedAttributes``: `check_compressed` (small and default limits), then `decode`;
1. ``mixer.v1.CheckRequest``: `check_word_count`, `check_compressed`, `decode`;
2. ``mixer.v1.ReportRequest``: `check_compressed` per entry, then `decode_report`.

Acceptable outcomes: success, protobuf's ``DecodeError`` and `mixer.errors.MixerError` (BadRequest,
DictionaryMismatch, LimitExceeded). Anything else is a crash. A decoded bag must hold only the
documented value types (IP attributes 4 or 16 bytes) and survive `encode` -> `decode` unchanged.

Long run: ``.venv/bin/python tests/fuzz/fuzz_decoder.py -max_total_time=600``
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from google.protobuf.message import DecodeError

from mixer.attributes.bag import Bag
from mixer.attributes.compressed import (
    DEFAULT_IP_ATTRIBUTES,
    check_word_count,
    decode,
    decode_report,
    encode,
)
from mixer.attributes.limits import DEFAULT_LIMITS, Limits, check_compressed
from mixer.errors import LimitExceeded, MixerError
from mixer.v1 import attributes_pb2, mixer_pb2
from tests.fuzz._harness import check_bag, fuzz_main, same
from tests.fuzz._proto_mutator import ProtoMutator

NAME = "decoder"
# The message types, indexed by the selector byte modulo their number.
MESSAGES = (attributes_pb2.CompressedAttributes, mixer_pb2.CheckRequest, mixer_pb2.ReportRequest)
STRUCTURAL = ProtoMutator(MESSAGES)
ACCEPTED = (DecodeError, MixerError)
# Tight limits so that short inputs also reach every branch of check_compressed.
SMALL_LIMITS = Limits(max_attributes=8, max_words=4, max_string_length=16)


def _checked(msg: attributes_pb2.CompressedAttributes, where: str) -> None:
    with contextlib.suppress(LimitExceeded):
        check_compressed(msg, SMALL_LIMITS, where)
    check_compressed(msg, DEFAULT_LIMITS, where)


def _verify(bag: Bag) -> None:
    check_bag(bag, DEFAULT_IP_ATTRIBUTES)
    again = decode(encode(bag))
    assert same(dict(again), dict(bag)), (dict(bag), dict(again))


def TestOneInput(data: bytes) -> None:
    """One fuzz input: see the module docstring for the format and the oracle."""
    if not data:
        return
    kind, payload = data[0] % 3, data[1:]
    try:
        if kind == 0:
            msg = attributes_pb2.CompressedAttributes.FromString(payload)
            _checked(msg, "attributes")
            bags = [decode(msg)]
        elif kind == 1:
            req = mixer_pb2.CheckRequest.FromString(payload)
            check_word_count(req.global_word_count)
            _checked(req.attributes, "attributes")
            bags = [decode(req.attributes)]
        else:
            report = mixer_pb2.ReportRequest.FromString(payload)
            for i, entry in enumerate(report.attributes):
                _checked(entry, f"attributes[{i}]")
            bags = decode_report(report)
    except ACCEPTED:
        return
    for bag in bags:
        _verify(bag)


if __name__ == "__main__":
    fuzz_main(TestOneInput, NAME, structural=STRUCTURAL)
