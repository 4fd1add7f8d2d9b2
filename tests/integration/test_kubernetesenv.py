"""kubernetesenv against an API server started by the test (tests/k8s_api_server.py): list and
watch, workload/owner derivation as Istio's adapter did, 410 Gone, outage and recovery."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters import kubernetesenv
from adapters.base import Env, Instance, StringMap
from adapters.kubernetesenv import KubernetesEnvHandler, KubernetesEnvParams
from tests.k8s_api_server import PODS, RCS, REPLICASETS, KubeApiServer, controller, owned, pod

pytestmark = pytest.mark.integration

NS = "shop"
DEPLOY = ("apps/v1", "ReplicaSet", "reviews-v1-5d8f")
STS = ("apps/v1", "StatefulSet", "db")
DS = ("apps/v1", "DaemonSet", "agent")
JOB = ("batch/v1", "Job", "report-1700000000")
RC = ("v1", "ReplicationController", "legacy-rc")


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def instance(**fields: Any) -> Instance:
    return Instance("attributes.instance.istio-system", "kubernetes", fields)


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def cluster(api: KubeApiServer) -> None:
    api.apply(REPLICASETS, owned("reviews-v1-5d8f", NS, ("apps/v1", "Deployment", "reviews-v1")))
    api.apply(REPLICASETS, owned("orphan-rs", NS, None))
    api.apply(RCS, controller("legacy-rc", NS))
    api.apply(
        PODS,
        pod(
            "reviews-v1-5d8f-abcde",
            NS,
            "10.1.0.5",
            owner=DEPLOY,
            labels={"app": "reviews", "version": "v1"},
            service_account="bookinfo-reviews",
            ports={"istio-proxy": [15090], "reviews": [9080]},
        ),
    )
    api.apply(PODS, pod("db-0", NS, "10.1.0.6", owner=STS))
    api.apply(PODS, pod("agent-x1", "kube-system", "10.1.0.7", owner=DS))
    api.apply(PODS, pod("report-1700000000-q", NS, "10.1.0.8", owner=JOB))
    api.apply(PODS, pod("legacy-rc-z", NS, "10.1.0.9", owner=RC))
    api.apply(PODS, pod("lone.pod", NS, "10.1.0.10", self_link=f"/api/v1/namespaces/{NS}/pods/x"))
    api.apply(
        PODS, pod("orphan-rs-1", NS, "10.1.0.11", owner=("apps/v1", "ReplicaSet", "orphan-rs"))
    )
    api.apply(PODS, pod("late-rs-1", NS, "10.1.0.12", owner=("apps/v1", "ReplicaSet", "late-rs")))


@pytest.fixture
async def api() -> AsyncIterator[KubeApiServer]:
    server = await KubeApiServer().start()
    cluster(server)
    yield server
    await server.stop()


def make_handler(
    api: KubeApiServer, tmp_path: Path, refresh: float = 300.0
) -> tuple[KubernetesEnvHandler, CollectorRegistry]:
    registry = CollectorRegistry()
    params = kubernetesenv.parse_params(
        {"kubeconfig_path": str(api.kubeconfig(tmp_path)), "cache_refresh_duration": f"{refresh}s"}
    )
    env = Env(
        "kubernetesenv.handler.istio-system", logging.getLogger("t"), registry, time.monotonic
    )
    return kubernetesenv.build(params, env), registry


@pytest.fixture
async def handler(
    api: KubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[KubernetesEnvHandler]:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    h, _ = make_handler(api, tmp_path)
    await wait_until(lambda: h.fresh() and len(h.cache) == 8 and api.watches[REPLICASETS] > 0)
    yield h
    await h.close()


def test_params_defaults_and_errors() -> None:
    assert kubernetesenv.parse_params({}) == KubernetesEnvParams()
    assert kubernetesenv.parse_params(None or {}).cache_refresh_duration == datetime.timedelta(
        minutes=5
    )
    with pytest.raises(ValueError, match="cacheRefreshDuration"):
        kubernetesenv.parse_params({"cacheRefreshDuration": "soon"})
    with pytest.raises(ValueError, match="unknown field"):
        kubernetesenv.parse_params({"kubeconfig": "x"})


async def test_deployment_pod_by_ip_gets_every_output(handler: KubernetesEnvHandler) -> None:
    out = await handler.generate(instance(source_ip=ip("10.1.0.5"), destination_uid=""))
    assert out == {
        "source_pod_uid": f"kubernetes://reviews-v1-5d8f-abcde.{NS}",
        "source_pod_ip": ip("10.1.0.5"),
        "source_pod_name": "reviews-v1-5d8f-abcde",
        "source_labels": StringMap({"app": "reviews", "version": "v1"}),
        "source_namespace": NS,
        "source_service_account_name": "bookinfo-reviews",
        "source_host_ip": ip("10.0.0.1"),
        "source_workload_uid": f"istio://{NS}/workloads/reviews-v1",
        "source_workload_name": "reviews-v1",
        "source_workload_namespace": NS,
        "source_owner": f"kubernetes://apis/apps/v1/namespaces/{NS}/deployments/reviews-v1",
    }


@pytest.mark.parametrize(
    ("uid", "workload", "owner"),
    [
        # Istio's kubernetesenv_test.go cases, one per controller chain (§4 of the reference).
        (
            "kubernetes://db-0.shop",
            "db",
            "kubernetes://apis/apps/v1/namespaces/shop/statefulsets/db",
        ),
        (
            "kubernetes://agent-x1.kube-system",
            "agent",
            "kubernetes://apis/apps/v1/namespaces/kube-system/daemonsets/agent",
        ),
        # A CronJob's Job: the Job (timestamp included) is the workload; CronJob never resolved.
        (
            "kubernetes://report-1700000000-q.shop",
            "report-1700000000",
            "kubernetes://apis/batch/v1/namespaces/shop/jobs/report-1700000000",
        ),
        (
            "kubernetes://legacy-rc-z.shop",
            "legacy-rc",
            "kubernetes://apis/v1/namespaces/shop/replicationcontrollers/legacy-rc",
        ),
        # Bare pod: its own name, the selfLink verbatim; a dotted name split at the last dot.
        ("kubernetes://lone.pod.shop", "lone.pod", "/api/v1/namespaces/shop/pods/x"),
        ("lone.pod.shop", "lone.pod", "/api/v1/namespaces/shop/pods/x"),
        # A ReplicaSet without a controller, and one not (yet) cached: the RS is the root.
        (
            "kubernetes://orphan-rs-1.shop",
            "orphan-rs",
            "kubernetes://apis/apps/v1/namespaces/shop/replicasets/orphan-rs",
        ),
        (
            "kubernetes://late-rs-1.shop",
            "late-rs",
            "kubernetes://apis/apps/v1/namespaces/shop/replicasets/late-rs",
        ),
        # A UID that is an IP address is looked up as one.
        ("10.1.0.6", "db", "kubernetes://apis/apps/v1/namespaces/shop/statefulsets/db"),
    ],
)
async def test_workload_and_owner_as_istio_derived_them(
    handler: KubernetesEnvHandler, uid: str, workload: str, owner: str
) -> None:
    out = await handler.generate(instance(destination_uid=uid, destination_port=0))
    assert out["destination_workload_name"] == workload
    assert out["destination_owner"] == owner
    assert "destination_container_name" not in out


async def test_uid_beats_ip_without_fallback_and_ports_name_containers(
    handler: KubernetesEnvHandler,
) -> None:
    out = await handler.generate(
        instance(
            source_uid="kubernetes://missing.shop",
            source_ip=ip("10.1.0.6"),
            destination_uid=f"kubernetes://reviews-v1-5d8f-abcde.{NS}",
            destination_port=9080,
        )
    )
    assert not any(k.startswith("source_") for k in out)  # the UID missed: no IP fallback
    assert out["destination_container_name"] == "reviews"
    unspecified = await handler.generate(instance(source_ip=ip("0.0.0.0")))
    assert unspecified == {}
    mapped = await handler.generate(instance(source_ip=ip("::ffff:10.1.0.6")))
    assert mapped["source_workload_name"] == "db"


async def test_watch_events_update_the_cache(
    handler: KubernetesEnvHandler, api: KubeApiServer
) -> None:
    api.apply(PODS, pod("new-1", NS, "10.1.0.20", owner=STS))
    await wait_until(lambda: handler.cache.find("10.1.0.20") is not None)
    api.delete(PODS, NS, "db-0")
    await wait_until(lambda: handler.cache.find("10.1.0.6") is None)
    # An RS learning its Deployment later changes the workload of its pods.
    api.apply(REPLICASETS, owned("late-rs", NS, ("apps/v1", "Deployment", "late")))
    await wait_until(
        lambda: handler.cache.workload(handler.cache.find(f"{NS}/late-rs-1"))[0] == "late"  # type: ignore[arg-type]
    )
    lists_before = dict(api.lists)
    assert lists_before[PODS] == 1  # events alone, no relist


@pytest.mark.parametrize("as_http", [False, True])
async def test_410_gone_forces_a_relist_that_drops_vanished_pods(
    handler: KubernetesEnvHandler, api: KubeApiServer, as_http: bool
) -> None:
    api.gone_as_http = as_http
    # Changes the handler never sees as events: history is compacted right after them.
    api.objects[PODS].pop(f"{NS}/db-0")
    api.apply(PODS, pod("after-gone", NS, "10.1.0.30", owner=DS))
    api.compact()
    await wait_until(lambda: handler.cache.find("10.1.0.30") is not None)
    assert api.gone_sent >= 1
    assert api.lists[PODS] >= 2
    assert handler.cache.find("10.1.0.6") is None
    assert handler.cache.find(f"{NS}/db-0") is None  # gone from the store, not only the index
    assert handler.fresh()


async def test_outage_answers_nothing_after_refresh_then_recovers(
    api: KubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    h, registry = make_handler(api, tmp_path, refresh=0.5)
    try:
        await wait_until(lambda: h.fresh() and len(h.cache) == 8)
        await api.stop()
        # Within the refresh duration, the last list still answers.
        out = await h.generate(instance(source_ip=ip("10.1.0.5")))
        assert out["source_workload_name"] == "reviews-v1"
        await wait_until(lambda: not h.fresh())
        assert await h.generate(instance(source_ip=ip("10.1.0.5"))) == {}
        errors = registry.get_sample_value(
            "mixer_kubernetesenv_api_errors_total",
            {"handler": "kubernetesenv.handler.istio-system", "resource": "pods"},
        )
        assert errors is not None and errors >= 1
        assert (
            registry.get_sample_value(
                "mixer_kubernetesenv_api_up", {"handler": "kubernetesenv.handler.istio-system"}
            )
            == 0
        )
        api.apply(PODS, pod("while-down", NS, "10.1.0.40", owner=STS))
        await api.start()  # same port
        await wait_until(lambda: h.fresh() and h.cache.find("10.1.0.40") is not None)
        out = await h.generate(instance(source_ip=ip("10.1.0.40")))
        assert out["source_workload_name"] == "db"
    finally:
        await h.close()


async def test_bounded_cache_counts_what_it_drops(
    api: KubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    registry = CollectorRegistry()
    params = kubernetesenv.parse_params(
        {"kubeconfig_path": str(api.kubeconfig(tmp_path)), "maxPods": 3}
    )
    env = Env("k", logging.getLogger("t"), registry, time.monotonic)
    h = kubernetesenv.build(params, env)
    try:
        await wait_until(lambda: h.fresh() and api.watches[PODS] > 0)
        assert len(h.cache) == 3
        dropped = registry.get_sample_value(
            "mixer_kubernetesenv_cache_dropped_total", {"handler": "k"}
        )
        assert dropped == 5
    finally:
        await h.close()


async def test_two_handlers_share_one_registry_and_close_apart(
    api: KubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two kubernetesenv handlers in one config, or one rebuilt by a reload, share the
    # adapter registry: building the second must not fail on duplicate metric names.
    monkeypatch.delenv("KUBECONFIG", raising=False)
    registry = CollectorRegistry()
    params = kubernetesenv.parse_params({"kubeconfig_path": str(api.kubeconfig(tmp_path))})
    first = kubernetesenv.build(params, Env("a", logging.getLogger("t"), registry, time.monotonic))
    second = kubernetesenv.build(params, Env("b", logging.getLogger("t"), registry, time.monotonic))
    try:
        await wait_until(lambda: first.fresh() and second.fresh())
        await first.close()
        pods = registry.get_sample_value("mixer_kubernetesenv_cache_pods", {"handler": "b"})
        assert pods == 8
        assert registry.get_sample_value("mixer_kubernetesenv_cache_pods", {"handler": "a"}) is None
    finally:
        await second.close()
    assert registry.get_sample_value("mixer_kubernetesenv_cache_pods", {"handler": "b"}) is None
