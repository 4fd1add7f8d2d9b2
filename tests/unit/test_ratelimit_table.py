"""The RLS table: envoyproxy/ratelimit matching, counting on memquota under a fake clock, and
the response (statuses and both header modes) built from its decisions."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters import load_registry
from adapters.base import AdapterInfo, Env
from mixer.api.ratelimit_servicer import draft_headers, ietf_headers, rls_response
from mixer.config.model import Location, RateLimitConfig, RateLimitDescriptor, RateLimitPolicy
from mixer.envoy.service.ratelimit.v3 import rls_pb2
from mixer.errors import BackendUnavailable
from mixer.runtime.handler_calls import HandlerCalls
from mixer.runtime.ratelimit import UNLIMITED_REMAINING, Code, Decision, RateLimitTable
from mixer.telemetry import ServerMetrics

REGISTRY = load_registry()
OK = Code.OK
OVER = Code.OVER_LIMIT


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def limit(requests: int, unit: str = "second", **kw: Any) -> RateLimitPolicy:
    return RateLimitPolicy(unit, requests, **kw)


def desc(
    key: str,
    value: str = "",
    rate_limit: RateLimitPolicy | None = None,
    *children: RateLimitDescriptor,
    shadow: bool = False,
) -> RateLimitDescriptor:
    return RateLimitDescriptor(key, value, rate_limit, shadow, False, tuple(children))


def config(domain: str, *descriptors: RateLimitDescriptor) -> RateLimitConfig:
    return RateLimitConfig(domain, descriptors, Location("test.yaml", 1))


Make = Callable[..., RateLimitTable]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(clock: FakeClock) -> AsyncIterator[Make]:
    built: list[RateLimitTable] = []

    def build(*configs: RateLimitConfig, previous: RateLimitTable | None = None) -> RateLimitTable:
        env = Env("rls.test", logging.getLogger("test"), CollectorRegistry(), clock)
        calls = HandlerCalls(ServerMetrics.create(), 1.0)
        table = RateLimitTable.from_configs(
            configs, registry=REGISTRY, env=env, calls=calls, previous=previous
        )
        built.append(table)
        return table

    yield build
    for table in built:
        await table.close()


async def ask(
    table: RateLimitTable, *descriptors: Sequence[tuple[str, str]], hits: Any = 1, domain: str = "d"
) -> Decision:
    return await table.should_rate_limit(domain, [list(d) for d in descriptors], hits)


# --- matching -----------------------------------------------------------------------------


async def test_exact_value_wins_over_key_only_and_key_only_matches_any_value(make: Make) -> None:
    table = make(config("d", desc("db", "users", limit(10)), desc("db", "", limit(5, "minute"))))
    users = table.match("d", [("db", "users")])
    other = table.match("d", [("db", "orders")])
    assert users is not None and users.path == "db=users" and users.policy.requests_per_unit == 10
    assert other is not None and other.path == "db=*" and other.policy.unit == "minute"
    assert table.match("d", [("table", "users")]) is None
    assert table.match("other-domain", [("db", "users")]) is None


async def test_nested_descriptor_matches_only_when_all_entries_are_consumed(make: Make) -> None:
    table = make(config("d", desc("a", "x", None, desc("b", "y", limit(1)), desc("b", "", None))))
    assert table.match("d", [("a", "x")]) is None  # node reached has no rate_limit
    rule = table.match("d", [("a", "x"), ("b", "y")])
    assert rule is not None and rule.path == "a=x;b=y" and rule.quota == "rls;d;a=x;b=y"
    assert table.match("d", [("a", "x"), ("b", "z")]) is None  # b=* has no rate_limit
    assert table.match("d", [("a", "x"), ("b", "y"), ("c", "1")]) is None  # entries left over
    assert table.match("d", [("b", "y")]) is None  # wrong order


async def test_value_patterns_match_between_exact_and_key_only(make: Make) -> None:
    table = make(
        config(
            "d",
            desc("path", "/api/*/export", limit(1)),
            desc("path", "/api/v1/export", limit(2)),
            desc("path", "", limit(3)),
        )
    )
    for value, expected in [
        ("/api/v1/export", 2),
        ("/api/v2/export", 1),
        ("/api//export", 1),
        ("/api/v2/import", 3),
        ("/api/export", 3),
    ]:
        rule = table.match("d", [("path", value)])
        assert rule is not None and rule.policy.requests_per_unit == expected, value


async def test_unknown_domain_and_unmatched_descriptors_are_ok_without_limit(make: Make) -> None:
    table = make(config("d", desc("db", "users", limit(1))))
    unknown = await ask(table, [("db", "users")], [("x", "y")], domain="nope")
    assert unknown.code is OK and not unknown.domain_known
    assert [(s.code, s.rule, s.limited) for s in unknown.statuses] == [(OK, None, False)] * 2
    unmatched = await ask(table, [("db", "orders")])
    assert unmatched.domain_known and unmatched.statuses[0].rule is None


async def test_empty_table_answers_ok_and_owns_nothing() -> None:
    table = RateLimitTable.empty()
    decision = await ask(table, [("db", "users")])
    assert decision.code is OK and not decision.domain_known and table.domains == frozenset()
    await table.close()


# --- counting -----------------------------------------------------------------------------


async def test_three_per_second_grants_three_then_over_limit(make: Make, clock: FakeClock) -> None:
    table = make(config("d", desc("db", "users", limit(3))))
    remaining = []
    for _ in range(3):
        decision = await ask(table, [("db", "users")])
        assert decision.code is OK
        remaining.append(decision.statuses[0].remaining)
        clock.now += 0.1
    assert remaining == [2, 1, 0]
    over = await ask(table, [("db", "users")])
    status = over.statuses[0]
    assert over.code is OVER and status.code is OVER and status.remaining == 0
    assert datetime.timedelta(0) < status.reset_after <= datetime.timedelta(seconds=1)
    assert status.reset_after == datetime.timedelta(seconds=0.7)  # window opened 0.3 s ago
    clock.now += 0.7  # the window closes: a new one starts
    again = await ask(table, [("db", "users")])
    assert again.code is OK and again.statuses[0].remaining == 2
    assert again.statuses[0].reset_after == datetime.timedelta(seconds=1)


async def test_key_only_node_counts_each_value_in_its_own_bucket(make: Make) -> None:
    table = make(config("d", desc("client", "", limit(1, "minute"))))
    assert (await ask(table, [("client", "a")])).code is OK
    assert (await ask(table, [("client", "a")])).code is OVER
    assert (await ask(table, [("client", "b")])).code is OK
    assert (await ask(table, [("client", "b")])).code is OVER


async def test_unlimited_always_ok_and_shadow_counts_but_never_denies(make: Make) -> None:
    table = make(
        config(
            "d",
            desc("db", "free", limit(0, "", unlimited=True)),
            desc("db", "shadow", limit(2), shadow=True),
        )
    )
    for _ in range(5):
        free = await ask(table, [("db", "free")])
        assert free.code is OK and free.statuses[0].remaining == UNLIMITED_REMAINING
        assert not free.statuses[0].limited
    shadow = [await ask(table, [("db", "shadow")]) for _ in range(4)]
    assert [d.code for d in shadow] == [OK] * 4
    assert [d.statuses[0].remaining for d in shadow] == [1, 0, 0, 0]  # counted
    assert all(d.statuses[0].limited for d in shadow)


async def test_zero_requests_per_unit_is_always_over(make: Make) -> None:
    table = make(config("d", desc("db", "closed", limit(0, "hour"))))
    decision = await ask(table, [("db", "closed")])
    assert decision.code is OVER
    assert decision.statuses[0].reset_after == datetime.timedelta(hours=1)


async def test_hits_are_the_amount_and_per_descriptor_hits_win(make: Make) -> None:
    table = make(config("d", desc("db", "", limit(5))))
    first = await ask(table, [("db", "a")], hits=4)
    assert first.code is OK and first.statuses[0].remaining == 1
    assert (await ask(table, [("db", "a")], hits=2)).code is OVER  # all or nothing
    check_only = await ask(table, [("db", "a")], [("db", "b")], hits=[0, 5])
    assert [s.code for s in check_only.statuses] == [OK, OK]
    assert [s.remaining for s in check_only.statuses] == [1, 0]


async def test_one_over_descriptor_makes_the_whole_answer_over_in_request_order(
    make: Make,
) -> None:
    table = make(config("d", desc("a", "", limit(1)), desc("b", "", limit(5))))
    await ask(table, [("a", "1")])
    decision = await ask(table, [("b", "1")], [("zzz", "1")], [("a", "1")])
    assert decision.code is OVER
    assert [s.code for s in decision.statuses] == [OK, OK, OVER]
    assert [s.remaining for s in decision.statuses] == [4, 0, 0]
    assert decision.statuses[1].rule is None


async def test_replaced_rule_is_dropped_when_its_replacer_matches(make: Make) -> None:
    table = make(
        config(
            "d",
            desc("tenant", "acme", limit(1, name="acme_default")),
            desc("path", "/export", limit(100, replaces=("acme_default",))),
        )
    )
    await ask(table, [("tenant", "acme")])
    alone = await ask(table, [("tenant", "acme")])
    assert alone.code is OVER
    both = await ask(table, [("tenant", "acme")], [("path", "/export")])
    assert both.code is OK and both.statuses[0].rule is None
    assert both.statuses[1].remaining == 99


async def test_same_limits_keep_counts_across_a_rebuild(make: Make) -> None:
    cfg = config("d", desc("db", "users", limit(2, "minute")))
    first = make(cfg)
    await ask(first, [("db", "users")])
    second = make(cfg, previous=first)
    await first.close()  # the swap closes the old table: the handler stays with `second`
    assert (await ask(second, [("db", "users")])).statuses[0].remaining == 0
    assert (await ask(second, [("db", "users")])).code is OVER
    changed = make(config("d", desc("db", "users", limit(3, "minute"))), previous=second)
    assert (await ask(changed, [("db", "users")])).statuses[0].remaining == 2


# --- the response -------------------------------------------------------------------------


async def test_response_statuses_and_draft_headers(make: Make) -> None:
    table = make(
        config(
            "d",
            desc("a", "", limit(10, "minute")),
            desc("b", "", limit(1000, "hour", name="hourly")),
            desc("c", "", limit(0, "", unlimited=True)),
        )
    )
    decision = await ask(table, [("a", "1")], [("b", "1")], [("c", "1")], [("x", "1")])
    resp = rls_response(decision, "draft")
    assert resp.overall_code == rls_pb2.RateLimitResponse.OK
    a, b, c, x = resp.statuses
    assert (a.current_limit.requests_per_unit, a.current_limit.unit) == (10, 2)  # MINUTE
    assert a.limit_remaining == 9 and a.duration_until_reset.seconds == 60
    assert (b.current_limit.name, b.current_limit.unit, b.limit_remaining) == ("hourly", 3, 999)
    assert not c.HasField("current_limit") and c.limit_remaining == UNLIMITED_REMAINING
    assert not x.HasField("current_limit") and x.code == rls_pb2.RateLimitResponse.OK
    headers = [(h.key, h.value) for h in resp.response_headers_to_add]
    assert headers == [
        ("x-ratelimit-limit", '10, 10;w=60, 1000;w=3600;name="hourly"'),
        ("x-ratelimit-remaining", "9"),
        ("x-ratelimit-reset", "60"),
    ]
    assert draft_headers(decision.statuses[2:]) == []


async def test_ietf_headers_and_off(make: Make, clock: FakeClock) -> None:
    table = make(
        config("d", desc("a", "", limit(3)), desc("b", 'q"x', limit(5, "day", name="daily")))
    )
    await ask(table, [("a", "1")])
    clock.now += 0.5
    decision = await ask(table, [("a", "1")], [("a", "2")], [("b", 'q"x')])
    assert ietf_headers(decision.statuses) == [
        ("RateLimit-Policy", '"a=*";q=3;w=1, "daily";q=5;w=86400'),
        ("RateLimit", '"a=*";r=1;t=1, "a=*";r=2;t=1, "daily";r=4;t=86400'),
    ]
    assert [h.key for h in rls_response(decision, "ietf").response_headers_to_add] == [
        "RateLimit-Policy",
        "RateLimit",
    ]
    assert len(rls_response(decision, "off").response_headers_to_add) == 0


async def test_over_limit_response(make: Make) -> None:
    table = make(config("d", desc("a", "", limit(1, "week"))))
    await ask(table, [("a", "1")])
    resp = rls_response(await ask(table, [("a", "1")]), "draft")
    assert resp.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT
    status = resp.statuses[0]
    assert status.code == rls_pb2.RateLimitResponse.OVER_LIMIT and status.limit_remaining == 0
    assert status.current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.WEEK
    assert 0 < status.duration_until_reset.ToTimedelta().total_seconds() <= 7 * 86400


# --- the quota call path: the same as Check's quotas -------------------------------------


class _Hanging:
    """A quota backend that never answers (it does I/O, so it is not inline)."""

    async def quota(self, instance: Any, args: Any) -> Any:
        await asyncio.sleep(3600)

    async def close(self) -> None:
        return None


async def test_a_backend_that_hangs_is_cut_off_by_the_handler_timeout_and_counted() -> None:
    hanging = AdapterInfo(
        "memquota", "hangs", frozenset({"quota"}), lambda raw: raw, lambda params, env: _Hanging()
    )
    metrics = ServerMetrics.create()
    env = Env("rls.test", logging.getLogger("test"), CollectorRegistry(), FakeClock())
    table = RateLimitTable.from_configs(
        [config("d", desc("db", "users", limit(10)))],
        registry={"memquota": hanging},
        env=env,
        calls=HandlerCalls(metrics, 0.05),
    )
    try:
        with pytest.raises(BackendUnavailable, match=r"did not answer within 0\.05s"):
            await ask(table, [("db", "users")])
    finally:
        await table.close()
    labels = {"adapter": "memquota", "handler": "rls.test", "error": "true"}
    assert metrics.registry.get_sample_value("mixer_runtime_dispatches_total", labels) == 1


async def test_rate_limit_calls_are_counted_per_handler(make: Make) -> None:
    metrics = ServerMetrics.create()
    env = Env("rls.test", logging.getLogger("test"), CollectorRegistry(), FakeClock())
    table = RateLimitTable.from_configs(
        [config("d", desc("db", "users", limit(10)))],
        registry=REGISTRY,
        env=env,
        calls=HandlerCalls(metrics, 1.0),
    )
    try:
        assert (await ask(table, [("db", "users")], [("db", "users")])).code is Code.OK
    finally:
        await table.close()
    labels = {"adapter": "memquota", "handler": "rls.test", "error": "false"}
    # Two descriptors, one quota_many call on memquota.
    assert metrics.registry.get_sample_value("mixer_runtime_dispatches_total", labels) == 1


# --- envoyproxy/ratelimit's statistics keys and header choice ---------------------------------


def rdesc(key: str, value: str = "", rate_limit: RateLimitPolicy | None = None, **kw: Any) -> Any:
    return RateLimitDescriptor(key, value, rate_limit, **kw)


async def test_statistics_keys_as_ratelimit_builds_them(make: Make) -> None:
    table = make(
        config(
            "d",
            rdesc("db", "users", limit(10)),
            rdesc("user", "u*", limit(10), value_to_metric=True),
            rdesc("path", "/p/*", limit(10), share_threshold=True, value_to_metric=True),
            rdesc("ip", "", limit(10), value_to_metric=True),
            rdesc("client", "", limit(10), detailed_metric=True),
            rdesc("tenant", descriptors=(rdesc("path", "/x", limit(10)),)),
        )
    )
    decision = await ask(
        table,
        [("db", "users")],
        [("user", "u7")],
        [("path", "/p/1")],
        [("ip", "10.0.0.1:80|x")],
        [("client", "")],
        [("tenant", "t1"), ("path", "/x")],
    )
    assert [s.stat_key for s in decision.statuses] == [
        "d.db_users",  # the config path
        "d.user_u7",  # value_to_metric on a wildcard: the request's value
        "d.path_/p/*",  # share_threshold wins: the pattern
        "d.ip_10_0_0_1_80_x",  # IPv4 dots, ':' and '|' sanitized
        "d.client_",  # detailed_metric: key_value even when empty
        "d.tenant.path_/x",  # key-only level without value_to_metric: the key alone
    ]


def _status(code: Code, remaining: int, requests: int, in_quota: bool = False) -> Any:
    from mixer.runtime.ratelimit import DescriptorDecision, Rule

    policy = RateLimitPolicy("minute", requests)
    rule = Rule("d", "k=*", policy, False, "q", quota_mode=in_quota)
    reset = datetime.timedelta(seconds=5)
    return DescriptorDecision(code, rule, remaining, reset, in_quota=in_quota)


def test_ratelimit_headers_pick_the_descriptor_as_ratelimit_does() -> None:
    from mixer.api.ratelimit_servicer import ratelimit_headers

    least = _status(OK, 1, 10)
    first_over = _status(OVER, 0, 20)
    last_over = _status(OVER, 0, 30)
    quota_over = _status(OVER, 0, 40, in_quota=True)
    assert dict(ratelimit_headers([_status(OK, 5, 7), least])) == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "1",
        "RateLimit-Reset": "5",
    }
    # an over-limit descriptor takes over, the last one wins; a quota-mode one does not
    assert (
        dict(ratelimit_headers([least, first_over, last_over, quota_over]))["RateLimit-Limit"]
        == "30"
    )
    assert dict(ratelimit_headers([quota_over, least]))["RateLimit-Limit"] == "40"
    assert ratelimit_headers([]) == []


async def test_global_quota_mode_marks_every_descriptor_but_unlimited_ones(make: Make) -> None:
    table = make(config("d", desc("a", "", limit(1)), desc("u", "", limit(0, "", unlimited=True))))
    decision = await table.should_rate_limit(
        "d", [[("a", "1")], [("u", "1")], [("none", "1")]], 1, quota_mode=True
    )
    assert [s.in_quota for s in decision.statuses] == [True, False, True]
    plain = await table.should_rate_limit("d", [[("a", "2")]], 1)
    assert [s.in_quota for s in plain.statuses] == [False]
