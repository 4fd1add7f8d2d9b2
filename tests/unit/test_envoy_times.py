"""Envoy's Timestamp and Duration fields as datetime and timedelta: our conversion against
protobuf's own (`ToDatetime`, `ToTimedelta`), which it replaces on the hot path."""

from __future__ import annotations

import datetime

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from mixer.attributes.envoy import _span, _time
from mixer.errors import BadRequest

FIRST, LAST = -62_135_596_800, 253_402_300_799  # 0001-01-01 and 9999-12-31T23:59:59
seconds = st.one_of(
    st.integers(FIRST - 2, FIRST + 2),
    st.integers(LAST - 2, LAST + 2),
    st.integers(FIRST, LAST),
    st.integers(-(2**63), 2**63 - 1),
)
nanos = st.one_of(
    st.integers(-2, 2), st.integers(999_999_997, 1_000_000_001), st.integers(-(2**31), 2**31 - 1)
)


@given(seconds, nanos)
def test_timestamps_convert_as_protobuf_does(s: int, n: int) -> None:
    ts = Timestamp(seconds=s, nanos=n)
    try:
        expected = ts.ToDatetime(tzinfo=datetime.UTC)
    except (ValueError, OverflowError):
        with pytest.raises(BadRequest, match=r"^here: invalid timestamp: seconds"):
            _time(ts, "here")
        return
    got = _time(ts, "here")
    assert got == expected
    assert got.tzinfo is datetime.UTC


duration_seconds = st.one_of(
    st.integers(-10, 10),
    st.integers(-(10**14), 10**14),
    st.integers(-(2**63), 2**63 - 1),
)


@given(duration_seconds, nanos)
def test_durations_convert_as_protobuf_does(s: int, n: int) -> None:
    d = Duration(seconds=s, nanos=n)
    try:
        expected = d.ToTimedelta()
    except OverflowError:
        with pytest.raises(BadRequest, match=r"^here: invalid duration"):
            _span(d, "here")
        return
    assert _span(d, "here") == expected


def test_negative_sub_microsecond_parts_round_toward_zero() -> None:
    assert _span(Duration(seconds=0, nanos=-1_500), "x") == datetime.timedelta(microseconds=-1)
    assert _span(Duration(seconds=-1, nanos=-999), "x") == datetime.timedelta(seconds=-1)
