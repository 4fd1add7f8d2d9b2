"""Quotas across mixer replicas sharing one real Redis, and a Redis outage under load."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mixer.client import MixerClient
from tests.mixer_process import MixerProcess
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

QUOTA = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: quotas, namespace: istio-system}}
spec:
  compiledAdapter: {adapter}
  params:
    quotas:
    - name: rq.instance.istio-system
      maxAmount: 5
      validDuration: 10s
      rateLimitAlgorithm: FIXED_WINDOW
{extra}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: rq, namespace: istio-system}}
spec:
  compiledTemplate: quota
  params:
    dimensions: {{client: 'source.user | "anonymous"'}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: rq, namespace: istio-system}}
spec:
  actions: [{{handler: quotas, instances: [rq]}}]
"""


def quota_rules(tmp_path: Path, name: str, adapter: str = "memquota", extra: str = "") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "quota.yaml").write_text(QUOTA.format(adapter=adapter, extra=extra))
    return directory


def answer(mixer: MixerProcess, dedup: str | None = None, user: str = "alice") -> tuple[int, int]:
    """(Check status code, granted amount) for one unit of quota rq."""
    with MixerClient(mixer.address, timeout=5) as client:
        result = client.check({"source.user": user}, quotas={"rq": 1}, deduplication_id=dedup)
    return result.status_code, result.quotas["rq"].granted


def warm_up(mixer: MixerProcess) -> None:
    """Connect a replica to Redis (the first call connects and loads the script, which on a
    loaded machine can take longer than the 50 ms quota timeout) before a measured burst."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answer(mixer, user="warm-up")[0] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the replica never reached Redis")


def granted(mixer: MixerProcess, dedup: str | None = None, user: str = "alice") -> int:
    status, amount = answer(mixer, dedup, user)
    return amount if status == 0 else 0


def test_two_replicas_share_one_budget(
    start_mixer: Start, tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.flush()
    rules = quota_rules(tmp_path, "rules")
    replicas = [start_mixer(rules, extra_args=["--redis-url", redis_server.url]) for _ in range(2)]
    for replica in replicas:
        warm_up(replica)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: answer(replicas[i % 2], user="shared"), range(10)))
    assert sorted(answers) == [(0, 1)] * 5 + [(8, 0)] * 5
    # the memquota handler runs on Redis
    assert "redisquota" in replicas[0].admin_get("/debug/routes")[1]


def test_a_retry_on_another_replica_is_not_charged_twice(
    start_mixer: Start, tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.flush()
    rules = quota_rules(tmp_path, "rules")
    a, b = (start_mixer(rules, extra_args=["--redis-url", redis_server.url]) for _ in range(2))
    warm_up(a)
    warm_up(b)
    assert [granted(a, dedup="call-1", user="bob"), granted(b, dedup="call-1", user="bob")] == [
        1,
        1,
    ]
    # only one unit was charged: four more distinct calls fit, the fifth does not
    later = [granted(a if i % 2 else b, dedup=f"call-{i + 2}", user="bob") for i in range(5)]
    assert later == [1, 1, 1, 1, 0]


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_killed_under_load_then_back(
    start_mixer: Start, tmp_path: Path, own_redis_server: RedisServer, fail_open: bool
) -> None:
    rules = quota_rules(
        tmp_path,
        "rules",
        adapter="redisquota",
        extra=f"    redisServerUrl: {own_redis_server.address}\n"
        f"    failOpen: {str(fail_open).lower()}\n    timeout: 50ms",
    )
    mixer = start_mixer(rules)
    results: list[tuple[float, int, int]] = []  # (latency, status, granted)
    stop = threading.Event()

    def load() -> None:
        with MixerClient(mixer.address, timeout=5) as client:
            i = 0
            while not stop.is_set() and i < 5000:
                i += 1
                start = time.monotonic()
                answer = client.check({"source.user": f"u{i}"}, quotas={"rq": 1})
                results.append(
                    (time.monotonic() - start, answer.status_code, answer.quotas["rq"].granted)
                )

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.5)
    own_redis_server.kill()
    # The check in flight when Redis died may have had its answer already; the load sends one
    # check at a time, so only the first one recorded after the kill can be such a check.
    outage_start = len(results) + 1
    time.sleep(1.0)
    outage = results[outage_start:]
    own_redis_server.restart()
    recovered_at = len(results)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        s == 0 and g == 1 for _, s, g in results[recovered_at:]
    ):
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    thread.join(10)
    after = results[-20:]
    print(
        f"\nRedis outage (failOpen={fail_open}): {len(outage)} checks during it, statuses "
        f"{sorted({s for _, s, _ in outage})}, "
        f"worst latency {max(lat for lat, _, _ in outage):.3f}s"
    )
    assert outage, "no checks ran during the outage"
    assert max(lat for lat, _, _ in outage) < 1.0  # nothing hangs past the Redis timeout
    if fail_open:
        assert all(s == 0 and g == 1 for _, s, g in outage)
    else:
        assert all(s == 14 for _, s, _ in outage)  # UNAVAILABLE
    # adapters' own metrics are on the adapter metrics port
    with urllib.request.urlopen(f"http://127.0.0.1:{mixer.metrics_port}/metrics") as resp:
        text = resp.read().decode()
    backend_errors = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mixer_quota_backend_errors_total"
    )
    assert backend_errors >= 1
    assert all(s == 0 and g == 1 for _, s, g in after), (
        "quotas did not recover after Redis came back"
    )
