"""CEL timestamps and durations keep nanoseconds over CEL's range (years 1 to 9999), and stay
datetime/timedelta for everything outside the expression engine (`mixer.expr._cel_time`)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from mixer.expr import EvaluationError, compile
from mixer.expr._cel_time import Duration, Timestamp, duration_from_nanos, timestamp_from_nanos


def _eval(text: str, **activation: Any) -> Any:
    return compile(text, dialect="cel").evaluate(activation)


@pytest.mark.parametrize(
    "text",
    [
        "2009-02-13T23:31:30.123456789Z",
        "0001-01-01T00:00:00.000000001Z",
        "9999-12-31T23:59:59.999999999Z",
        "2000-01-01T00:00:00.0000005Z",
    ],
)
def test_timestamp_strings_keep_nanoseconds(text: str) -> None:
    assert _eval(f"string(timestamp('{text}'))") == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("duration('1.000000001s')", "1.000000001s"),
        ("duration('-1ns')", "-0.000000001s"),
        ("duration('1s') - duration('1ns')", "0.999999999s"),
        ("duration('-2s') + duration('1ns')", "-1.999999999s"),
        (
            "timestamp('2000-01-01T00:00:00.000000003Z') - timestamp('2000-01-01T00:00:00Z')",
            "0.000000003s",
        ),
    ],
)
def test_duration_arithmetic_keeps_nanoseconds(text: str, expected: str) -> None:
    assert _eval(f"string({text})") == expected


def test_adding_nanoseconds_to_a_timestamp() -> None:
    text = "string(timestamp('2000-01-01T00:00:00.999999999Z') + duration('1ns'))"
    assert _eval(text) == "2000-01-01T00:00:01Z"
    text = "string(timestamp('2000-01-01T00:00:00Z') - duration('1ns'))"
    assert _eval(text) == "1999-12-31T23:59:59.999999999Z"


@pytest.mark.parametrize(
    "text",
    [
        "timestamp('9999-12-31T23:59:59.999999999Z') + duration('1ns')",
        "timestamp('0001-01-01T00:00:00Z') - duration('1ns')",
    ],
)
def test_one_nanosecond_past_the_range_is_an_error(text: str) -> None:
    with pytest.raises(EvaluationError, match="timestamp out of range"):
        _eval(text)


@pytest.mark.parametrize(
    "text",
    [
        "timestamp('2000-01-01T00:00:00.000000001Z') > timestamp('2000-01-01T00:00:00Z')",
        "timestamp('2000-01-01T00:00:00Z') < timestamp('2000-01-01T00:00:00.000000001Z')",
        "timestamp('2000-01-01T00:00:00.000000001Z') != timestamp('2000-01-01T00:00:00Z')",
        "duration('1ns') > duration('0s')",
        "duration('-1ns') < duration('0s')",
        "duration('1000ns') == duration('1us')",
        "duration('1.5ns') == duration('1ns')",
    ],
)
def test_comparisons_count_nanoseconds(text: str) -> None:
    assert _eval(text) is True


def test_duration_accessors_truncate_toward_zero_counting_nanoseconds() -> None:
    assert _eval("(duration('-2s') + duration('1ns')).getSeconds()") == -1
    assert _eval("(duration('2s') - duration('1ns')).getMilliseconds()") == 999


def test_whole_microseconds_stay_plain_datetime_and_timedelta() -> None:
    ts = _eval("timestamp('2000-01-01T00:00:00.000001Z') + duration('1us')")
    assert type(ts) is datetime.datetime
    assert type(_eval("duration('1.5ns') + duration('999ns')")) is datetime.timedelta
    assert type(_eval("duration('2ns') - duration('1ns')")) is Duration


def test_a_nanosecond_value_is_a_datetime_floored_to_the_microsecond() -> None:
    ts = _eval("timestamp('2000-01-01T00:00:00.000001999Z')")
    assert isinstance(ts, datetime.datetime)
    assert ts.microsecond == 1
    assert ts.nanos == 999
    assert ts.isoformat() == "2000-01-01T00:00:00.000001+00:00"
    plain = datetime.datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=datetime.UTC)
    assert ts != plain and plain != ts and plain < ts and ts > plain
    d = _eval("duration('-1ns')")
    assert isinstance(d, datetime.timedelta)
    assert d == duration_from_nanos(-1)
    assert d < datetime.timedelta(0) and datetime.timedelta(0) > d
    assert d > datetime.timedelta(microseconds=-1) and datetime.timedelta(microseconds=-1) < d
    assert bool(d) and bool(duration_from_nanos(1))


def test_values_rebuilt_by_datetime_arithmetic_hash_like_plain_ones() -> None:
    # datetime's own operators on a subclass build it with nanos 0: equal to, and hashed like,
    # the plain value.
    moved = Timestamp(2000, 1, 1, tzinfo=datetime.UTC, nanos=5) + datetime.timedelta(0)
    plain = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    assert moved == plain and hash(moved) == hash(plain)
    assert timestamp_from_nanos(5) == Timestamp(1970, 1, 1, tzinfo=datetime.UTC, nanos=5)
    assert hash(timestamp_from_nanos(5)) == hash(
        Timestamp(1970, 1, 1, tzinfo=datetime.UTC, nanos=5)
    )


def test_values_datetime_builds_without_the_constructor_still_work() -> None:
    # `replace` makes the subclass without calling __new__: no nanos of its own.
    ts = timestamp_from_nanos(1_000_000_000_123)
    moved = ts.replace(year=2001)
    assert moved.nanos == 0
    assert moved == moved.replace() and hash(moved) == hash(
        datetime.datetime(*moved.timetuple()[:6], tzinfo=datetime.UTC)
    )
    assert moved.isoformat() == "2001-01-01T00:16:40+00:00"
