"""mixer as a drop-in for envoyproxy/ratelimit, over a real socket with Envoy's own client:
each case is a behaviour ratelimit documents (its README's config section, and its service
code where the README is silent: quota_mode, per-descriptor hits_addend), answered the same
way by memquota and by a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters import load_registry
from mixer.api.ratelimit_servicer import RateLimitService
from mixer.config import load_config
from mixer.envoy.service.ratelimit.v3 import rls_pb2
from mixer.runtime.build import build_runtime
from mixer.runtime.ratelimit import RateLimitTable, build_ratelimit_table
from mixer.runtime.runtime import RuntimeHolder
from mixer.telemetry import ServerMetrics
from tests.compat.harness import run_envoy_client
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

REGISTRY = load_registry()

# Every value is written unquoted where ratelimit's users write it so.
SCENARIO_YAML = """\
domain: api
descriptors:
  - key: path
    value: "/users/*"
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: status
    value: 404
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: tenant
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: plan
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 5}
  - key: client
    detailed_metric: true
    rate_limit: {unit: hour, requests_per_unit: 100}
"""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


Serve = Callable[..., Any]


@pytest.fixture(params=["memquota", "redisquota"])
async def serve(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Serve]:
    """serve(yaml=..., **service options) -> ("127.0.0.1:port", metrics) on one backend."""
    redis_url = ""
    if request.param == "redisquota":
        redis_server.flush()
        redis_url = redis_server.url
    servers: list[grpc.aio.Server] = []
    tables: list[RateLimitTable] = []

    async def start(
        yaml: str | None = SCENARIO_YAML, epoch_windows: bool = False, **options: Any
    ) -> tuple[str, ServerMetrics]:
        directory = tmp_path / f"config{len(servers)}"
        directory.mkdir()
        if yaml is not None:
            (directory / "ratelimit.yaml").write_text(yaml)
        snapshot = load_config(directory, REGISTRY)
        metrics = ServerMetrics.create()
        runtime = await build_runtime(snapshot, metrics, revision="test")
        table = await build_ratelimit_table(
            snapshot,
            metrics.registry,
            redis_url,
            registry=REGISTRY,
            calls=runtime.dispatcher.calls,
            epoch_windows=epoch_windows,
        )
        tables.append(table)
        service = RateLimitService(
            RuntimeHolder(runtime), metrics, table_of=lambda _rt: table, **options
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((service.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", metrics

    yield start
    for server in servers:
        await server.stop(None)
    for table in tables:
        await table.close()


async def envoy(address: str, request: Any) -> Any:
    return await asyncio.to_thread(run_envoy_client, address, "rls", request)


def rls(*descriptors: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"domain": "api", "descriptors": list(descriptors), **fields}


def entry(key: str, value: str, **fields: Any) -> dict[str, Any]:
    return {"entries": [{"key": key, "value": value}], **fields}


def codes(answers: list[dict[str, Any]]) -> list[str]:
    assert all(a["ok"] for a in answers), answers
    return [a["response"]["overall_code"] for a in answers]


def samples(metrics: ServerMetrics, name: str) -> dict[tuple[str, ...], float]:
    """``{(domain, key): value}`` of one counter, parsed from the text format."""
    from prometheus_client import generate_latest

    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == name:
                found[(sample.labels.get("domain", ""), sample.labels.get("key", ""))] = (
                    sample.value
                )
    return found


async def test_share_threshold_values_share_one_bucket(serve: Serve) -> None:
    address, _ = await serve()
    users = [rls(entry("path", f"/users/{n}")) for n in ("a", "b", "c", "d")]
    assert codes(await envoy(address, users)) == ["OK", "OK", "OK", "OVER_LIMIT"]


async def test_an_unquoted_number_matches_the_request_text(serve: Serve) -> None:
    address, _ = await serve()
    answers = await envoy(address, [rls(entry("status", "404"))] * 3)
    assert codes(answers) == ["OK", "OK", "OVER_LIMIT"]


async def test_hits_addend_per_request_and_per_descriptor(serve: Serve) -> None:
    address, _ = await serve()
    answers = await envoy(
        address,
        [
            rls(entry("status", "404"), hits_addend=2),  # takes 2 of 2
            rls(entry("status", "404", hits_addend=0), hits_addend=5),  # 0 wins: check only
        ],
    )
    assert codes(answers) == ["OK", "OK"]
    statuses = [a["response"]["statuses"][0] for a in answers]
    assert [s["limit_remaining"] for s in statuses] == [0, 0]


async def test_quota_mode_fails_only_when_every_quota_descriptor_is_over(serve: Serve) -> None:
    address, _ = await serve()
    tenant, plan = entry("tenant", "t1"), entry("plan", "p1")
    answers = await envoy(address, [rls(tenant, plan), rls(tenant, plan)])
    # second call: tenant (1/hour) is over, plan (5/hour) is not: OK, statuses kept
    assert codes(answers) == ["OK", "OK"]
    assert [s["code"] for s in answers[1]["response"]["statuses"]] == ["OVER_LIMIT", "OK"]
    alone = await envoy(address, rls(tenant))
    assert codes([alone]) == ["OVER_LIMIT"]  # the only quota descriptor is over


async def test_global_shadow_mode_answers_ok_and_keeps_statuses(serve: Serve) -> None:
    address, metrics = await serve(shadow_mode=True)
    answers = await envoy(address, [rls(entry("status", "404"))] * 3)
    assert codes(answers) == ["OK", "OK", "OK"]
    assert answers[2]["response"]["statuses"][0]["code"] == "OVER_LIMIT"
    assert samples(metrics, "ratelimit_service_global_shadow_mode_total") == {("", ""): 1.0}


async def test_ratelimit_header_mode(serve: Serve) -> None:
    address, _ = await serve(headers="ratelimit")
    answers = await envoy(address, [rls(entry("status", "404"), entry("client", "c1"))] * 3)
    headers = [
        {h["key"]: h["value"] for h in a["response"]["response_headers_to_add"]} for a in answers
    ]
    # the descriptor closest to its limit, then the one over it
    assert [h["RateLimit-Limit"] for h in headers] == ["2", "2", "2"]
    assert [h["RateLimit-Remaining"] for h in headers] == ["1", "0", "0"]
    assert all(0 < int(h["RateLimit-Reset"]) <= 3600 for h in headers)


async def test_no_rate_limit_config_is_the_error_ratelimit_gives(serve: Serve) -> None:
    address, _ = await serve(yaml=None)
    answer = await envoy(address, rls(entry("status", "404")))
    assert answer["ok"] is False and answer["code"] == "UNKNOWN", answer
    assert "no rate limit configuration loaded" in answer["details"], answer


async def test_per_rule_statistics_with_ratelimit_names(serve: Serve) -> None:
    address, metrics = await serve(near_limit_ratio=0.5)
    await envoy(address, [rls(entry("status", "404"))] * 3 + [rls(entry("client", "1.2.3.4"))])
    rule = ("api", "status_404")
    assert samples(metrics, "ratelimit_service_rate_limit_total_hits_total")[rule] == 3
    assert samples(metrics, "ratelimit_service_rate_limit_within_limit_total")[rule] == 2
    assert samples(metrics, "ratelimit_service_rate_limit_over_limit_total")[rule] == 1
    # T = floor(2 * 0.5) = 1: the second hit is past it
    assert samples(metrics, "ratelimit_service_rate_limit_near_limit_total")[rule] == 1
    detailed = samples(metrics, "ratelimit_service_rate_limit_total_hits_total")
    assert detailed[("api", "client_1_2_3_4")] == 1  # detailed_metric, IPv4 dots sanitized


async def test_per_descriptor_limit_override_has_its_own_bucket(serve: Serve) -> None:
    address, _ = await serve()
    over = {"requests_per_unit": 1, "unit": "MINUTE"}
    bigger = {"requests_per_unit": 3, "unit": "MINUTE"}
    # no rule matches key "x": the override applies anyway (the tree is not walked)
    answers = await envoy(
        address,
        [
            rls(entry("x", "1", limit=over)),
            rls(entry("x", "1", limit=over)),
            rls(entry("x", "1", limit=bigger)),  # another limit: another bucket
            rls(entry("status", "404", limit=bigger)),  # overrides the configured 2/hour
            rls(entry("x", "1", limit=over), domain="unknown"),  # the domain must exist
        ],
    )
    assert codes(answers) == ["OK", "OVER_LIMIT", "OK", "OK", "OK"]
    statuses = [a["response"]["statuses"][0] for a in answers]
    assert statuses[0]["current_limit"] == {"requests_per_unit": 1, "unit": "MINUTE", "name": ""}
    assert [s["limit_remaining"] for s in statuses[:4]] == [0, 0, 2, 2]
    assert "current_limit" not in statuses[4]


async def test_an_override_without_a_unit_is_invalid(serve: Serve) -> None:
    address, _ = await serve()
    answer = await envoy(address, rls(entry("x", "1", limit={"requests_per_unit": 1})))
    assert answer["ok"] is False and answer["code"] == "INVALID_ARGUMENT", answer


VALUES_YAML = """\
domain: api
descriptors:
  - key: user
    value: "u*"
    value_to_metric: true
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: path
    value: "/p/*"
    rate_limit: {unit: hour, requests_per_unit: 10}
"""


async def test_value_to_metric_keys_and_their_bound(serve: Serve) -> None:
    """1,000 distinct wildcard values: value_to_metric names the first 50 by value, the rest
    fold into the rule's config key; a rule without it has one series whatever the values."""
    address, metrics = await serve(yaml=VALUES_YAML, max_stat_keys=50)
    request = rls_pb2.RateLimitRequest(domain="api")
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
            request_serializer=rls_pb2.RateLimitRequest.SerializeToString,
            response_deserializer=rls_pb2.RateLimitResponse.FromString,
        )
        # 32 values a request: 64 descriptors, the default --max-descriptors.
        for batch in range(0, 1000, 32):
            del request.descriptors[:]
            for n in range(batch, min(batch + 32, 1000)):
                request.descriptors.add().entries.add(key="user", value=f"u{n}")
                request.descriptors.add().entries.add(key="path", value=f"/p/{n}")
            await call(request, timeout=10)
    hits = samples(metrics, "ratelimit_service_rate_limit_total_hits_total")
    assert hits[("api", "user_u0")] == 1  # the request's value, not the pattern
    assert hits[("api", "user_u*")] == 950  # folded into the config key
    assert hits[("api", "path_/p/*")] == 1000  # no value_to_metric: the config key
    assert len(hits) == 50 + 1 + 1
    folded = samples(metrics, "mixer_ratelimit_stat_keys_folded_total")
    assert folded == {("", ""): 950}


def seconds(text: str) -> float:
    assert text.endswith("s"), text
    return float(text[:-1])


async def test_epoch_windows_end_at_the_next_multiple_of_the_unit(serve: Serve) -> None:
    """ratelimit's windows: floor(now / unit) * unit since the epoch; ours by default start at
    the first hit. `client` is limited per hour (one bucket per value: the two servers share
    Redis)."""
    aligned, _ = await serve(epoch_windows=True)
    before = time.time()
    answer = await envoy(aligned, rls(entry("client", "aligned")))
    after = time.time()
    reset = seconds(answer["response"]["statuses"][0]["duration_until_reset"])
    expected = sorted((3600 - before % 3600, 3600 - after % 3600))
    assert expected[0] - 1 <= reset <= expected[1] + 1, (reset, expected)
    default, _ = await serve()
    answer = await envoy(default, rls(entry("client", "first-hit")))
    assert 3598 <= seconds(answer["response"]["statuses"][0]["duration_until_reset"]) <= 3600


META_YAML = """\
domain: api
descriptors:
  - key: tenant
    metadata: {team: core, limits: {tier: gold}}
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: plan
    metadata: {team: other, limits: {region: eu}, since: 2024-01-01}
    rate_limit: {unit: hour, requests_per_unit: 5}
"""


async def test_dynamic_metadata_carries_passed_rules_metadata(serve: Serve) -> None:
    address, _ = await serve(yaml=META_YAML, dynamic_metadata=True)
    tenant, plan = entry("tenant", "t1", hits_addend=1), entry("plan", "p1", hits_addend=2)
    answers = await envoy(address, [rls(tenant, plan, hits_addend=3), rls(tenant, plan)])
    first = answers[0]["response"]["dynamic_metadata"]
    assert first["domain"] == "api"
    assert first["hitsAddend"] == 3
    assert [d["entries"] for d in first["descriptors"]] == [["tenant=t1"], ["plan=p1"]]
    assert [d["hitsAddend"] for d in first["descriptors"]] == [1, 2]
    # request order, first value wins, maps merged
    assert first["metadata"] == {
        "team": "core",
        "limits": {"tier": "gold", "region": "eu"},
        "since": "2024-01-01",
    }
    # tenant (1/hour) fails on the second call: only plan's metadata is returned
    assert answers[1]["response"]["statuses"][0]["code"] == "OVER_LIMIT"
    assert answers[1]["response"]["dynamic_metadata"]["metadata"]["team"] == "other"


async def test_global_quota_mode_counts_unmatched_descriptors_as_passing(serve: Serve) -> None:
    address, _ = await serve(quota_mode=True)
    fill = rls(entry("status", "404"), hits_addend=2)  # the whole 2/hour
    with_unmatched = rls(entry("status", "404"), entry("nothing", "here"))
    alone = rls(entry("status", "404"))
    answers = await envoy(address, [fill, with_unmatched, alone])
    assert codes(answers) == ["OK", "OK", "OVER_LIMIT"]
    assert answers[1]["response"]["statuses"][0]["code"] == "OVER_LIMIT"
