"""CheckEncoder: the joined parts parse as the response built field by field."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.api import check_encoding
from mixer.api.check_encoding import CheckEncoder
from mixer.attributes.dictionary import GLOBAL_WORDS
from mixer.attributes.tracking import References
from mixer.runtime.dispatcher import CheckOutcome, QuotaOutcome, RouteResult
from mixer.runtime.routing import HeaderOp, HeaderOperationResult
from mixer.v1 import mixer_pb2

NAMES = ["source.name", "request.headers", "destination.service.host", "x-custom", "user"]
KEYS = [None, "x-user", ":path", "zzz"]
DURATIONS = [
    datetime.timedelta(0),
    datetime.timedelta(seconds=60),
    datetime.timedelta(seconds=1, microseconds=500),
    datetime.timedelta(days=2, seconds=3),
]


def _duration(value: datetime.timedelta) -> dict[str, int]:
    return {"seconds": value.days * 86400 + value.seconds, "nanos": value.microseconds * 1000}


def _references(refs: References, global_word_count: int) -> mixer_pb2.ReferencedAttributes:
    """Built independently: a word among the first `global_word_count` global words has its
    (first) global index, any other gets -1, -2, ... in order of first use."""
    out = mixer_pb2.ReferencedAttributes()
    own: list[str] = []
    first: dict[str, int] = {}
    for i, w in enumerate(GLOBAL_WORDS):
        first.setdefault(w, i)

    def index(word: str) -> int:
        if first.get(word, global_word_count) < global_word_count:
            return first[word]
        if word not in own:
            own.append(word)
        return -1 - own.index(word)

    for (name, key), present in sorted(
        refs.reads.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        match = out.attribute_matches.add(
            name=index(name),
            condition=(
                mixer_pb2.ReferencedAttributes.EXACT
                if present
                else mixer_pb2.ReferencedAttributes.ABSENCE
            ),
        )
        if key is not None:
            match.map_key = index(key)
    out.words.extend(own)
    return out


def expected(outcome: CheckOutcome, global_word_count: int) -> mixer_pb2.CheckResponse:
    resp = mixer_pb2.CheckResponse()
    pre = resp.precondition
    pre.status.code = outcome.status_code
    pre.status.message = outcome.message
    pre.valid_duration.FromTimedelta(outcome.valid_duration)
    pre.valid_use_count = outcome.valid_use_count
    pre.referenced_attributes.CopyFrom(_references(outcome.references, global_word_count))
    route = outcome.route
    if (
        route.request_header_operations
        or route.response_header_operations
        or route.direct_response_code
        or route.direct_response_body
        or route.direct_response_headers
    ):
        rd = pre.route_directive
        rd.SetInParent()
        rd.direct_response_code = route.direct_response_code
        rd.direct_response_body = route.direct_response_body
        for op in route.request_header_operations:
            rd.request_header_operations.add(name=op.name, value=op.value, operation=op.operation)
        for op in route.response_header_operations:
            rd.response_header_operations.add(name=op.name, value=op.value, operation=op.operation)
        for name, value in route.direct_response_headers.items():
            rd.response_header_operations.add(name=name, value=value, operation=HeaderOp.REPLACE)
    for name, q in outcome.quotas.items():
        qr = resp.quotas[name]
        qr.granted_amount = q.granted
        qr.valid_duration.FromTimedelta(q.valid_duration)
        qr.status.code = q.status_code
        qr.status.message = q.message
        qr.referenced_attributes.CopyFrom(_references(q.references, global_word_count))
    return resp


refs_st = st.dictionaries(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(KEYS)), st.booleans(), max_size=6
).map(References)
ops_st = st.lists(
    st.builds(
        HeaderOperationResult,
        st.sampled_from(["x-a", "x-b"]),
        st.sampled_from(["", "v", "ünï"]),
        st.sampled_from(list(HeaderOp)),
    ),
    max_size=3,
)
route_st = st.one_of(
    st.builds(RouteResult),
    st.builds(RouteResult, ops_st, ops_st),
    st.builds(
        RouteResult,
        direct_response_code=st.sampled_from([0, 403, 429]),
        direct_response_body=st.sampled_from(["", "denied"]),
        direct_response_headers=st.dictionaries(st.sampled_from(["a", "b"]), st.just("v")),
    ),
)
quota_st = st.builds(
    QuotaOutcome,
    st.integers(0, 5),
    st.sampled_from(DURATIONS),
    st.sampled_from([0, 8, 13]),
    st.sampled_from(["", "exhausted"]),
    references=refs_st,
)
outcome_st = st.builds(
    CheckOutcome,
    st.sampled_from([0, 7, 8]),
    st.sampled_from(["", "denier:no", "ünïcode"]),
    st.sampled_from(DURATIONS),
    st.integers(0, 10_000),
    refs_st,
    route_st,
    st.dictionaries(st.sampled_from(["requestcount", "rq2", "q"]), quota_st, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(outcome_st, min_size=1, max_size=4), st.sampled_from([0, 5, len(GLOBAL_WORDS)]))
def test_parts_joined_parse_as_the_whole_response(outcomes: list[CheckOutcome], words: int) -> None:
    encoder = CheckEncoder()  # one encoder for several outcomes: remembered parts are reused
    for outcome in outcomes * 2:
        got = mixer_pb2.CheckResponse.FromString(encoder.encode(outcome, words))
        assert got == expected(outcome, words)


def test_the_same_answer_is_the_same_bytes_and_other_answers_are_not() -> None:
    encoder = CheckEncoder()
    refs = References({("source.name", None): True})
    allowed = CheckOutcome(references=refs)
    denied = CheckOutcome(status_code=7, message="no", references=refs)
    first = encoder.encode(allowed, 10)
    assert encoder.encode(CheckOutcome(references=References(dict(refs.reads))), 10) == first
    assert encoder.encode(denied, 10) != first
    # The dictionary size changes how words are indexed: not the same encoding.
    assert encoder.encode(allowed, 0) != first


def test_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check_encoding, "MAX_ENTRIES", 4)
    encoder = CheckEncoder()
    for i in range(50):
        ops = [HeaderOperationResult("x-user", f"user{i}", HeaderOp.REPLACE)]
        outcome = CheckOutcome(
            message=f"m{i}",
            route=RouteResult(ops),
            quotas={"q": QuotaOutcome(i, DURATIONS[1])},
        )
        got = mixer_pb2.CheckResponse.FromString(encoder.encode(outcome, 0))
        assert got == expected(outcome, 0)
    for table in (encoder._preconditions, encoder._routes, encoder._quotas, encoder._references):
        assert len(table.parts) <= 4
