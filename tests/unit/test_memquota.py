"""memquota behaviour under a fake clock: Istio's rolling window, counters, fixed windows, token
buckets, best effort, overrides, dedup and bounded memory."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters import memquota
from adapters.base import INTERNAL, OK, RESOURCE_EXHAUSTED, Env, Instance, QuotaArgs, QuotaResult

NAME = "requestcount.instance.istio-system"


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock, **quota: Any) -> memquota.MemQuotaHandler:
    raw: dict[str, Any] = {"quotas": [{"name": NAME, **quota}]}
    if "minDeduplicationDuration" in quota:
        raw["minDeduplicationDuration"] = quota.pop("minDeduplicationDuration")
        raw["quotas"] = [{"name": NAME, **quota}]
    params = memquota.parse_params(raw)
    env = Env("mq.handler.istio-system", logging.getLogger("test"), CollectorRegistry(), clock)
    return memquota.build(params, env)


def inst(dims: Mapping[str, Any] | None = None, name: str = NAME) -> Instance:
    return Instance(name, "quota", {"dimensions": dict(dims or {})})


async def take(h: memquota.MemQuotaHandler, amount: int = 1, **kw: Any) -> QuotaResult:
    return await h.quota(inst(kw.pop("dims", None)), QuotaArgs(amount, **kw))


def seconds(td: datetime.timedelta | None) -> float:
    assert td is not None
    return td.total_seconds()


async def grants(h: memquota.MemQuotaHandler, n: int) -> list[int]:
    return [(await take(h)).granted for _ in range(n)]


# --- Istio's default: rolling window of 100 ms ticks ------------------------------------------


async def test_default_rolling_window_grants_max_then_frees_after_ten_ticks_per_second() -> None:
    clock = FakeClock(1000.0)  # exactly on a tick boundary
    h = make(clock, maxAmount=5, validDuration="1s")
    assert await grants(h, 7) == [1, 1, 1, 1, 1, 0, 0]
    clock.advance(0.95)  # tick 9 of 10: the first tick still counts
    assert (await take(h)).granted == 0
    clock.advance(0.05)  # tick 10: grants of tick 0 leave the window
    assert await grants(h, 6) == [1, 1, 1, 1, 1, 0]


async def test_default_rolling_window_rounds_valid_duration_up_to_whole_seconds() -> None:
    clock = FakeClock(1000.0)
    h = make(clock, maxAmount=1, validDuration="1.5s")  # ceil(1.5 s) * 10 = 20 ticks
    assert (await take(h)).granted == 1
    clock.advance(1.5)
    assert (await take(h)).granted == 0
    clock.advance(0.5)
    assert (await take(h)).granted == 1


async def test_rolling_window_frees_each_tick_separately() -> None:
    clock = FakeClock(1000.0)
    h = make(clock, maxAmount=2, validDuration="1s")
    assert (await take(h)).granted == 1
    clock.advance(0.5)
    assert (await take(h)).granted == 1
    assert (await take(h)).granted == 0
    clock.advance(0.5)  # only the first grant has left
    assert await grants(h, 2) == [1, 0]


async def test_denial_is_resource_exhausted_and_grant_carries_valid_duration() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    granted = await take(h)
    assert granted.status_code == OK
    assert granted.valid_duration == datetime.timedelta(seconds=10)
    assert (granted.limit, granted.remaining) == (1, 0)
    denied = await take(h)
    assert (denied.granted, denied.status_code) == (0, RESOURCE_EXHAUSTED)
    assert denied.message == "memquota: Resource exhausted"
    assert denied.valid_duration == datetime.timedelta(0)
    assert denied.reset_after is not None
    assert datetime.timedelta(seconds=9.9) <= denied.reset_after <= datetime.timedelta(seconds=10)


async def test_allocation_counter_is_freed_by_negative_amounts() -> None:
    h = make(FakeClock(), maxAmount=3)  # validDuration 0
    assert (await take(h, 3)).granted == 3
    assert (await take(h, 1)).granted == 0
    freed = await take(h, -2)
    assert (freed.granted, freed.status_code) == (2, OK)
    assert (await take(h, 2)).granted == 2
    assert (await take(h, -10)).granted == 3  # frees at most what is in use


async def test_rolling_window_release_frees_the_newest_grants() -> None:
    clock = FakeClock(1000.0)
    h = make(clock, maxAmount=2, validDuration="1s")
    await take(h)
    clock.advance(0.5)
    await take(h)
    assert (await take(h, -1)).granted == 1  # releases the grant of tick 5
    clock.advance(0.5)  # tick 0's grant leaves: the window is empty
    assert await grants(h, 3) == [1, 1, 0]


# --- explicit algorithms ------------------------------------------------------------------------


async def test_fixed_window_opens_at_first_grant_and_resets_after_valid_duration() -> None:
    clock = FakeClock()
    h = make(clock, maxAmount=2, validDuration="10s", rateLimitAlgorithm="FIXED_WINDOW")
    clock.advance(3)
    assert (await take(h)).granted == 1  # the window is [3, 13)
    clock.advance(6)
    assert (await take(h)).granted == 1
    clock.advance(3.9)
    denied = await take(h)
    assert denied.granted == 0
    assert seconds(denied.reset_after) == pytest.approx(0.1)
    clock.advance(0.1)
    assert await grants(h, 3) == [1, 1, 0]


async def test_explicit_rolling_window_uses_bucket_duration() -> None:
    clock = FakeClock(1000.0)
    h = make(
        clock,
        maxAmount=2,
        validDuration="1s",
        bucketDuration="250ms",
        rateLimitAlgorithm="ROLLING_WINDOW",
    )
    assert (await take(h)).granted == 1
    clock.advance(0.5)
    assert await grants(h, 2) == [1, 0]
    clock.advance(0.49)  # 0.99 s: the first bucket is still inside the 4 x 250 ms window
    assert (await take(h)).granted == 0
    clock.advance(0.01)
    assert await grants(h, 2) == [1, 0]


async def test_token_bucket_bursts_then_refills_continuously_up_to_capacity() -> None:
    clock = FakeClock()
    h = make(clock, maxAmount=10, validDuration="10s", rateLimitAlgorithm="TOKEN_BUCKET", burst=3)
    assert await grants(h, 4) == [1, 1, 1, 0]
    clock.advance(0.5)  # half a token
    assert (await take(h)).granted == 0
    clock.advance(0.5)
    r = await take(h)
    assert (r.granted, r.remaining) == (1, 0)
    assert seconds(r.reset_after) == pytest.approx(3.0)  # 3 tokens at 1/s
    clock.advance(100)  # long idle: capacity (burst), not 100 tokens
    assert await grants(h, 4) == [1, 1, 1, 0]


async def test_token_bucket_capacity_defaults_to_max_amount() -> None:
    h = make(FakeClock(), maxAmount=4, validDuration="1s", rateLimitAlgorithm="TOKEN_BUCKET")
    assert await grants(h, 5) == [1, 1, 1, 1, 0]


# --- requests -------------------------------------------------------------------------------


async def test_best_effort_grants_what_is_left_and_exact_requests_are_all_or_nothing() -> None:
    h = make(FakeClock(), maxAmount=5, validDuration="10s")
    assert (await take(h, 3)).granted == 3
    assert (await take(h, 4)).granted == 0  # not best effort: nothing
    partial = await take(h, 4, best_effort=True)
    assert (partial.granted, partial.status_code) == (2, OK)
    empty = await take(h, 1, best_effort=True)
    assert (empty.granted, empty.status_code) == (0, RESOURCE_EXHAUSTED)


async def test_zero_amount_reports_the_bucket_without_charging() -> None:
    h = make(FakeClock(), maxAmount=5, validDuration="10s", rateLimitAlgorithm="TOKEN_BUCKET")
    await take(h, 2)
    peek = await take(h, 0)
    assert (peek.granted, peek.status_code, peek.remaining) == (0, OK, 3)
    assert (await take(h, 0)).remaining == 3


async def test_a_token_bucket_override_without_burst_holds_its_own_max_amount() -> None:
    h = make(
        FakeClock(),
        maxAmount=100,
        validDuration="1s",
        rateLimitAlgorithm="TOKEN_BUCKET",
        burst=200,
        overrides=[{"dimensions": {"destination": "ratings"}, "maxAmount": 20}],
    )
    # the clock stands still: no refill, so the grants are the bucket's capacity
    ratings = [(await take(h, dims={"destination": "ratings"})).granted for _ in range(30)]
    others = [(await take(h, dims={"destination": "reviews"})).granted for _ in range(210)]
    assert sum(ratings) == 20
    assert sum(others) == 200


async def test_overrides_match_only_when_every_dimension_equals() -> None:
    h = make(
        FakeClock(),
        maxAmount=3,
        validDuration="10s",
        overrides=[
            {"dimensions": {"destination": "ratings"}, "maxAmount": 1},
            {"dimensions": {"destination": "reviews", "source": "10.0.0.1"}, "maxAmount": 2},
        ],
    )

    async def count(dims: dict[str, Any]) -> int:
        return sum([(await take(h, dims=dims)).granted for _ in range(5)])

    assert await count({"destination": "ratings", "source": "a"}) == 1
    assert await count({"destination": "reviews", "source": b"\x0a\x00\x00\x01"}) == 2
    assert await count({"destination": "reviews", "source": "10.0.0.2"}) == 3
    assert await count({"destination": "details"}) == 3


async def test_first_matching_override_wins_and_may_set_its_own_duration() -> None:
    h = make(
        FakeClock(),
        maxAmount=5,
        validDuration="10s",
        overrides=[
            {"dimensions": {"user": "bob"}, "maxAmount": 1, "validDuration": "2s"},
            {"dimensions": {"user": "bob"}, "maxAmount": 4},
        ],
    )
    r = await take(h, dims={"user": "bob"})
    assert (r.limit, r.valid_duration) == (1, datetime.timedelta(seconds=2))


async def test_buckets_are_per_dimension_values() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    assert (await take(h, dims={"ip": "a"})).granted == 1
    assert (await take(h, dims={"ip": "b"})).granted == 1
    assert (await take(h, dims={"ip": "a"})).granted == 0


def test_bucket_key_is_istio_make_key_with_sorted_dimension_names() -> None:
    key = memquota.bucket_key("q.instance.ns", {"src": "a", "dest": "b"})
    assert key == "q.instance.ns;dest=b;src=a"


async def test_legacy_and_short_instance_names_find_the_quota() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    legacy = await h.quota(inst(name="requestcount.quota.istio-system"), QuotaArgs(1))
    assert legacy.granted == 1
    # same config entry, same bucket
    assert (await take(h)).granted == 0


async def test_unknown_instance_is_an_internal_error() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    r = await h.quota(inst(name="other.instance.istio-system"), QuotaArgs(1))
    assert (r.granted, r.status_code) == (0, INTERNAL)
    assert "other.instance.istio-system" in r.message


async def test_quota_many_answers_in_request_order() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    rs = await h.quota_many(
        [(inst({"k": "a"}), QuotaArgs(1)), (inst({"k": "a"}), QuotaArgs(1)), (inst(), QuotaArgs(1))]
    )
    assert [r.granted for r in rs] == [1, 0, 1]


# --- dedup and memory ---------------------------------------------------------------------------


async def test_retry_with_same_dedup_id_returns_first_grant_without_charging() -> None:
    h = make(FakeClock(), maxAmount=2, validDuration="10s")
    first = await take(h, dedup_id="req-1")
    again = await take(h, dedup_id="req-1")
    assert again == first
    assert (await take(h, dedup_id="req-2")).granted == 1  # the retry did not use the 2nd unit
    assert (await take(h, dedup_id="req-3")).granted == 0


async def test_a_dedup_id_replays_only_on_its_own_bucket() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    assert (await take(h, dims={"user": "alice"}, dedup_id="id-1")).granted == 1
    assert (await take(h, dims={"user": "bob"}, dedup_id="id-2")).granted == 1
    # bob's bucket is empty: alice's id is a new charge on it, not a replay of her grant
    stolen = await take(h, dims={"user": "bob"}, dedup_id="id-1")
    assert (stolen.granted, stolen.status_code) == (0, RESOURCE_EXHAUSTED)
    assert (await take(h, dims={"user": "alice"}, dedup_id="id-1")).granted == 1  # her retry


async def test_a_dedup_id_replays_only_the_same_amount() -> None:
    h = make(FakeClock(), maxAmount=5, validDuration="10s")
    assert (await take(h, 1, dedup_id="id")).granted == 1
    assert (await take(h, 3, dedup_id="id")).granted == 3  # another charge: counted
    assert (await take(h, 1, dedup_id="id")).granted == 1  # the first one's retry
    assert (await take(h, 0)).remaining == 1


async def test_dedup_ids_are_remembered_one_to_two_periods() -> None:
    clock = FakeClock()
    h = make(clock, maxAmount=10, minDeduplicationDuration="1s")
    await take(h, dedup_id="a")  # counter: 1 in use
    clock.advance(0.99)
    await take(h, dedup_id="a")  # within one period: replayed
    clock.advance(0.02)
    await take(h, dedup_id="a")  # in the old generation: still replayed
    assert (await take(h, 0)).remaining == 9
    clock.advance(2.1)  # two periods later: forgotten, charged again
    await take(h, dedup_id="a")
    assert (await take(h, 0)).remaining == 8


async def test_dedup_rotation_follows_a_fixed_schedule_even_when_idle() -> None:
    clock = FakeClock(1000.0)  # rotations due at 1001, 1002, ...
    h = make(clock, maxAmount=10, minDeduplicationDuration="1s")
    clock.advance(0.9)
    await take(h, dedup_id="a")  # added at 1000.9
    clock.advance(1.2)  # 1002.1: rotations at 1001 and 1002 both passed, "a" is forgotten
    await take(h, dedup_id="a")
    assert (await take(h, 0)).remaining == 8


async def test_denials_are_replayed_too() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    await take(h)
    denied = await take(h, dedup_id="x")
    assert denied.status_code == RESOURCE_EXHAUSTED
    assert await take(h, dedup_id="x") == denied


async def test_idle_buckets_are_dropped() -> None:
    clock = FakeClock()
    h = make(clock, maxAmount=1, validDuration="1s", minDeduplicationDuration="1s")
    for i in range(500):
        await take(h, dims={"ip": str(i)})
    assert len(h._buckets) == 500
    clock.advance(2.5)  # every window emptied; the next call sweeps
    assert (await take(h, dims={"ip": "0"})).granted == 1
    assert len(h._buckets) == 1


async def test_close_forgets_state() -> None:
    h = make(FakeClock(), maxAmount=1, validDuration="10s")
    await take(h)
    await h.close()
    assert (await take(h)).granted == 1


async def test_one_instance_object_reused_keeps_charging_its_own_bucket() -> None:
    """The dispatcher hands one instance object to every request that chose it the same way;
    the handler finds its bucket by identity, and other objects still by their dimensions."""
    h = make(FakeClock(), maxAmount=3)
    shared = inst({"user": "alice"})
    assert [(await h.quota(shared, QuotaArgs(1))).granted for _ in range(4)] == [1, 1, 1, 0]
    assert (await h.quota(inst({"user": "alice"}), QuotaArgs(1))).granted == 0
    bob = inst({"user": "bob"})
    assert (await h.quota(bob, QuotaArgs(1))).granted == 1
    assert (await h.quota(bob, QuotaArgs(1))).remaining == 1
