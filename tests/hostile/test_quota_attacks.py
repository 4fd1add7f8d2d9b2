"""Attacks on quotas (issue 20, findings 1-4), each from one client on loopback against a
real `mixer serve`, bounded in count and time, asserting the bound that holds.

1. ext_authz with one fixed ``x-request-id``: every check is charged (no dedup header by default).
2. A deduplication id reused on another bucket, or with another amount, is charged, not replayed
   (memquota and redisquota alike).
3. The shipped rules' per-client quota: varying ``x-forwarded-for`` does not multiply it.
4. The shipped ``ratings`` override: its own burst (20), not the default's 200.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest

from mixer.client import MixerClient
from mixer.envoy.service.auth.v3 import external_auth_pb2
from tests.mixer_process import MixerProcess
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

OK, RESOURCE_EXHAUSTED = 0, 8
AUTHZ_CHECK = "/envoy.service.auth.v3.Authorization/Check"
# The shipped rules/quota.yaml: 100 a second per client and destination, burst 200; ratings 20.
RATE, BURST = 100, 200
RATINGS_RATE, RATINGS_BURST = 20, 20
ATTACK_SECONDS = 60.0  # no attack below may run longer than this


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
    status code of each (gRPC errors as their code) and the seconds it all took."""
    chans = [grpc.aio.insecure_channel(address) for _ in range(channels)]
    calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]
    calls = [c.unary_unary(method) for c in chans]
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int, body: bytes) -> int:
        async with gate:
            try:
                return decode(await calls[i % channels](body, timeout=timeout))
            except grpc.aio.AioRpcError as err:
                return int(err.code().value[0])

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
