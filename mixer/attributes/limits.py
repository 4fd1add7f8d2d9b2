"""Bounds on what one request may carry, checked before any rule sees it."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mixer.errors import LimitExceeded
from mixer.v1 import attributes_pb2


@dataclass(frozen=True)
class Limits:
    """Per-request bounds (each has a `mixer serve` flag)."""

    max_attributes: int = 1024
    max_words: int = 4096
    max_string_length: int = 64 * 1024
    max_report_entries: int = 10_000
    max_als_entries: int = 10_000
    max_report_values: int = 100_000
    max_quotas: int = 64
    max_descriptors: int = 64
    max_descriptor_entries: int = 16
    max_descriptor_bytes: int = 1024


LIMIT_FLAGS: tuple[tuple[str, str], ...] = (
    ("max_attributes", "attributes plus map entries per bag"),
    ("max_words", "message words (and a Report's default_words) per message"),
    ("max_string_length", "longest string or bytes value (words included)"),
    ("max_report_entries", "entries per Report batch"),
    ("max_als_entries", "entries per access-log message"),
    ("max_report_values", "attribute values a Report expands to (all entries, DELTA included)"),
    ("max_quotas", "quota names per Check"),
    ("max_descriptors", "descriptors per rate-limit request"),
    ("max_descriptor_entries", "entries per rate-limit descriptor"),
    ("max_descriptor_bytes", "bytes per rate-limit descriptor key or value"),
)
"""Each `Limits` field with its `mixer serve` help text; the flag is the name with dashes."""


DEFAULT_LIMITS = Limits()


def _too_many(
    what: str, count: int, limit: int, where: str, flag: str = "request"
) -> LimitExceeded:
    return LimitExceeded(f"{where}: {count} {what} is more than the limit of {limit}", flag)


def check_compressed(
    msg: attributes_pb2.CompressedAttributes, limits: Limits, where: str = "attributes"
) -> None:
    """Refuse a CompressedAttributes message that crosses a bound."""
    if len(msg.words) > limits.max_words:
        raise _too_many("words", len(msg.words), limits.max_words, f"{where}.words", "max_words")
    count = (
        len(msg.strings) + len(msg.int64s) + len(msg.doubles) + len(msg.bools)
        + len(msg.timestamps) + len(msg.durations) + len(msg.bytes)
    )  # fmt: skip
    # Protobuf maps are read key by key: their items() and values() are Python-level views.
    maps = msg.string_maps
    for key in maps:
        count += 1 + len(maps[key].entries)
    if count > limits.max_attributes:
        raise _too_many(
            "attributes and map entries", count, limits.max_attributes, where, "max_attributes"
        )
    longest = limits.max_string_length
    words = msg.words
    # One C-level pass over the lengths; the offending index is looked for only on failure.
    if words and max(map(len, words)) > longest:
        for i, word in enumerate(words):
            if len(word) > longest:
                raise LimitExceeded(
                    f"{where}.words[{i}]: {len(word)} characters is more than the limit of "
                    f"{longest}",
                    "max_string_length",
                )
    raw_bytes = msg.bytes
    for index in raw_bytes:
        raw = raw_bytes[index]
        if len(raw) > longest:
            raise LimitExceeded(
                f"{where}.bytes[{index}]: {len(raw)} bytes is more than the limit of {longest}",
                "max_string_length",
            )


def check_words(words: Sequence[str], limits: Limits, where: str) -> None:
    """Refuse a word list (a Report's ``default_words``) over the word-count or string bound."""
    if len(words) > limits.max_words:
        raise _too_many("words", len(words), limits.max_words, where, "max_words")
    longest = limits.max_string_length
    if words and max(map(len, words)) > longest:
        for i, word in enumerate(words):
            if len(word) > longest:
                raise LimitExceeded(
                    f"{where}[{i}]: {len(word)} characters is more than the limit of {longest}",
                    "max_string_length",
                )


# Values with no length to bound, recognised by class before any ABC check.
_SCALARS = frozenset({int, float, bool, datetime.datetime, datetime.timedelta})
_TEXT = (str, bytes)


def check_bag(attributes: Mapping[str, object], limits: Limits, where: str) -> None:
    """Refuse an attribute set (built from an Envoy message) that crosses a bound."""
    count = len(attributes)
    longest = limits.max_string_length
    for name, value in attributes.items():
        if value.__class__ in _SCALARS:
            continue
        if isinstance(value, _TEXT):
            if len(value) > longest:
                raise LimitExceeded(
                    f"{where}: {name} is longer than the limit of {longest}", "max_string_length"
                )
        elif isinstance(value, Mapping):
            count += len(value)
            # One C-level pass over the lengths; the offending entry is looked for on failure.
            if value and (
                max(map(len, value.keys())) > longest
                or max(map(len, map(str, value.values()))) > longest
            ):
                for key, item in value.items():
                    if len(key) > longest or len(str(item)) > longest:
                        raise LimitExceeded(
                            f"{where}: {name}[{key[:40]!r}] is longer than the limit of {longest}",
                            "max_string_length",
                        )
    if count > limits.max_attributes:
        raise _too_many(
            "attributes and map entries", count, limits.max_attributes, where, "max_attributes"
        )
