"""Istio 1.4's stock mixer config (deploy/istio-1.4, rendered from its Helm chart) served with
kubernetesenv against a test API server: workloads named from pod IPs and UIDs."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mixer.client import MixerClient
from tests.k8s_api_server import PODS, REPLICASETS, ThreadedKubeApiServer, owned, pod
from tests.mixer_process import ROOT, MixerProcess

pytestmark = pytest.mark.integration

CONFIG = ROOT / "deploy" / "istio-1.4"
Start = Callable[..., MixerProcess]
Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v
        for n, ls, v in samples
        if n == name and all(ls.get(k) == want for k, want in labels.items())
    )


def wait_for(port: int, name: str, at_least: float, **labels: str) -> Samples:
    deadline = time.monotonic() + 15
    samples = scrape(port)
    while value(samples, name, **labels) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = scrape(port)
    return samples


@pytest.fixture
def cluster() -> Iterator[ThreadedKubeApiServer]:
    with ThreadedKubeApiServer() as api:
        rs = owned("productpage-v1-7d9f", "default", ("apps/v1", "Deployment", "productpage-v1"))
        api.call(api.server.apply, REPLICASETS, rs)
        rs = owned("reviews-v2-56c4", "default", ("apps/v1", "Deployment", "reviews-v2"))
        api.call(api.server.apply, REPLICASETS, rs)
        productpage = pod(
            "productpage-v1-7d9f-x2x",
            "default",
            "10.44.0.7",
            owner=("apps/v1", "ReplicaSet", "productpage-v1-7d9f"),
            labels={"app": "productpage", "version": "v1"},
        )
        reviews = pod(
            "reviews-v2-56c4-k9q",
            "default",
            "10.44.0.9",
            owner=("apps/v1", "ReplicaSet", "reviews-v2-56c4"),
            labels={"app": "reviews", "version": "v2"},
        )
        api.call(api.server.apply, PODS, productpage)
        api.call(api.server.apply, PODS, reviews)
        yield api


def start_stock(start_mixer: Start, api: ThreadedKubeApiServer, tmp_path: Path) -> MixerProcess:
    # KUBECONFIG wins over the handler's (empty) kubeconfig_path, as in Istio: the config is
    # served exactly as rendered.
    kubeconfig = api.server.kubeconfig(tmp_path)
    mixer = start_mixer(CONFIG, extra_args=["--enable-debug"], env={"KUBECONFIG": str(kubeconfig)})
    wait_for(mixer.metrics_port, "mixer_kubernetesenv_cache_pods", 2)
    return mixer


def inbound(**extra: object) -> dict[str, object]:
    """What an inbound Envoy of Istio 1.4 reports for HTTP, before attribute generation:
    the peer only by its IP, itself by UID; no workload, labels or owner."""
    return {
        "context.protocol": "http",
        "context.reporter.kind": "inbound",
        "source.ip": bytes([10, 44, 0, 7]),
        "destination.uid": "kubernetes://reviews-v2-56c4-k9q.default",
        "destination.port": 9080,
        "destination.service.host": "reviews.default.svc.cluster.local",
        "destination.service.name": "reviews",
        "destination.service.namespace": "default",
        "request.useragent": "curl/8",
        "response.code": 200,
        **extra,
    }


def test_stock_config_names_workloads_of_a_report_from_a_pod_ip(
    start_mixer: Start, cluster: ThreadedKubeApiServer, tmp_path: Path
) -> None:
    mixer = start_stock(start_mixer, cluster, tmp_path)
    with MixerClient(mixer.address) as client:
        client.report([inbound() for _ in range(5)])
        # The caller's own attributes win over generated ones (Mixer's merge).
        client.report([inbound(**{"source.workload.name": "said-by-proxy"})])
    samples = wait_for(mixer.metrics_port, "istio_requests_total", 6)
    assert value(samples, "istio_requests_total") == 6
    named = value(
        samples,
        "istio_requests_total",
        source_workload="productpage-v1",
        source_workload_namespace="default",
        source_app="productpage",
        source_version="v1",
        destination_workload="reviews-v2",
        destination_workload_namespace="default",
        destination_app="reviews",
        destination_version="v2",
    )
    assert named == 5
    assert value(samples, "istio_requests_total", source_workload="said-by-proxy") == 1
    assert value(samples, "istio_requests_total", source_workload="unknown") == 0
    # The generation phase is a dispatch like any other.
    with urllib.request.urlopen(f"http://127.0.0.1:{mixer.admin_port}/debug/routes") as resp:
        routes = json.load(resp)
    generators = [
        action
        for rule in routes["rules"]
        for action in rule["actions"]
        if action["variety"] == "attribute_generator"
    ]
    assert len(generators) == 2  # kubeattrgenrulerule and tcpkubeattrgenrulerule
    assert generators[0]["adapter"] == "kubernetesenv"
    assert len(generators[0]["bindings"]["attributes.instance.istio-system"]) == 21
    own = scrape(mixer.admin_port)
    assert value(own, "mixer_runtime_dispatches_total", adapter="kubernetesenv") >= 6


def test_stock_config_check_reports_what_generation_read(
    start_mixer: Start, cluster: ThreadedKubeApiServer, tmp_path: Path
) -> None:
    mixer = start_stock(start_mixer, cluster, tmp_path)
    with MixerClient(mixer.address) as client:
        answer = client.check(inbound())
    assert answer.status_code == 0
    names = {ref.get("name") for ref in answer.referenced}
    assert {"source.ip", "destination.uid", "source.uid"} <= names


def test_unknown_pods_and_an_unreachable_api_server_fall_back_to_defaults(
    start_mixer: Start, cluster: ThreadedKubeApiServer, tmp_path: Path
) -> None:
    mixer = start_stock(start_mixer, cluster, tmp_path)
    with MixerClient(mixer.address) as client:
        client.report([inbound(**{"source.ip": bytes([10, 99, 0, 1])})])
        samples = wait_for(mixer.metrics_port, "istio_requests_total", 1)
        assert value(samples, "istio_requests_total", source_workload="unknown") == 1
        cluster.call(cluster.server.stop)

    def load(_: int) -> int:
        # Bounded: 50 Reports and 50 Checks per client, answered while the API server is gone.
        with MixerClient(mixer.address) as c:
            for _ in range(50):
                c.report([inbound()])
                assert c.check(inbound()).status_code == 0
        return 50

    with ThreadPoolExecutor(4) as pool:  # under load: four clients at once
        assert sum(pool.map(load, range(4))) == 200
    samples = wait_for(mixer.metrics_port, "istio_requests_total", 201)
    assert value(samples, "istio_requests_total") == 201
    errors = wait_for(mixer.metrics_port, "mixer_kubernetesenv_api_errors_total", 1)
    assert value(errors, "mixer_kubernetesenv_api_errors_total") >= 1
    # Back, with a pod created meanwhile: the adapter relists by itself and names it.
    late = pod("ratings-v1-0", "default", "10.44.0.12", owner=("apps/v1", "StatefulSet", "ratings"))
    cluster.call(cluster.server.apply, PODS, late)
    cluster.call(cluster.server.start)
    deadline = time.monotonic() + 20
    with MixerClient(mixer.address) as client:
        while time.monotonic() < deadline:  # bounded: one Report per 0.2 s until named
            client.report([inbound(**{"source.ip": bytes([10, 44, 0, 12])})])
            named = scrape(mixer.metrics_port)
            if value(named, "istio_requests_total", source_workload="ratings") > 0:
                break
            time.sleep(0.2)
    assert value(scrape(mixer.metrics_port), "istio_requests_total", source_workload="ratings") >= 1
