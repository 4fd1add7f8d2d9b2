"""Attacks on quotas (issue 20, findings 1-4 and 15), each from one client on loopback against a
real `mixer serve`, bounded in count and time, asserting the bound that holds.

1. ext_authz with one fixed ``x-request-id``: every check is charged (no dedup header by default).
2. A deduplication id reused on another bucket, or with another amount, is charged, not replayed
   (memquota and redisquota alike).
3. The shipped rules' per-client quota: varying ``x-forwarded-for`` does not multiply it.
4. The shipped ``ratings`` override: its own burst (20), not the default's 200.
15. A burst of 1,500 quota calls held up by a busy event loop while Redis answers: no
    UNAVAILABLE. (Redis stopped or killed, and the burst through a whole server:
    tests/integration/test_redisquota_outage.py.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from adapters import redisquota
from adapters.base import Env, Instance, QuotaArgs, QuotaResult
from mixer.client import MixerClient, decode_check_response
from mixer.envoy.service.auth.v3 import external_auth_pb2
from mixer.v1 import mixer_pb2
from tests.mixer_process import FLAVOURS, MixerProcess
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

OK, CANCELLED, RESOURCE_EXHAUSTED, UNAVAILABLE = 0, 1, 8, 14
AUTHZ_CHECK = "/envoy.service.auth.v3.Authorization/Check"
MIXER_CHECK = "/istio.mixer.v1.Mixer/Check"
# The shipped rules/quota.yaml: 100 a second per client and destination, burst 200; ratings 20.
RATE, BURST = 100, 200
RATINGS_RATE, RATINGS_BURST = 20, 20
ATTACK_SECONDS = 60.0  # no attack below may run longer than this
RPC_ERROR = 1000  # added to the code of a call that failed as a whole (not a Check answer)


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


@pytest.fixture(params=["memquota", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The `mixer serve` arguments of a quota backend: in memory, or on a real redis-server."""
    if request.param == "memquota":
        yield []
        return
    with RedisServer() as server:
        yield ["--redis-url", server.url]


def authz_request(
    source_ip: str,
    *,
    app: str = "productpage",
    headers: dict[str, str] | None = None,
) -> bytes:
    """An ext_authz CheckRequest as Envoy sends it, from a peer at `source_ip`."""
    req = external_auth_pb2.CheckRequest()
    attrs = req.attributes
    attrs.source.address.socket_address.address = source_ip
    attrs.source.address.socket_address.port_value = 40000
    attrs.destination.address.socket_address.address = "10.9.9.9"
    attrs.destination.address.socket_address.port_value = 9080
    attrs.destination.labels["app"] = app
    http = attrs.request.http
    http.method = "GET"
    http.path = "/api/items"
    http.host = f"{app}:9080"
    http.headers.update({"user-agent": "curl/8", **(headers or {})})
    return req.SerializeToString()


def authz_code(reply: bytes) -> int:
    code: int = external_auth_pb2.CheckResponse.FromString(reply).status.code
    return code


def mixer_code(reply: bytes) -> int:
    return decode_check_response(mixer_pb2.CheckResponse.FromString(reply)).status_code


async def fire(
    address: str,
    method: str,
    requests: Sequence[bytes],
    decode: Callable[[bytes], int],
    *,
    in_flight: int,
    channels: int = 1,
    timeout: float = 10.0,
) -> tuple[list[int], float]:
    """Send `requests` with at most `in_flight` outstanding over `channels` connections; the
    status code of each (a gRPC error as `RPC_ERROR` + its code) and the seconds it all took."""
    # A local subchannel pool each: channels to one target would otherwise share a connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    chans = [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]
    calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]
    calls = [c.unary_unary(method) for c in chans]
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int, body: bytes) -> int:
        async with gate:
            try:
                return decode(await calls[i % channels](body, timeout=timeout))
            except grpc.aio.AioRpcError as err:
                return RPC_ERROR + int(err.code().value[0])

    start = time.monotonic()
    try:
        async with asyncio.timeout(ATTACK_SECONDS):
            codes = await asyncio.gather(*(one(i, b) for i, b in enumerate(requests)))
    finally:
        for c in chans:
            await c.close()
    return list(codes), time.monotonic() - start


def granted(codes: Sequence[int]) -> int:
    assert set(codes) <= {OK, RESOURCE_EXHAUSTED}, sorted(set(codes))
    return codes.count(OK)


async def warm_up(mixer: MixerProcess, body: bytes, decode: Callable[[bytes], int]) -> None:
    """One check answered OK (the Redis connection made, the script loaded) before an attack."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        codes, _ = await fire(mixer.address, AUTHZ_CHECK, [body], decode, in_flight=1)
        if codes == [OK]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no OK answer within 10 s; log:\n{mixer.log()[-2000:]}")


# --- finding 1: a fixed x-request-id ------------------------------------------------------------


async def test_a_fixed_request_id_does_not_make_ext_authz_checks_free(
    start_mixer: Start, backend: list[str]
) -> None:
    mixer = start_mixer(extra_args=backend)
    await warm_up(mixer, authz_request("10.1.0.1"), authz_code)
    attack = [authz_request("10.1.0.2", headers={"x-request-id": "fixed"})] * 600
    codes, seconds = await fire(mixer.address, AUTHZ_CHECK, attack, authz_code, in_flight=50)
    bound = BURST + RATE * seconds + 1
    print(f"\nfixed x-request-id: {granted(codes)} of {len(codes)} granted in {seconds:.2f} s")
    assert granted(codes) <= bound, (granted(codes), bound)


# --- finding 2: another bucket's id, or another amount ------------------------------------------

DEDUP_RULES = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotas, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas:
    - {name: rq.instance.istio-system, maxAmount: 5, validDuration: 60s,
       rateLimitAlgorithm: FIXED_WINDOW}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: rq, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {user: 'source.user | "anonymous"'}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: rq, namespace: istio-system}
spec:
  actions: [{handler: quotas, instances: [rq]}]
"""


async def test_a_dedup_id_replays_only_the_same_charge_on_the_same_bucket(
    start_mixer: Start, backend: list[str], tmp_path: Path
) -> None:
    rules = tmp_path / "dedup-rules"
    rules.mkdir()
    (rules / "quota.yaml").write_text(DEDUP_RULES)
    mixer = start_mixer(rules, extra_args=backend)
    with MixerClient(mixer.address, timeout=5) as client:

        def check(user: str, dedup: str, amount: int = 1) -> int:
            answer = client.check({"source.user": user}, {"rq": amount}, deduplication_id=dedup)
            return answer.status_code

        deadline = time.monotonic() + 10  # warm up: the Redis connection, the script
        while check("warm-up", f"w{time.monotonic()}") != OK:
            assert time.monotonic() < deadline
        alice = [check("alice", f"alice-{i}") for i in range(5)]
        bob = [check("bob", f"bob-{i}") for i in range(6)]
        assert alice == [OK] * 5 and bob == [OK] * 5 + [RESOURCE_EXHAUSTED]
        # bob's bucket is empty: alice's ids (granted on her bucket) charge his
        stolen = [check("bob", f"alice-{i}") for i in range(5)]
        # and his own granted ids asking for more are new charges, not replays
        bigger = [check("bob", f"bob-{i}", amount=3) for i in range(5)]
        # a true retry (same bucket, same amount) still gets the first answer
        retries = [check("alice", f"alice-{i}") for i in range(5)]
    print(f"\nstolen ids granted: {stolen.count(OK)} of 5; bigger amounts: {bigger.count(OK)} of 5")
    assert stolen == [RESOURCE_EXHAUSTED] * 5
    assert bigger == [RESOURCE_EXHAUSTED] * 5
    assert retries == [OK] * 5


# --- finding 3: x-forwarded-for chosen by the client --------------------------------------------


async def test_a_forged_x_forwarded_for_does_not_multiply_the_shipped_quota(
    start_mixer: Start,
) -> None:
    mixer = start_mixer()  # the shipped rules/, in memory
    await warm_up(mixer, authz_request("10.2.0.1"), authz_code)
    attack = [
        authz_request("10.2.0.2", headers={"x-forwarded-for": f"203.0.113.{i % 250}, 10.{i}.0.1"})
        for i in range(800)
    ]
    codes, seconds = await fire(mixer.address, AUTHZ_CHECK, attack, authz_code, in_flight=50)
    bound = BURST + RATE * seconds + 1
    print(f"\nvaried x-forwarded-for: {granted(codes)} of {len(codes)} granted in {seconds:.2f} s")
    assert granted(codes) <= bound, (granted(codes), bound)


# --- finding 4: the ratings override's burst ----------------------------------------------------


async def test_the_shipped_ratings_override_allows_its_own_burst(
    start_mixer: Start, backend: list[str]
) -> None:
    mixer = start_mixer(extra_args=backend)
    await warm_up(mixer, authz_request("10.3.0.1"), authz_code)
    attack = [authz_request("10.3.0.2", app="ratings")] * 300
    codes, seconds = await fire(mixer.address, AUTHZ_CHECK, attack, authz_code, in_flight=50)
    bound = RATINGS_BURST + RATINGS_RATE * seconds + 1
    print(f"\nratings: {granted(codes)} of {len(codes)} granted in {seconds:.2f} s")
    assert granted(codes) <= bound, (granted(codes), bound)


# --- finding 15: a busy Redis is not a dead one -------------------------------------------------
# (the same burst through a whole server, and Redis stopped or killed: test_redisquota_outage.py)


async def test_a_burst_behind_a_busy_event_loop_is_not_taken_for_an_outage(
    own_redis_server: RedisServer,
) -> None:
    """The same burst inside one handler, made deterministic: 1,500 quota calls are written to
    Redis, then the event loop is held for 0.2 s (mixer's loop busy with other requests) while
    Redis answers them all. Nothing was lost, so nothing may fail."""
    registry = CollectorRegistry()
    params = redisquota.parse_params(
        {
            "redisServerUrl": own_redis_server.address,  # the defaults: timeout 50ms
            "quotas": [{"name": "rq.instance.ns", "maxAmount": 10**6, "validDuration": "60s"}],
        }
    )
    env = Env("burst.handler.ns", logging.getLogger("test"), registry, time.monotonic)
    handler = redisquota.build(params, env)
    try:

        async def one(i: int) -> QuotaResult:
            instance = Instance("rq.instance.ns", "quota", {"dimensions": {"client": str(i)}})
            return await handler.quota(instance, QuotaArgs(1, dedup_id=f"call-{i}"))

        assert (await one(-1)).granted == 1  # connected, script loaded
        async with asyncio.timeout(ATTACK_SECONDS):
            calls = [asyncio.ensure_future(one(i)) for i in range(1500)]
            await asyncio.sleep(0)  # every call writes its EVALSHA
            time.sleep(0.2)  # the loop is busy; Redis answers meanwhile
            results = await asyncio.gather(*calls)
    finally:
        await handler.close()
    codes = [r.status_code for r in results]
    counts = {code: codes.count(code) for code in set(codes)}
    print(f"\n1,500 calls behind a 0.2 s busy loop: {counts}")
    assert counts == {OK: 1500}
    assert (
        registry.get_sample_value("mixer_quota_backend_errors_total", {"handler": env.handler_name})
        is None
    )
