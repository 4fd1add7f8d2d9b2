"""Params of memquota and redisquota. Their quota parsers are kept in step (adapters do not import
each other), so the shared rules run against both."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from adapters import memquota, redisquota
from adapters.base import ParamError
from adapters.redisquota.params import Algorithm as RedisAlgorithm

Parser = Callable[[Mapping[str, Any]], Any]
BOTH = pytest.mark.parametrize(
    "parse", [memquota.parse_params, redisquota.parse_params], ids=["memquota", "redisquota"]
)


def quota(**fields: Any) -> dict[str, Any]:
    return {"quotas": [{"name": "q.instance.ns", "maxAmount": 5, "validDuration": "1s", **fields}]}


def error(parse: Parser, raw: Mapping[str, Any]) -> ParamError:
    with pytest.raises(ParamError) as info:
        parse(raw)
    return info.value


@BOTH
def test_camel_and_snake_case_keys_are_accepted(parse: Parser) -> None:
    raw = {
        "quotas": [
            {
                "name": "q.instance.ns",
                "max_amount": 7,
                "valid_duration": "2s",
                "rate_limit_algorithm": "TOKEN_BUCKET",
                "burst": 3,
                "overrides": [{"dimensions": {"a": "b"}, "max_amount": 1}],
            }
        ],
        "min_deduplication_duration": "3s",
    }
    p = parse(raw)
    q = p.quotas[0]
    assert (q.max_amount, q.valid_duration, q.burst) == (7, datetime.timedelta(seconds=2), 3)
    assert q.overrides[0].max_amount == 1
    assert p.min_deduplication_duration == datetime.timedelta(seconds=3)


@BOTH
@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({}, "quotas"),
        ({"quotas": []}, "quotas"),
        ({"quotas": [{"maxAmount": 1, "validDuration": "1s"}]}, "quotas[0].name"),
        (quota(maxAmount=0), "quotas[0].maxAmount"),
        (quota(maxAmount="many"), "quotas[0].maxAmount"),
        (quota(maxAmount=True), "quotas[0].maxAmount"),
        (quota(validDuration="soon"), "quotas[0].validDuration"),
        (quota(validDuration="-1s"), "quotas[0].validDuration"),
        (quota(rateLimitAlgorithm="LEAKY"), "quotas[0].rateLimitAlgorithm"),
        (quota(burst=2), "quotas[0].burst"),
        (quota(rateLimitAlgorithm="TOKEN_BUCKET", burst=0), "quotas[0].burst"),
        (
            quota(rateLimitAlgorithm="ROLLING_WINDOW", bucketDuration="2s"),
            "quotas[0].bucketDuration",
        ),
        (
            quota(rateLimitAlgorithm="ROLLING_WINDOW", bucketDuration="0s"),
            "quotas[0].bucketDuration",
        ),
        (quota(overrides=[{"maxAmount": 1}]), "quotas[0].overrides[0].dimensions"),
        (quota(overrides=[{"dimensions": {"a": "b"}}]), "quotas[0].overrides[0].maxAmount"),
        (
            quota(overrides=[{"dimensions": {"a": "b"}, "maxAmount": 1, "x": 1}]),
            "quotas[0].overrides[0].x",
        ),
        (quota(overrides="none"), "quotas[0].overrides"),
        (quota(maxAmounts=5), "quotas[0].maxAmounts"),
        (quota(rateLimitAlgorithm="TOKEN_BUCKET", alignToEpoch=True), "quotas[0].alignToEpoch"),
        (quota(rateLimitAlgorithm="FIXED_WINDOW", alignToEpoch="yes"), "quotas[0].alignToEpoch"),
        ({**quota(), "minDeduplicationDuration": "0s"}, "minDeduplicationDuration"),
        ({**quota(), "bogus": 1}, "bogus"),
        (
            {"quotas": [{"name": "a", "maxAmount": 1, "max_amount": 2, "validDuration": "1s"}]},
            "quotas[0].maxAmount",
        ),
    ],
)
def test_invalid_params_name_the_field(parse: Parser, raw: Mapping[str, Any], path: str) -> None:
    assert error(parse, raw).path == path


@BOTH
def test_duplicate_quota_names_are_rejected(parse: Parser) -> None:
    raw = {"quotas": quota()["quotas"] * 2}
    err = error(parse, raw)
    assert err.path == "quotas[1].name"
    assert "duplicate" in err.message


@BOTH
def test_struct_floats_and_json_strings_are_integers(parse: Parser) -> None:
    assert parse(quota(maxAmount=5.0)).quotas[0].max_amount == 5
    assert parse(quota(maxAmount="12")).quotas[0].max_amount == 12


@BOTH
def test_override_values_are_compared_as_text(parse: Parser) -> None:
    p = parse(quota(overrides=[{"dimensions": {"port": 8080, "tls": True}, "maxAmount": 1}]))
    assert dict(p.quotas[0].overrides[0].dimensions) == {"port": "8080", "tls": "true"}


def test_memquota_defaults_are_istio_memquota() -> None:
    p = memquota.parse_params({"quotas": [{"name": "q", "maxAmount": 5}]})
    q = p.quotas[0]
    assert (q.algorithm, q.valid_duration) == (None, datetime.timedelta(0))  # counter
    assert p.min_deduplication_duration == datetime.timedelta(seconds=1)


def test_memquota_algorithms_need_a_valid_duration() -> None:
    err = error(
        memquota.parse_params,
        {"quotas": [{"name": "q", "maxAmount": 5, "rateLimitAlgorithm": "FIXED_WINDOW"}]},
    )
    assert err.path == "quotas[0].validDuration"


def test_redisquota_defaults_are_istio_redisquota() -> None:
    p = redisquota.parse_params(quota())
    q = p.quotas[0]
    assert q.algorithm is RedisAlgorithm.FIXED_WINDOW
    assert p.target.url == "redis://localhost:6379"
    assert not p.target.cluster
    assert (p.connection_pool_size, p.fail_open) == (10, False)
    assert p.timeout == datetime.timedelta(milliseconds=50)
    assert p.request_timeout is None  # the caller's handler timeout bounds a call


def test_redisquota_requires_a_valid_duration() -> None:
    err = error(redisquota.parse_params, {"quotas": [{"name": "q", "maxAmount": 5}]})
    assert err.path == "quotas[0].validDuration"


@pytest.mark.parametrize(
    ("url", "expected_url", "nodes", "tls"),
    [
        ("redis-host:6380", "redis://redis-host:6380", (), False),
        ("redis-host", "redis://redis-host:6379", (), False),
        ("[::1]:7000", "redis://[::1]:7000", (), False),
        ("redis://u:p@h:1/2", "redis://u:p@h:1/2", (), False),
        ("rediss://h:6380", "rediss://h:6380", (), True),
        ("unix:///run/redis.sock", "unix:///run/redis.sock", (), False),
        ("redis+cluster://a:7000,b:7001", "", (("a", 7000), ("b", 7001)), False),
        ("rediss+cluster://a:7000", "", (("a", 7000),), True),
        ("a:7000,b:7001", "", (("a", 7000), ("b", 7001)), False),
        (["a:7000", "rediss://b:7001"], "", (("a", 7000), ("b", 7001)), True),
    ],
)
def test_redis_server_url_forms(
    url: Any, expected_url: str, nodes: tuple[tuple[str, int], ...], tls: bool
) -> None:
    target = redisquota.parse_params({**quota(), "redisServerUrl": url}).target
    assert (target.url, target.nodes, target.tls) == (expected_url, nodes, tls)
    assert target.cluster == bool(nodes)


def test_cluster_url_carries_credentials() -> None:
    target = redisquota.parse_params(
        {**quota(), "redisServerUrl": "redis+cluster://user:s%40cret@a:1,b:2"}
    ).target
    assert (target.username, target.password) == ("user", "s@cret")


@pytest.mark.parametrize("url", ["", "http://h:1", "h:notaport", [], [5], "redis+cluster://"])
def test_bad_redis_server_urls_are_rejected(url: Any) -> None:
    assert error(redisquota.parse_params, {**quota(), "redisServerUrl": url}).path.startswith(
        "redisServerUrl"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", "0s"),
        ("failOpen", "maybe"),
        ("connectionPoolSize", -1),
        ("batchWindow", "1s"),
        ("batchMaxItems", 0),
        ("requestTimeout", "10ms"),  # shorter than timeout (50ms)
        ("requestTimeout", "-1s"),
    ],
)
def test_bad_redis_settings_name_the_field(field: str, value: Any) -> None:
    assert error(redisquota.parse_params, {**quota(), field: value}).path == field


def test_redis_settings_are_parsed() -> None:
    p = redisquota.parse_params(
        {
            **quota(),
            "connectionPoolSize": 0,
            "timeout": "20ms",
            "failOpen": "true",
            "batchWindow": "0s",
            "batchMaxItems": 8,
            "requestTimeout": "300ms",
        }
    )
    assert p.request_timeout == datetime.timedelta(milliseconds=300)
    assert p.connection_pool_size == 10  # Istio: 0 means the default
    assert p.timeout == datetime.timedelta(milliseconds=20)
    assert p.fail_open is True
    assert (p.batch_window, p.batch_max_items) == (datetime.timedelta(0), 8)


@BOTH
def test_an_override_without_burst_gets_its_own_max_amount_not_the_quotas_burst(
    parse: Parser,
) -> None:
    raw = quota(
        rateLimitAlgorithm="TOKEN_BUCKET",
        maxAmount=100,
        burst=200,
        overrides=[
            {"dimensions": {"destination": "ratings"}, "maxAmount": 20},
            {"dimensions": {"destination": "reviews"}, "maxAmount": 30, "burst": 60},
        ],
    )
    (q,) = parse(raw).quotas
    assert q.burst == 200
    assert [(o.max_amount, o.burst) for o in q.overrides] == [(20, 20), (30, 60)]


@BOTH
def test_an_override_has_no_burst_without_a_token_bucket(parse: Parser) -> None:
    raw = quota(
        rateLimitAlgorithm="FIXED_WINDOW", overrides=[{"dimensions": {"d": "x"}, "maxAmount": 2}]
    )
    (q,) = parse(raw).quotas
    assert q.overrides[0].burst is None
