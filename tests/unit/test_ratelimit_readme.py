"""envoyproxy/ratelimit's README examples 1-9 (its "Examples" section): each config loads, and
each lookup the README describes gives the limit (or no limit) it says, on memquota."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from adapters import load_registry
from adapters.base import Env
from mixer.config import load_config
from mixer.runtime.handler_calls import HandlerCalls
from mixer.runtime.ratelimit import UNLIMITED_REMAINING, Code, RateLimitTable
from mixer.telemetry import ServerMetrics

REGISTRY = load_registry()

EXAMPLES = {
    "1": """
        domain: mongo_cps
        descriptors:
          - key: database
            value: users
            rate_limit: {unit: second, requests_per_unit: 500}
          - key: database
            value: default
            rate_limit: {unit: second, requests_per_unit: 500}
    """,
    "2": """
        domain: messaging
        descriptors:
          - key: message_type
            value: marketing
            descriptors:
              - key: to_number
                rate_limit: {unit: day, requests_per_unit: 5}
          - key: to_number
            rate_limit: {unit: day, requests_per_unit: 100}
    """,
    "3": """
        domain: edge_proxy_per_ip
        descriptors:
          - key: remote_address
            rate_limit: {unit: second, requests_per_unit: 10}
          - key: remote_address
            value: 50.0.0.5
            rate_limit: {unit: second, requests_per_unit: 0}
    """,
    "4": """
        domain: example4
        descriptors:
          - key: key
            value: value
            descriptors:
              - key: subkey
                rate_limit: {requests_per_unit: 300, unit: second}
    """,
    "5": """
        domain: internal
        descriptors:
          - key: ldap
            rate_limit: {unlimited: true}
          - key: azure
            rate_limit: {unit: minute, requests_per_unit: 100}
    """,
    "6": """
        domain: example6
        descriptors:
          - key: service
            descriptors:
              - key: user
                value: user-a
                rate_limit: {requests_per_unit: 10, unit: second}
                shadow_mode: true
              - key: user
                value: user-b
                rate_limit: {requests_per_unit: 20, unit: second}
    """,
    "7": """
        domain: example7
        descriptors:
          - key: key_1
            value: value_1
            descriptors:
              - key: user
                value: bkthomps
                rate_limit: {name: specific_limit, requests_per_unit: 5, unit: second}
          - key: key_2
            value: value_2
            descriptors:
              - key: user
                value: bkthomps
                rate_limit:
                  replaces: [{name: specific_limit}]
                  requests_per_unit: 10
                  unit: second
    """,
    "8": """
        domain: example8
        descriptors:
          - key: key1
            detailed_metric: true
            rate_limit: {unit: minute, requests_per_unit: 10}
          - key: key1
            value: value1
            rate_limit: {unit: minute, requests_per_unit: 20}
    """,
    "9": """
        domain: example9
        descriptors:
          - key: key1
            value: value*
            rate_limit: {unit: minute, requests_per_unit: 20}
    """,
}


@pytest.fixture
async def table(tmp_path: Path) -> AsyncIterator[RateLimitTable]:
    for name, text in EXAMPLES.items():
        (tmp_path / f"example{name}.yaml").write_text(textwrap.dedent(text))
    snapshot = load_config(tmp_path, REGISTRY)
    env = Env("rls.test", logging.getLogger("test"), CollectorRegistry(), lambda: 1000.0)
    built = RateLimitTable.from_configs(
        snapshot.rate_limit_configs,
        registry=REGISTRY,
        env=env,
        calls=HandlerCalls(ServerMetrics.create(), 1.0),
    )
    yield built
    await built.close()


def limit_of(table: RateLimitTable, domain: str, *entries: tuple[str, str]) -> int | None:
    rule = table.match(domain, list(entries))
    return None if rule is None else rule.policy.requests_per_unit


async def test_every_readme_example_loads_and_answers_as_documented(table: RateLimitTable) -> None:
    # 1: two values of one key, 500/s each
    assert limit_of(table, "mongo_cps", ("database", "users")) == 500
    assert limit_of(table, "mongo_cps", ("database", "default")) == 500
    # 2: nested marketing limit per number, and a per-number limit
    assert limit_of(table, "messaging", ("message_type", "marketing"), ("to_number", "1")) == 5
    assert limit_of(table, "messaging", ("to_number", "2061111111")) == 100
    # 3: key/value before key alone; 0 blocks
    assert limit_of(table, "edge_proxy_per_ip", ("remote_address", "50.0.0.1")) == 10
    assert limit_of(table, "edge_proxy_per_ip", ("remote_address", "50.0.0.5")) == 0
    blocked = await table.should_rate_limit(
        "edge_proxy_per_ip", [[("remote_address", "50.0.0.5")]], 1
    )
    assert blocked.code is Code.OVER_LIMIT
    # 4: the request must have as many entries as the config has levels
    assert limit_of(table, "example4", ("key", "value"), ("subkey", "subvalue")) == 300
    assert limit_of(table, "example4", ("key", "value")) is None
    # 5: unlimited is OK with MaxUint32 remaining
    ldap = await table.should_rate_limit("internal", [[("ldap", "x")], [("azure", "y")]], 1)
    assert [s.remaining for s in ldap.statuses] == [UNLIMITED_REMAINING, 99]
    # 6: user-a is never limited (shadow mode), user-b at 20/s
    service = ("service", "auth-service")
    shadow = await table.should_rate_limit("example6", [[service, ("user", "user-a")]], 11)
    assert shadow.code is Code.OK
    assert limit_of(table, "example6", service, ("user", "user-b")) == 20
    # 7: the replacing rule drops the named one when both match
    user = ("user", "bkthomps")
    both = await table.should_rate_limit(
        "example7", [[("key_1", "value_1"), user], [("key_2", "value_2"), user]], 1
    )
    assert [s.rule is not None for s in both.statuses] == [False, True]
    # 8: detailed_metric: the value goes into the statistics key
    detailed = await table.should_rate_limit(
        "example8", [[("key1", "unspecified_value")], [("key1", "value1")]], 1
    )
    assert [s.stat_key for s in detailed.statuses] == [
        "example8.key1_unspecified_value",
        "example8.key1_value1",
    ]
    # 9: a wildcard value
    assert limit_of(table, "example9", ("key1", "value_1")) == 20
    assert limit_of(table, "example9", ("key1", "other")) is None
