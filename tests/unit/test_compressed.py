import collections
import datetime
import ipaddress

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.attributes.bag import StringMap
from mixer.attributes.compressed import (
    Encoder,
    check_word_count,
    decode,
    decode_entry,
    decode_report,
    decode_report_changes,
    encode,
    encode_report,
)
from mixer.attributes.dictionary import GLOBAL_INDEX
from mixer.attributes.lazy import LazyReportRequest
from mixer.attributes.limits import Limits, check_compressed, check_words
from mixer.errors import BadRequest, DictionaryMismatch, LimitExceeded, MalformedMessage
from mixer.v1 import attributes_pb2, mixer_pb2

UTC = datetime.UTC


def sample() -> dict[str, object]:
    return {
        "destination.service": "a.b.svc.cluster.local",
        "request.size": 1234,
        "request.headers": {":path": "/x", "x-custom": "yes"},
        "connection.mtls": True,
        "source.ip": ipaddress.ip_address("10.0.0.1").packed,
        "destination.ip": ipaddress.ip_address("2001:db8::1").packed,
        "request.time": datetime.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "response.duration": datetime.timedelta(milliseconds=15),
        "rate": 0.25,
    }


def test_round_trip_of_every_typed_map() -> None:
    bag = decode(encode(sample()))
    expected = sample()
    expected["request.headers"] = StringMap({":path": "/x", "x-custom": "yes"})
    assert dict(bag) == expected


def test_global_words_are_used_only_below_the_peers_count() -> None:
    msg = encode(
        {"source.ip": b"\x01\x02\x03\x04", "context.proxy_version": "1.4"},
        encoder=Encoder(global_word_count=111),
    )
    # source.ip is word 0 (< 111); context.proxy_version is word 221 (>= 111) so goes local.
    assert 0 in msg.bytes
    assert "context.proxy_version" in msg.words
    assert GLOBAL_INDEX["context.proxy_version"] == 221
    assert decode(msg)["context.proxy_version"] == "1.4"


def test_negative_index_is_a_message_word_slot() -> None:
    msg = attributes_pb2.CompressedAttributes(words=["my.attr", "value"])
    msg.strings[-1] = -2
    assert dict(decode(msg)) == {"my.attr": "value"}


def test_index_outside_global_dictionary_is_rejected() -> None:
    msg = attributes_pb2.CompressedAttributes()
    msg.int64s[500] = 1
    with pytest.raises(
        BadRequest,
        match=r"attributes\.int64s: word index 500 is outside the global dictionary \(222 words\)",
    ):
        decode(msg)


def test_index_outside_message_words_is_rejected() -> None:
    msg = attributes_pb2.CompressedAttributes(words=["a"])
    msg.bools[-3] = True
    with pytest.raises(
        BadRequest,
        match=r"attributes\.bools: word index -3 \(message word slot 2\) is outside the "
        r"message's 1 words",
    ):
        decode(msg)


def test_string_value_index_that_does_not_resolve_is_rejected() -> None:
    msg = attributes_pb2.CompressedAttributes()
    msg.strings[0] = -7
    with pytest.raises(BadRequest, match=r"strings\[source\.ip\]: word index -7"):
        decode(msg)


def test_word_inside_string_map_that_does_not_resolve_is_rejected() -> None:
    msg = attributes_pb2.CompressedAttributes()
    msg.string_maps[15].entries[-1] = 90
    with pytest.raises(BadRequest, match=r"string_maps\[request\.headers\] key: word index -1"):
        decode(msg)


def test_name_in_two_typed_maps_is_rejected() -> None:
    msg = attributes_pb2.CompressedAttributes()
    msg.strings[17] = 90
    msg.int64s[17] = 3
    with pytest.raises(
        BadRequest, match=r"'request\.path' \(word index 17\) appears in both strings and int64s"
    ):
        decode(msg)


@pytest.mark.parametrize("length", [0, 3, 5, 15, 17])
def test_ip_address_of_wrong_length_is_rejected(length: int) -> None:
    msg = attributes_pb2.CompressedAttributes()
    msg.bytes[0] = b"\x01" * length
    with pytest.raises(
        BadRequest, match=rf"bytes\[source\.ip\]: an IP address must be 4 or 16 bytes, got {length}"
    ):
        decode(msg)


def test_newer_dictionary_is_refused_with_istios_message() -> None:
    with pytest.raises(DictionaryMismatch) as err:
        check_word_count(500)
    assert str(err.value) == (
        "inconsistent global dictionary versions used: mixer knows 222 words, caller knows 500"
    )
    check_word_count(222)
    check_word_count(111)


def test_report_delta_encoding_applies_each_entry_on_top_of_the_previous() -> None:
    entries = [
        {"destination.service": "a", "response.code": 200, "request.path": "/1"},
        {"destination.service": "a", "response.code": 503, "request.path": "/1"},
        {"destination.service": "b", "response.code": 503, "request.path": "/2"},
    ]
    req = encode_report(entries, delta=True)
    # the second entry carries only what changed
    assert len(req.attributes[1].int64s) == 1 and len(req.attributes[1].strings) == 0
    bags = decode_report(req)
    assert [dict(b) for b in bags] == entries


def test_report_independent_encoding_keeps_entries_apart() -> None:
    entries = [{"a.b": "x", "c.d": 1}, {"e.f": "y"}]
    req = encode_report(entries, delta=False)
    assert req.repeated_attributes_semantics == mixer_pb2.ReportRequest.INDEPENDENT_ENCODING
    assert [dict(b) for b in decode_report(req)] == entries


def test_report_entry_words_override_default_words() -> None:
    req = mixer_pb2.ReportRequest(default_words=["shared.attr", "v1"])
    first = req.attributes.add()
    first.strings[-1] = -2
    second = req.attributes.add(words=["own.attr", "v2"])
    second.strings[-1] = -2
    req.repeated_attributes_semantics = mixer_pb2.ReportRequest.INDEPENDENT_ENCODING
    bags = decode_report(req)
    assert dict(bags[0]) == {"shared.attr": "v1"}
    assert dict(bags[1]) == {"own.attr": "v2"}


def test_report_errors_name_the_entry() -> None:
    req = mixer_pb2.ReportRequest()
    req.attributes.add()
    req.attributes.add().int64s[999] = 1
    with pytest.raises(BadRequest, match=r"^attributes\[1\]\.int64s: word index 999"):
        decode_report(req)


_names = st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6}){0,2}", fullmatch=True)
_text = st.text(max_size=12)
_values = st.one_of(
    _text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=8),
    st.datetimes(
        min_value=datetime.datetime(1971, 1, 1),
        max_value=datetime.datetime(2200, 1, 1),
        timezones=st.just(UTC),
    ),
    st.timedeltas(
        min_value=datetime.timedelta(days=-1000), max_value=datetime.timedelta(days=1000)
    ),
    st.dictionaries(_text, _text, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(attrs=st.dictionaries(_names, _values, max_size=12), word_count=st.integers(0, 222))
def test_random_bags_round_trip(attrs: dict[str, object], word_count: int) -> None:
    msg = encode(attrs, encoder=Encoder(word_count))
    wire = attributes_pb2.CompressedAttributes.FromString(msg.SerializeToString())
    decoded = decode(wire, ip_attributes=frozenset())
    assert dict(decoded) == attrs
    for index in list(wire.strings) + list(wire.int64s):
        assert index < word_count


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(st.dictionaries(_names, _values, max_size=6), min_size=1, max_size=5))
def test_random_report_batches_round_trip_independently(batch: list[dict[str, object]]) -> None:
    req = mixer_pb2.ReportRequest.FromString(encode_report(batch).SerializeToString())
    assert [dict(b) for b in decode_report(req, ip_attributes=frozenset())] == batch


def test_report_decodes_only_the_wanted_attributes_with_their_full_values() -> None:
    entries = [
        sample(),
        {**sample(), "request.size": 99, "request.headers": {"x-custom": "no"}},
        {**sample(), "destination.service": "c.d.svc.cluster.local"},
    ]
    req = encode_report(entries, delta=True)
    wanted = frozenset({"request.size", "request.headers", "response.duration", "absent.attr"})
    bags = decode_report(req, wanted=wanted)
    assert [dict(b) for b in bags] == [
        {k: v for k, v in e.items() if k in wanted} for e in decode_report(req)
    ]
    assert bags[1]["request.headers"] == {"x-custom": "no"}
    assert set(decode_report(req, wanted=frozenset())[0]) == set()


def test_unwanted_attributes_still_have_their_names_checked() -> None:
    req = mixer_pb2.ReportRequest()
    req.attributes.add().strings[999] = 1
    with pytest.raises(BadRequest, match=r"^attributes\[0\]\.strings: word index 999"):
        decode_report(req, wanted=frozenset({"request.path"}))
    # A name in two typed maps is refused whether or not it is wanted.
    twice = mixer_pb2.ReportRequest()
    entry = twice.attributes.add()
    entry.strings[GLOBAL_INDEX["request.path"]] = GLOBAL_INDEX["request.path"]
    entry.int64s[GLOBAL_INDEX["request.path"]] = 1
    with pytest.raises(BadRequest, match="appears in both"):
        decode_report(twice, wanted=frozenset())
    # The value of an attribute nobody reads is not looked at.
    lenient = mixer_pb2.ReportRequest()
    lenient.attributes.add().strings[GLOBAL_INDEX["request.path"]] = 999
    assert dict(decode_report(lenient, wanted=frozenset())[0]) == {}
    with pytest.raises(BadRequest, match="word index 999"):
        decode_report(lenient, wanted=frozenset({"request.path"}))


@settings(max_examples=200, deadline=None)
@given(
    batch=st.lists(st.dictionaries(_names, _values, max_size=8), min_size=1, max_size=5),
    keep=st.sets(_names, max_size=6),
)
def test_random_reports_decode_the_wanted_subset(
    batch: list[dict[str, object]], keep: set[str]
) -> None:
    req = encode_report(batch, delta=False)
    wanted = frozenset(keep | {name for attrs in batch[:1] for name in list(attrs)[:2]})
    full = decode_report(req)
    part = decode_report(req, wanted=wanted)
    assert [dict(b) for b in part] == [{k: v for k, v in b.items() if k in wanted} for b in full]


@settings(max_examples=200, deadline=None)
@given(
    batch=st.lists(st.dictionaries(_names, _values, max_size=8), min_size=1, max_size=5),
    max_attributes=st.integers(1, 12),
    max_string_length=st.integers(1, 10),
    keep=st.sets(_names, max_size=4),
    wanted_only=st.booleans(),
)
def test_report_limits_counted_while_decoding_agree_with_check_compressed(
    batch: list[dict[str, object]],
    max_attributes: int,
    max_string_length: int,
    keep: set[str],
    wanted_only: bool,
) -> None:
    """Limits checked during a (partial) decode say what `check_compressed` says, entry by entry."""
    limits = Limits(max_attributes=max_attributes, max_string_length=max_string_length)
    req = encode_report(batch, delta=False)
    expected: str | None = None
    # The batch's default_words come first, under the same bounds as a message's own words.
    try:
        check_words(req.default_words, limits, "default_words")
    except LimitExceeded as exc:
        expected = str(exc)
    for i, entry in enumerate(req.attributes):
        if expected is not None:
            break
        try:
            check_compressed(entry, limits, f"attributes[{i}]")
        except LimitExceeded as exc:
            expected = str(exc)
            break
    wanted = frozenset(keep) if wanted_only else None
    if expected is None:
        decode_report(req, wanted=wanted, limits=limits, ip_attributes=frozenset())
    else:
        with pytest.raises(LimitExceeded) as raised:
            decode_report(req, wanted=wanted, limits=limits, ip_attributes=frozenset())
        assert str(raised.value) == expected


@settings(max_examples=200, deadline=None)
@given(
    attrs=st.dictionaries(_names, _values, max_size=8),
    max_attributes=st.integers(1, 12),
    max_words=st.integers(0, 12),
    max_string_length=st.integers(1, 10),
)
def test_limits_on_a_message_with_its_own_words_agree_with_check_compressed(
    attrs: dict[str, object], max_attributes: int, max_words: int, max_string_length: int
) -> None:
    """A Check's attributes carry their own words: limits checked while decoding say what
    `check_compressed` says."""
    limits = Limits(
        max_attributes=max_attributes, max_words=max_words, max_string_length=max_string_length
    )
    msg = encode(attrs)
    try:
        check_compressed(msg, limits)
    except LimitExceeded as exc:
        with pytest.raises(LimitExceeded) as raised:
            decode(msg, limits=limits, ip_attributes=frozenset())
        assert str(raised.value) == str(exc)
    else:
        assert dict(decode(msg, limits=limits, ip_attributes=frozenset())) == dict(
            decode(msg, ip_attributes=frozenset())
        )


def test_report_limits_come_before_what_else_is_wrong_with_an_entry() -> None:
    req = mixer_pb2.ReportRequest()
    entry = req.attributes.add()
    for i in range(5):
        entry.int64s[i] = i
    entry.strings[999] = 1  # a word index outside both dictionaries, too
    with pytest.raises(LimitExceeded, match=r"^attributes\[0\]: 6 attributes and map entries"):
        decode_report(req, limits=Limits(max_attributes=5), wanted=frozenset())
    with pytest.raises(BadRequest, match="word index 999"):
        decode_report(req, limits=Limits(max_attributes=6), wanted=frozenset())


_INDEX = st.integers(-4, 6) | st.sampled_from([0, 1, 2, 3, 104, 105, 999, -9])


@settings(max_examples=300, deadline=None)
@given(
    strings=st.dictionaries(_INDEX, _INDEX, max_size=4),
    int64s=st.dictionaries(_INDEX, st.integers(-5, 5), max_size=3),
    raw=st.dictionaries(_INDEX, st.binary(max_size=20), max_size=3),
    maps=st.dictionaries(_INDEX, st.dictionaries(_INDEX, _INDEX, max_size=3), max_size=2),
    own_words=st.booleans(),
    keep=st.sets(st.sampled_from(["source.ip", "a", "b", "c", "request.size", "x"]), max_size=4),
    max_attributes=st.integers(1, 12),
)
def test_a_report_batch_decodes_as_its_entries_do_one_by_one(
    strings: dict[int, int],
    int64s: dict[int, int],
    raw: dict[int, bytes],
    maps: dict[int, dict[int, int]],
    own_words: bool,
    keep: set[str],
    max_attributes: int,
) -> None:
    """Malformed entries too (indexes outside both dictionaries, a name in two typed maps,
    IP addresses of the wrong length, bounds crossed): the batch decoder answers, or refuses
    with the message, that `decode_entry` gives for each entry."""
    req = mixer_pb2.ReportRequest(default_words=["a", "b", "c", "x"])
    entry = req.attributes.add()
    if own_words:
        entry.words.extend(["c", "a", "b", "x"])
    entry.strings.update(strings)
    entry.int64s.update(int64s)
    entry.bytes.update(raw)
    for key, entries in maps.items():
        entry.string_maps[key].entries.update(entries)
    limits = Limits(max_attributes=max_attributes, max_string_length=12)
    wanted = frozenset(keep)
    try:
        expected: object = decode_entry(
            entry,
            default_words=list(req.default_words),
            where="attributes[0]",
            wanted=wanted,
            limits=limits,
        )
    except (BadRequest, LimitExceeded) as exc:
        expected = (type(exc), str(exc))
    # As the server reads it too: string maps left as wire bytes until read (`lazy`).
    for message in (req, LazyReportRequest.FromString(req.SerializeToString())):
        try:
            got: object = decode_report_changes(message, wanted=wanted, limits=limits)[1][0]
        except (BadRequest, LimitExceeded) as exc:
            got = (type(exc), str(exc))
        assert got == expected


def test_string_maps_repeated_in_a_batch_decode_as_each_entry_does_alone() -> None:
    """The batch decoder shares one map between entries whose maps are the same on the wire;
    an entry with its own words, where the same indexes name other words, gets its own."""
    words = ["app", "reviews", "version", "v1", "ratings"]
    req = mixer_pb2.ReportRequest(default_words=words)
    contents = [{-1: -2, -3: -4}, {-1: -5, -3: -4}, {-1: -2, -3: -4}, {-1: -2, -3: -4}]
    for n, content in enumerate(contents):
        entry = req.attributes.add()
        if n == 3:
            entry.words.extend(["app", "details", "version", "v9"])
        entry.string_maps[GLOBAL_INDEX["source.labels"]].entries.update(content)
        entry.int64s[GLOBAL_INDEX["response.code"]] = 200 + n
    wanted = frozenset({"source.labels", "response.code"})
    limits = Limits()
    lazy = LazyReportRequest.FromString(req.SerializeToString())
    got, got_lazy = (decode_report_changes(r, wanted=wanted, limits=limits)[1] for r in (req, lazy))
    assert got_lazy == got
    assert got_lazy[0]["source.labels"] is got_lazy[2]["source.labels"]
    expected = [
        decode_entry(
            entry,
            default_words=words,
            where=f"attributes[{n}]",
            wanted=wanted,
            limits=limits,
        )
        for n, entry in enumerate(req.attributes)
    ]
    assert got == expected
    labels = [entry["source.labels"] for entry in got]
    assert labels[0] is labels[2]
    assert labels[1] == StringMap({"app": "ratings", "version": "v1"})
    assert labels[3] == StringMap({"app": "details", "version": "v9"})


def test_lazy_are_parsed_where_read_and_malformed_ones_named() -> None:
    """The server's Report type keeps string maps as bytes: a map a rule reads is parsed, and a
    malformed one is refused naming its entry; one that no rule reads is never parsed (the
    documented difference from the generated class, which refuses the whole request)."""
    req = mixer_pb2.ReportRequest()
    for code in (200, 503):
        entry = req.attributes.add()
        entry.int64s[GLOBAL_INDEX["response.code"]] = code
        entry.string_maps[GLOBAL_INDEX["request.headers"]].entries[GLOBAL_INDEX[":method"]] = (
            GLOBAL_INDEX["GET"]
        )
    wire = bytearray(req.SerializeToString())
    good = bytes(req.attributes[1].string_maps[GLOBAL_INDEX["request.headers"]].SerializeToString())
    at = wire.rindex(good)
    wire[at : at + len(good)] = b"\x0a\x7f" + good[2:]  # an entry longer than its map
    broken = bytes(wire)
    with pytest.raises(DecodeError):
        mixer_pb2.ReportRequest.FromString(broken)
    lazy = LazyReportRequest.FromString(broken)
    limits = Limits()
    unread = decode_report_changes(lazy, wanted=frozenset({"response.code"}), limits=limits)
    assert unread == (True, [{"response.code": 200}, {"response.code": 503}])
    with pytest.raises(MalformedMessage, match=r"^attributes\[1\]\.string_maps: cannot decode"):
        decode_report_changes(lazy, wanted=frozenset({"request.headers"}), limits=limits)
    fine = LazyReportRequest.FromString(req.SerializeToString())
    assert decode_report_changes(fine, wanted=frozenset({"request.headers"}), limits=limits) == (
        True,
        [{"request.headers": StringMap({":method": "GET"})}] * 2,
    )


@settings(max_examples=200, deadline=None)
@given(
    batch=st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), _text, max_size=4),
        min_size=1,
        max_size=8,
    ),
    delta=st.booleans(),
    keep=st.sets(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=5),
    budget=st.integers(0, 40),
    own_words=st.integers(-1, 7),
)
def test_report_expansion_is_refused_at_the_entry_that_crosses_the_budget(
    batch: list[dict[str, object]], delta: bool, keep: set[str], budget: int, own_words: int
) -> None:
    """A DELTA entry repeats every attribute before it; the batch is refused at the first
    entry whose values, added up as the bags expand, pass `max_report_values`, whatever
    `wanted` is and whether or not the entry takes the decoder's fast path (one with its own
    words does not)."""
    if delta:  # a DELTA batch never removes an attribute
        batch = [dict(collections.ChainMap(*reversed(batch[: i + 1]))) for i in range(len(batch))]
    req = encode_report(batch, delta=delta)
    if 0 <= own_words < len(req.attributes):
        # The same words (and one more), as the entry's own: the indexes keep their meaning.
        req.attributes[own_words].words.extend([*req.default_words, "pad"])
    for wanted in (frozenset(keep), None):
        changes = decode_report_changes(req, wanted=wanted, limits=Limits())[1]
        names: set[str] = set()
        expanded, crossing = 0, None
        for i, change in enumerate(changes):
            names.update(change)
            expanded += len(names) if delta else len(change)
            if expanded > budget:
                crossing = i
                break
        limits = Limits(max_report_values=budget)
        if crossing is None:
            assert decode_report_changes(req, wanted=wanted, limits=limits)[1] == changes
        else:
            with pytest.raises(LimitExceeded, match=rf"^attributes\[{crossing}\]: the report"):
                decode_report_changes(req, wanted=wanted, limits=limits)
