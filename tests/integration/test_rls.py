"""Envoy's rate limit service over a real socket: a grpc.aio server on 127.0.0.1 hosting
`RateLimitService`, called with Envoy's own generated client (the isolated xds-protos venv), on
an envoyproxy/ratelimit-format YAML file loaded by `mixer.config.load_config`; counted in memory
and in a real redis-server shared by two "replicas"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

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
MONGO_YAML = """\
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 2
  - key: client
    rate_limit:
      unit: minute
      requests_per_unit: 1
    shadow_mode: false
"""
USERS = {
    "domain": "mongo_cps",
    "descriptors": [{"entries": [{"key": "database", "value": "users"}]}],
}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    directory.mkdir(exist_ok=True)
    (directory / "mongo.yaml").write_text(MONGO_YAML)
    return directory


Serve = Callable[..., Any]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """serve(redis_url="", headers="draft") -> "127.0.0.1:port" of a server on the YAML config."""
    servers: list[grpc.aio.Server] = []
    tables: list[RateLimitTable] = []

    async def start(redis_url: str = "", headers: str = "draft") -> str:
        snapshot = load_config(config_dir(tmp_path), REGISTRY)
        metrics = ServerMetrics.create()
        runtime = await build_runtime(snapshot, metrics, revision="test")
        table = await build_ratelimit_table(
            snapshot, metrics.registry, redis_url, registry=REGISTRY, calls=runtime.dispatcher.calls
        )
        tables.append(table)
        service = RateLimitService(
            RuntimeHolder(runtime), metrics, headers=headers, table_of=lambda _rt: table
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((service.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(None)
    for table in tables:
        await table.close()


async def envoy(address: str, request: Any) -> Any:
    return await asyncio.to_thread(run_envoy_client, address, "rls", request)


def reset_seconds(status: dict[str, Any]) -> float:
    text = status["duration_until_reset"]
    assert text.endswith("s"), text
    return float(text[:-1])


async def test_yaml_config_with_envoy_client_ok_then_over_limit(serve: Serve) -> None:
    address = await serve()
    answers = await envoy(address, [USERS, USERS, USERS])
    assert all(a["ok"] for a in answers), answers
    responses = [a["response"] for a in answers]
    assert [r["overall_code"] for r in responses] == ["OK", "OK", "OVER_LIMIT"]
    statuses = [r["statuses"][0] for r in responses]
    assert [s["code"] for s in statuses] == ["OK", "OK", "OVER_LIMIT"]
    assert [s["limit_remaining"] for s in statuses] == [1, 0, 0]
    for s in statuses:
        assert s["current_limit"]["requests_per_unit"] == 2
        assert s["current_limit"]["unit"] == "SECOND"
        assert 0 < reset_seconds(s) <= 1.0
    headers = {h["key"]: h["value"] for h in responses[2]["response_headers_to_add"]}
    assert headers == {
        "x-ratelimit-limit": "2, 2;w=1",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "1",
    }


async def test_key_only_rule_unknown_domain_and_hits_addend_over_the_wire(serve: Serve) -> None:
    address = await serve(headers="ietf")
    client = {"entries": [{"key": "client", "value": "alice"}]}
    answers = await envoy(
        address,
        [
            {"domain": "mongo_cps", "descriptors": [client, {"entries": [{"key": "x"}]}]},
            {"domain": "mongo_cps", "descriptors": [client]},
            {
                "domain": "mongo_cps",
                "descriptors": [{"entries": [{"key": "client", "value": "bob"}]}],
            },
            {"domain": "nope", "descriptors": [client]},
            {**USERS, "hits_addend": 3},
        ],
    )
    codes = [a["response"]["overall_code"] for a in answers]
    assert codes == ["OK", "OVER_LIMIT", "OK", "OK", "OVER_LIMIT"]
    first = answers[0]["response"]
    assert len(first["statuses"]) == 2 and "current_limit" not in first["statuses"][1]
    assert {h["key"]: h["value"] for h in first["response_headers_to_add"]} == {
        "RateLimit-Policy": '"client=*";q=1;w=60',
        "RateLimit": '"client=*";r=0;t=60',
    }
    unknown = answers[3]["response"]
    assert unknown["statuses"] == [{"code": "OK", "limit_remaining": 0}]  # no current_limit
    assert unknown["response_headers_to_add"] == []


async def test_empty_domain_is_invalid_argument(serve: Serve) -> None:
    address = await serve()
    answer = await envoy(address, {"domain": "", "descriptors": USERS["descriptors"]})
    assert answer["ok"] is False and answer["code"] == "INVALID_ARGUMENT"


async def test_redis_backed_replicas_share_the_budget(
    serve: Serve, redis_server: RedisServer
) -> None:
    redis_server.flush()
    first = await serve(redis_url=redis_server.url)
    second = await serve(redis_url=redis_server.url)
    # 2 per second: the three calls of one client process are milliseconds apart
    answers = await envoy(first, [USERS, USERS, USERS])
    assert [a["response"]["overall_code"] for a in answers] == ["OK", "OK", "OVER_LIMIT"]
    assert [a["response"]["statuses"][0]["limit_remaining"] for a in answers] == [1, 0, 0]
    assert 0 < reset_seconds(answers[2]["response"]["statuses"][0]) <= 1.0
    # 1 per minute per client value, shared by both replicas through Redis
    carol = {
        "domain": "mongo_cps",
        "descriptors": [{"entries": [{"key": "client", "value": "carol"}]}],
    }
    assert (await envoy(first, carol))["response"]["overall_code"] == "OK"
    later = await envoy(second, [carol, carol])
    assert [a["response"]["overall_code"] for a in later] == ["OVER_LIMIT", "OVER_LIMIT"]
    status = later[1]["response"]["statuses"][0]
    assert status["limit_remaining"] == 0 and 0 < reset_seconds(status) <= 60.0
    with redis_server.client() as direct:
        assert direct.keys("*carol*"), "the count lives in Redis"


async def test_redis_down_is_unavailable_never_unknown(serve: Serve) -> None:
    server = RedisServer().start()
    try:
        address = await serve(redis_url=server.url)
        assert (await envoy(address, USERS))["response"]["overall_code"] == "OK"
        server.kill()
        answer = await envoy(address, USERS)
        assert answer["ok"] is False and answer["code"] == "UNAVAILABLE", answer
        assert answer["elapsed_ms"] < 2000
    finally:
        server.close()


async def test_our_own_stub_sees_the_same_answer(serve: Serve) -> None:
    address = await serve(headers="off")
    request = rls_pb2.RateLimitRequest(domain="mongo_cps")
    request.descriptors.add().entries.add(key="database", value="users")
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
            request_serializer=rls_pb2.RateLimitRequest.SerializeToString,
            response_deserializer=rls_pb2.RateLimitResponse.FromString,
        )
        answers = [await call(request, timeout=5) for _ in range(3)]
    assert [r.overall_code for r in answers] == [1, 1, 2]
    assert [r.statuses[0].limit_remaining for r in answers] == [1, 0, 0]
    assert all(len(r.response_headers_to_add) == 0 for r in answers)
