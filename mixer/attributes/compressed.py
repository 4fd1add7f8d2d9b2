"""CompressedAttributes (the Mixer v1 transport form) <-> attribute bags.

Names and string values travel as word indexes: ``>= 0`` into the global dictionary,
``< 0`` into the message's own words (slot ``-index - 1``). Decoding rejects every malformed
input with a `BadRequest` naming the field and the index; nothing is silently dropped.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import DecodeError

from mixer.attributes.bag import Bag, StringMap, Value
from mixer.attributes.dictionary import GLOBAL_INDEX, GLOBAL_WORD_COUNT, GLOBAL_WORDS
from mixer.attributes.lazy import full_entry, is_lazy
from mixer.attributes.limits import Limits, check_compressed, check_words
from mixer.errors import BadRequest, DictionaryMismatch, LimitExceeded
from mixer.v1 import attributes_pb2, mixer_pb2

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# Attributes of type IP_ADDRESS in Istio's vocabulary; their bytes must be 4 or 16 long.
DEFAULT_IP_ATTRIBUTES: frozenset[str] = frozenset(
    {"source.ip", "destination.ip", "origin.ip", "target.ip"}
)


def check_word_count(global_word_count: int) -> None:
    """Refuse callers that use a newer dictionary than ours, as Mixer did."""
    if global_word_count > GLOBAL_WORD_COUNT:
        raise DictionaryMismatch(GLOBAL_WORD_COUNT, global_word_count)


class _Words:
    """Resolves word indexes against the global dictionary and one message's words."""

    __slots__ = ("_local", "_where")

    def __init__(self, local: Sequence[str], where: str) -> None:
        self._local = local
        self._where = where

    def word(self, index: int, field_name: str) -> str:
        if index >= 0:
            if index < GLOBAL_WORD_COUNT:
                return GLOBAL_WORDS[index]
            raise BadRequest(
                f"{self._where}.{field_name}: word index {index} is outside the global "
                f"dictionary ({GLOBAL_WORD_COUNT} words)"
            )
        slot = -index - 1
        if slot < len(self._local):
            return self._local[slot]
        raise BadRequest(
            f"{self._where}.{field_name}: word index {index} (message word slot {slot}) is "
            f"outside the message's {len(self._local)} words"
        )


def _timestamp(ts: timestamp_pb2.Timestamp, where: str) -> datetime.datetime:
    try:
        return _EPOCH + datetime.timedelta(0, ts.seconds, ts.nanos // 1000)
    except OverflowError:
        raise BadRequest(
            f"{where}: timestamp {ts.seconds}s is outside the years 1 to 9999"
        ) from None


def _duration(d: duration_pb2.Duration, where: str) -> datetime.timedelta:
    try:
        return datetime.timedelta(0, d.seconds, d.nanos // 1000)
    except OverflowError:
        raise BadRequest(f"{where}: duration {d.seconds}s is out of range") from None


def decode_into(
    data: dict[str, Value],
    msg: attributes_pb2.CompressedAttributes,
    *,
    default_words: Sequence[str] = (),
    where: str = "attributes",
    ip_attributes: frozenset[str] = DEFAULT_IP_ATTRIBUTES,
    wanted: frozenset[str] | None = None,
    limits: Limits | None = None,
) -> None:
    """Decode `msg` into `data`, overwriting attributes it already holds (delta encoding).

    As `decode_entry`; `data` is only updated when the whole message decodes.
    """
    data.update(
        decode_entry(
            msg,
            default_words=default_words,
            where=where,
            ip_attributes=ip_attributes,
            wanted=wanted,
            limits=limits,
        )
    )


def decode_entry(
    msg: attributes_pb2.CompressedAttributes,
    *,
    default_words: Sequence[str] = (),
    where: str = "attributes",
    ip_attributes: frozenset[str] = DEFAULT_IP_ATTRIBUTES,
    wanted: frozenset[str] | None = None,
    limits: Limits | None = None,
) -> dict[str, Value]:
    """The attributes of one CompressedAttributes message, in a new dict.

    A name present in two typed maps of the same message is an error. With `wanted`, only
    those attributes are decoded: the others' names are checked, their values are not read.
    With `limits`, a message crossing them raises LimitExceeded (as `check_compressed`, counted
    while decoding) before anything else is said about it.
    """
    words = msg.words
    if (
        limits is not None
        and len(words)
        and (len(words) > limits.max_words or max(map(len, words)) > limits.max_string_length)
    ):
        check_compressed(msg, limits, where)  # raises, naming the first bound crossed
    local = words if len(words) else default_words
    try:
        out = _decode_fast(msg, local, ip_attributes, wanted, limits)
        if out is not None:
            return out
    except (IndexError, OverflowError, ValueError):
        pass
    # Something is wrong with the message: decode it again, checking every step, so that the
    # error names the field and the index.
    if limits is not None:
        check_compressed(msg, limits, where)
    checked: dict[str, Value] = {}
    _decode_checked(checked, msg, default_words, where, ip_attributes)
    return checked


def _decode_fast(
    msg: attributes_pb2.CompressedAttributes,
    local: Sequence[str],
    ip_attributes: frozenset[str],
    wanted: frozenset[str] | None,
    limits: Limits | None,
) -> dict[str, Value] | None:
    """The common case, without per-word checks: the decoded attributes, or None (or an
    IndexError) on any doubt, crossing `limits` included.

    Index ``i >= 0`` is ``GLOBAL_WORDS[i]``; ``i < 0`` is ``local[~i]`` (``~i == -i - 1``); an
    index out of either list raises IndexError. Maps are read key by key (``m[k]``), which is
    cheaper on protobuf's map containers than ``items()``. A name in two typed maps shows as
    fewer decoded attributes than keys (skipped names are counted apart).
    """
    gw = GLOBAL_WORDS
    out: dict[str, Value] = {}
    skipped: list[str] = []
    strings = msg.strings
    if wanted is None:
        for k in strings:
            v = strings[k]
            out[gw[k] if k >= 0 else local[~k]] = gw[v] if v >= 0 else local[~v]
    else:
        for k in strings:
            name = gw[k] if k >= 0 else local[~k]
            if name in wanted:
                v = strings[k]
                out[name] = gw[v] if v >= 0 else local[~v]
            else:
                skipped.append(name)
    int64s, doubles, bools = msg.int64s, msg.doubles, msg.bools
    for typed in (int64s, doubles, bools):
        for k in typed:
            name = gw[k] if k >= 0 else local[~k]
            if wanted is None or name in wanted:
                out[name] = typed[k]
            else:
                skipped.append(name)
    timestamps = msg.timestamps
    for k in timestamps:
        name = gw[k] if k >= 0 else local[~k]
        if wanted is None or name in wanted:
            ts = timestamps[k]
            seconds, nanos = ts.seconds, ts.nanos
            out[name] = _EPOCH + datetime.timedelta(0, seconds, nanos // 1000)
        else:
            skipped.append(name)
    durations = msg.durations
    for k in durations:
        name = gw[k] if k >= 0 else local[~k]
        if wanted is None or name in wanted:
            dur = durations[k]
            out[name] = datetime.timedelta(0, dur.seconds, dur.nanos // 1000)
        else:
            skipped.append(name)
    longest = limits.max_string_length if limits is not None else -1
    raw_bytes = msg.bytes
    for k in raw_bytes:
        name = gw[k] if k >= 0 else local[~k]
        if wanted is None or name in wanted:
            raw = raw_bytes[k]
            if name in ip_attributes and len(raw) not in (4, 16):
                return None
            if len(raw) > longest >= 0:
                return None
            out[name] = bytes(raw)
        else:
            skipped.append(name)
            if longest >= 0 and len(raw_bytes[k]) > longest:
                return None
    entry_count = 0
    maps = msg.string_maps
    for k in maps:
        name = gw[k] if k >= 0 else local[~k]
        if wanted is not None and name not in wanted:
            skipped.append(name)
            if limits is not None:
                entry_count += len(maps[k].entries)
            continue
        entries = maps[k].entries
        entry_count += len(entries)
        decoded: dict[str, str] = {}
        for a in entries:
            b = entries[a]  # each container lookup costs a hash probe: once per entry
            decoded[gw[a] if a >= 0 else local[~a]] = gw[b] if b >= 0 else local[~b]
        out[name] = StringMap._adopt(decoded)
    keys = (
        len(strings) + len(int64s) + len(doubles) + len(bools) + len(timestamps)
        + len(durations) + len(raw_bytes) + len(maps)
    )  # fmt: skip
    if limits is not None and keys + entry_count > limits.max_attributes:
        return None
    if len(out) + (len(set(skipped)) if skipped else 0) != keys:
        return None
    return out


def _decode_checked(
    data: dict[str, Value],
    msg: attributes_pb2.CompressedAttributes,
    default_words: Sequence[str],
    where: str,
    ip_attributes: frozenset[str],
) -> None:
    words = _Words(msg.words if len(msg.words) else default_words, where)
    seen: dict[str, str] = {}

    def name_of(index: int, field_name: str) -> str:
        name = words.word(index, field_name)
        previous = seen.get(name)
        if previous is not None:
            raise BadRequest(
                f"{where}: attribute {name!r} (word index {index}) appears in both "
                f"{previous} and {field_name}"
            )
        seen[name] = field_name
        return name

    for index, value_index in msg.strings.items():
        name = name_of(index, "strings")
        data[name] = words.word(value_index, f"strings[{name}]")
    for index, i64 in msg.int64s.items():
        data[name_of(index, "int64s")] = i64
    for index, dbl in msg.doubles.items():
        data[name_of(index, "doubles")] = dbl
    for index, flag in msg.bools.items():
        data[name_of(index, "bools")] = flag
    for index, ts in msg.timestamps.items():
        name = name_of(index, "timestamps")
        data[name] = _timestamp(ts, f"{where}.timestamps[{name}]")
    for index, dur in msg.durations.items():
        name = name_of(index, "durations")
        data[name] = _duration(dur, f"{where}.durations[{name}]")
    for index, raw in msg.bytes.items():
        name = name_of(index, "bytes")
        if name in ip_attributes and len(raw) not in (4, 16):
            raise BadRequest(
                f"{where}.bytes[{name}]: an IP address must be 4 or 16 bytes, got {len(raw)}"
            )
        data[name] = bytes(raw)
    for index, smap in msg.string_maps.items():
        name = name_of(index, "string_maps")
        entries = {
            words.word(k, f"string_maps[{name}] key"): words.word(v, f"string_maps[{name}] value")
            for k, v in smap.entries.items()
        }
        data[name] = StringMap(entries)


def decode(
    msg: attributes_pb2.CompressedAttributes,
    *,
    default_words: Sequence[str] = (),
    where: str = "attributes",
    ip_attributes: frozenset[str] = DEFAULT_IP_ATTRIBUTES,
    limits: Limits | None = None,
) -> Bag:
    """Decode one CompressedAttributes message into a bag (`limits` as in `decode_into`)."""
    data: dict[str, Value] = {}
    decode_into(
        data,
        msg,
        default_words=default_words,
        where=where,
        ip_attributes=ip_attributes,
        limits=limits,
    )
    return Bag._adopt(data)


_SEEN_MAPS = 256  # distinct string maps one Report batch's decoding remembers


class _FastEntries:
    """`_decode_fast` for the entries of one Report batch (`default_words`, `wanted` and
    `limits` bound once): `decode` gives an entry's attributes, or None for the checked path
    (an entry with its own words, anything malformed, a bound crossed)."""

    __slots__ = ("decode",)

    def __init__(
        self,
        default_words: Sequence[str],
        ip_attributes: frozenset[str],
        wanted: frozenset[str],
        limits: Limits,
        raw_maps: bool = False,
    ) -> None:
        """`raw_maps`: the entries hold their string maps as wire bytes (`lazy`)."""
        gw = GLOBAL_WORDS
        local = default_words
        max_attributes = limits.max_attributes
        longest = limits.max_string_length
        adopt = StringMap._adopt
        parse_map = attributes_pb2.StringMap.FromString
        epoch = _EPOCH
        span = datetime.timedelta
        # The batch's string maps by their wire form: entries of one batch repeat their peers'
        # labels, and the words they index are the batch's. One immutable map is shared.
        seen_maps: dict[bytes, StringMap] = {}

        def string_map(entries: Mapping[int, int]) -> StringMap:
            decoded: dict[str, str] = {}
            for a in entries:
                b = entries[a]  # a container lookup costs a hash probe: once each
                decoded[gw[a] if a >= 0 else local[~a]] = gw[b] if b >= 0 else local[~b]
            return adopt(decoded)

        def decode(entry: attributes_pb2.CompressedAttributes) -> dict[str, Value] | None:
            # As `_decode_fast`, written out in one closure: a Report calls it per entry.
            if len(entry.words):
                return None
            out: dict[str, Value] = {}
            skipped: list[str] = []
            try:
                strings = entry.strings
                for k in strings:
                    name = gw[k] if k >= 0 else local[~k]
                    if name in wanted:
                        v = strings[k]
                        out[name] = gw[v] if v >= 0 else local[~v]
                    else:
                        skipped.append(name)
                keys = len(strings)
                for typed in (entry.int64s, entry.doubles, entry.bools):
                    for k in typed:
                        name = gw[k] if k >= 0 else local[~k]
                        if name in wanted:
                            out[name] = typed[k]
                        else:
                            skipped.append(name)
                    keys += len(typed)
                timestamps = entry.timestamps
                for k in timestamps:
                    name = gw[k] if k >= 0 else local[~k]
                    if name in wanted:
                        ts = timestamps[k]
                        # (days, seconds, microseconds) positionally: keywords double the
                        # constructor's cost.
                        out[name] = epoch + span(0, ts.seconds, ts.nanos // 1000)
                    else:
                        skipped.append(name)
                durations = entry.durations
                for k in durations:
                    name = gw[k] if k >= 0 else local[~k]
                    if name in wanted:
                        d = durations[k]
                        out[name] = span(0, d.seconds, d.nanos // 1000)
                    else:
                        skipped.append(name)
                raw_bytes = entry.bytes
                for k in raw_bytes:
                    name = gw[k] if k >= 0 else local[~k]
                    raw = raw_bytes[k]
                    if len(raw) > longest:
                        return None
                    if name in wanted:
                        if name in ip_attributes and len(raw) not in (4, 16):
                            return None
                        out[name] = bytes(raw)
                    else:
                        skipped.append(name)
                # Values: `StringMap` messages, or their wire bytes (`raw_maps`).
                maps: Mapping[int, Any] = entry.string_maps
                keys += len(timestamps) + len(durations) + len(raw_bytes) + len(maps)
                entry_count = 0
                for k in maps:
                    name = gw[k] if k >= 0 else local[~k]
                    if raw_maps:
                        wire = maps[k]
                        # A map entry takes two bytes at least: a bound on their number (an
                        # entry past `max_attributes` by it is decoded again, exactly).
                        entry_count += len(wire) >> 1
                        entries = None
                    else:
                        smap = maps[k]
                        entries = smap.entries
                        entry_count += len(entries)
                    if name in wanted:
                        if entries is not None:
                            wire = smap.SerializeToString()
                        found = seen_maps.get(wire)
                        if found is None:
                            found = string_map(
                                entries if entries is not None else parse_map(wire).entries
                            )
                            if len(seen_maps) < _SEEN_MAPS:
                                seen_maps[wire] = found
                        out[name] = found
                    else:
                        skipped.append(name)
            except (IndexError, OverflowError, ValueError, DecodeError):
                return None
            if keys + entry_count > max_attributes:
                return None
            if len(out) + (len(set(skipped)) if skipped else 0) != keys:
                return None
            return out

        self.decode = decode


def decode_report(
    req: mixer_pb2.ReportRequest,
    *,
    ip_attributes: frozenset[str] = DEFAULT_IP_ATTRIBUTES,
    wanted: frozenset[str] | None = None,
    limits: Limits | None = None,
) -> list[Bag]:
    """Decode a Report batch into one bag per entry, honouring the repeated-attributes semantics.

    With `wanted` (the names report rules may read), the other attributes are left out; with
    `limits`, an entry crossing them raises LimitExceeded.
    """
    delta, changes = decode_report_changes(
        req, ip_attributes=ip_attributes, wanted=wanted, limits=limits
    )
    if not delta:
        return [Bag._adopt(entry) for entry in changes]
    bags: list[Bag] = []
    current: dict[str, Value] = {}
    for entry in changes:
        current = {**current, **entry}
        bags.append(Bag._adopt(current))
    return bags


def decode_report_changes(
    req: mixer_pb2.ReportRequest,
    *,
    ip_attributes: frozenset[str] = DEFAULT_IP_ATTRIBUTES,
    wanted: frozenset[str] | None = None,
    limits: Limits | None = None,
) -> tuple[bool, list[dict[str, Value]]]:
    """A Report batch as it travels: whether it is DELTA-encoded, and each entry's attributes.

    A DELTA entry holds what changed from the entry before (applying the dicts in order gives
    every entry's bag, as `decode_report` does); an INDEPENDENT entry holds all of its own.
    The whole batch is decoded (and refused, if anything in it is malformed or crosses
    `limits`) before it is returned; `wanted` and `limits` as in `decode_report`. `req` may be a
    `lazy.LazyReportRequest`, whose string maps are parsed only where `wanted` reads them.
    """
    check_word_count(req.global_word_count)
    if limits is not None:
        check_words(req.default_words, limits, "default_words")
    default_words = list(req.default_words)
    delta = req.repeated_attributes_semantics == mixer_pb2.ReportRequest.DELTA_ENCODING
    changes: list[dict[str, Value]] = []
    names: set[str] = set()
    # A DELTA entry of two bytes repeats every attribute before it: the expansion, not the
    # message size, is what the batch costs, so it is bounded.
    budget = limits.max_report_values if limits is not None else -1
    expanded = 0
    entries = req.attributes
    # With `wanted`, an entry holds wanted names only (both decoders), so each bag expands to
    # that many values at most: a batch that cannot cross the budget so is not counted.
    counting = budget >= 0 and (wanted is None or len(entries) * len(wanted) > budget)
    raw_maps = len(entries) > 0 and is_lazy(entries[0])
    fast = (
        _FastEntries(default_words, ip_attributes, wanted, limits, raw_maps).decode
        if wanted is not None and limits is not None
        else None
    )
    for i, entry in enumerate(entries):
        out = fast(entry) if fast is not None else None
        if out is None:
            if raw_maps:
                entry = full_entry(entry, f"attributes[{i}]")
            out = decode_entry(
                entry,
                default_words=default_words,
                where=f"attributes[{i}]",
                ip_attributes=ip_attributes,
                wanted=wanted,
                limits=limits,
            )
        if counting:
            if delta:
                names.update(out)
                expanded += len(names)
            else:
                expanded += len(out)
            if expanded > budget:
                raise LimitExceeded(
                    f"attributes[{i}]: the report expands to more than the limit of {budget} "
                    "attribute values",
                    "max_report_values",
                )
        changes.append(out)
    return delta, changes


@dataclass
class Encoder:
    """Builds message-level word lists, using a global index only below the peer's word count."""

    global_word_count: int = GLOBAL_WORD_COUNT
    words: list[str] = field(default_factory=list)
    _local: dict[str, int] = field(default_factory=dict)

    def index(self, word: str) -> int:
        gi = GLOBAL_INDEX.get(word)
        if gi is not None and gi < self.global_word_count:
            return gi
        slot = self._local.get(word)
        if slot is None:
            slot = len(self.words)
            self.words.append(word)
            self._local[word] = slot
        return -(slot + 1)


def _to_timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    delta = value - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def _to_duration(value: datetime.timedelta) -> duration_pb2.Duration:
    micros = value // datetime.timedelta(microseconds=1)
    seconds, rem = divmod(abs(micros), 1_000_000)
    sign = -1 if micros < 0 else 1
    return duration_pb2.Duration(seconds=sign * seconds, nanos=sign * rem * 1000)


def encode(
    attributes: Mapping[str, object],
    *,
    encoder: Encoder | None = None,
    message_words: bool = True,
) -> attributes_pb2.CompressedAttributes:
    """Encode attributes for the wire.

    Python types choose the typed map: str, bool, int, float, bytes, datetime, timedelta,
    Mapping[str, str] (string map); ``ipaddress`` addresses travel as raw bytes. With
    ``message_words=False`` the caller puts ``encoder.words`` somewhere shared (a Report's
    ``default_words``) instead of into this message.
    """
    enc = encoder if encoder is not None else Encoder()
    msg = attributes_pb2.CompressedAttributes()
    for name, value in attributes.items():
        key = enc.index(name)
        if isinstance(value, bool):
            msg.bools[key] = value
        elif isinstance(value, int):
            msg.int64s[key] = value
        elif isinstance(value, float):
            msg.doubles[key] = value
        elif isinstance(value, str):
            msg.strings[key] = enc.index(value)
        elif isinstance(value, bytes):
            msg.bytes[key] = value
        elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            msg.bytes[key] = value.packed
        elif isinstance(value, datetime.datetime):
            msg.timestamps[key].CopyFrom(_to_timestamp(value))
        elif isinstance(value, datetime.timedelta):
            msg.durations[key].CopyFrom(_to_duration(value))
        elif isinstance(value, Mapping):
            entries = msg.string_maps[key].entries
            for k, v in value.items():
                entries[enc.index(str(k))] = enc.index(str(v))
        else:
            raise TypeError(f"attribute {name!r}: cannot encode a {type(value).__name__}")
    if message_words:
        msg.words.extend(enc.words)
    return msg


def encode_report(
    batches: Iterable[Mapping[str, object]],
    *,
    global_word_count: int = GLOBAL_WORD_COUNT,
    delta: bool = False,
) -> mixer_pb2.ReportRequest:
    """Encode report entries sharing one `default_words` list (as Istio's proxy batches them).

    With ``delta=True`` each entry carries only what changed from the previous one.
    """
    enc = Encoder(global_word_count)
    req = mixer_pb2.ReportRequest(global_word_count=global_word_count)
    req.repeated_attributes_semantics = (
        mixer_pb2.ReportRequest.DELTA_ENCODING
        if delta
        else mixer_pb2.ReportRequest.INDEPENDENT_ENCODING
    )
    previous: Mapping[str, object] = {}
    for attrs in batches:
        if delta:
            changed = {k: v for k, v in attrs.items() if k not in previous or previous[k] != v}
            missing = set(previous) - set(attrs)
            if missing:
                raise ValueError(f"delta encoding cannot remove attributes: {sorted(missing)}")
            req.attributes.append(encode(changed, encoder=enc, message_words=False))
        else:
            req.attributes.append(encode(attrs, encoder=enc, message_words=False))
        previous = attrs
    req.default_words.extend(enc.words)
    return req
