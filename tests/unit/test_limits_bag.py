"""Bounds on attribute sets built from Envoy messages (`check_bag`)."""

from __future__ import annotations

import datetime

import pytest

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.limits import Limits, check_bag
from mixer.errors import LimitExceeded

LIMITS = Limits(max_attributes=10, max_string_length=8)


def test_within_the_bounds_passes() -> None:
    check_bag({"request.headers": StringMap({"a": "12345678"}), "p": "12345678"}, LIMITS, "w")


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"p": "123456789"}, "w: p is longer than the limit of 8"),
        ({"n": 10**12, "ip": bytes(9)}, "w: ip is longer than the limit of 8"),
        (
            {"request.headers": StringMap({"ok": "1", "x-long": "123456789"})},
            "w: request.headers['x-long'] is longer than the limit of 8",
        ),
        (
            {"request.headers": StringMap({"ok": "1", "k" * 9: "v"})},
            "w: request.headers['kkkkkkkkk'] is longer than the limit of 8",
        ),
        (
            {"m": StringMap({str(i): "v" for i in range(10)})},
            "w: 11 attributes and map entries is more than the limit of 10",
        ),
    ],
)
def test_crossing_a_bound_names_it(attributes: dict[str, object], message: str) -> None:
    with pytest.raises(LimitExceeded) as err:
        check_bag(attributes, LIMITS, "w")
    assert str(err.value) == message


def test_scalars_count_once_each_and_a_bag_is_read_like_a_dict() -> None:
    scalars = {
        "i": 123456789012,
        "f": 1.5,
        "b": True,
        "t": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        "d": datetime.timedelta(days=9),
    }
    check_bag(Bag({**scalars, "m": StringMap({str(i): "v" for i in range(4)})}), LIMITS, "w")
    with pytest.raises(LimitExceeded, match="11 attributes and map entries"):
        check_bag(Bag({**scalars, "m": StringMap({str(i): "v" for i in range(5)})}), LIMITS, "w")
