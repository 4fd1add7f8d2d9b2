"""RLS on the real server with the shipped rules/ratelimit.yaml, and its decision metrics."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from mixer.envoy.service.ratelimit.v3 import rls_pb2
from tests.integration.live import metric
from tests.mixer_process import FLAVOURS, ROOT, MixerProcess


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


def should_rate_limit(mixer: MixerProcess, tenant: str, path: str) -> rls_pb2.RateLimitResponse:
    req = rls_pb2.RateLimitRequest(domain="edge")
    d = req.descriptors.add()
    d.entries.add(key="tenant", value=tenant)
    d.entries.add(key="path", value=path)
    with grpc.insecure_channel(mixer.address) as channel:
        call = channel.unary_unary(
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
            request_serializer=rls_pb2.RateLimitRequest.SerializeToString,
            response_deserializer=rls_pb2.RateLimitResponse.FromString,
        )
        response: rls_pb2.RateLimitResponse = call(req, timeout=5)
        return response


def test_shipped_rate_limits_and_their_metrics(start_mixer: Start) -> None:
    mixer = start_mixer(ROOT / "rules")
    codes = [should_rate_limit(mixer, "globex", "/export").overall_code for _ in range(11)]
    ok, over = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT
    assert codes == [ok] * 10 + [over]  # 10 per hour for /export of one tenant
    quota = "rls;edge;tenant=*;path=/export"
    assert metric(mixer, "mixer_quota_results_total", quota=quota, result="granted") == 10
    assert metric(mixer, "mixer_quota_results_total", quota=quota, result="exhausted") == 1
