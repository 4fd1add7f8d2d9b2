"""What kubernetesenv costs: a relist (5,000 pods listed from the test API server,
tests/k8s_api_server.py, through lightkube, decoded and projected, 3 times), the import, and the
generation phase of Istio 1.4's stock config (deploy/istio-1.4) per request, both sides found
in a cache of 1,000 pods, as a ratio to building the same request's report instances (the
stock metric rules, `Dispatcher.report` without workers) in the same run.

Run from the repository root: ``.venv/bin/python -m bench.kubernetesenv_list``.
"""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
import time

PODS_LISTED = 5000


def pod_from_json_(obj: object) -> object:
    from adapters.kubernetesenv.cache import pod_from_json

    found = pod_from_json(obj)  # type: ignore[arg-type]
    assert found is not None
    return found


async def _main() -> None:
    from lightkube import AsyncClient, KubeConfig
    from lightkube.resources.core_v1 import Pod

    from adapters.kubernetesenv.cache import pod_from_json
    from tests.k8s_api_server import PODS, KubeApiServer, pod

    api = await KubeApiServer().start()
    for i in range(PODS_LISTED):
        address = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"
        api.apply(PODS, pod(f"p{i}", "ns", address, owner=("apps/v1", "StatefulSet", "s")))
    client = AsyncClient(
        config=KubeConfig.from_file(api.kubeconfig(pathlib.Path(tempfile.mkdtemp())))
    )
    for _ in range(3):
        start = time.perf_counter()
        items = [p.to_dict() async for p in client.list(Pod, namespace="*", chunk_size=500)]
        projected = [pod_from_json(item) for item in items]
        assert len(projected) == PODS_LISTED
        print(f"list + decode + project {PODS_LISTED} pods: {time.perf_counter() - start:.3f}s")
    await client.close()
    await api.stop()


async def _generation() -> None:
    import logging
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from adapters import kubernetesenv
    from adapters.base import Env
    from mixer.attributes.bag import Bag
    from mixer.runtime.build import _rule, load_snapshot
    from mixer.runtime.dispatcher import Dispatcher
    from mixer.runtime.routing import HandlerEntry, RoutingTable
    from mixer.telemetry import ServerMetrics
    from mixer.templates import Variety
    from tests.k8s_api_server import pod

    logging.disable(logging.WARNING)  # the handler's watch has no API server here
    snapshot = load_snapshot(Path("deploy/istio-1.4"))
    params = kubernetesenv.parse_params({"kubeconfigPath": "/nonexistent"})
    env = Env("k", logging.getLogger("bench"), CollectorRegistry(), time.monotonic)
    handler = kubernetesenv.build(params, env)
    for i in range(1000):
        owner = ("apps/v1", "StatefulSet", f"s{i % 10}")
        found = pod_from_json_(pod(f"p{i}", "default", f"10.1.{i // 256}.{i % 256}", owner=owner))
        handler.cache.put_pod(found)
    handler.reflector.last_contact = time.monotonic()  # as if listed
    entries = {
        spec.name: HandlerEntry(spec.name, spec.adapter, handler, spec.name)
        for spec in snapshot.handlers.values()
    }
    rules = tuple(_rule(r, snapshot, entries) for r in snapshot.rules)
    generating = tuple(r for r in rules if r.actions_of(Variety.ATTRIBUTE_GENERATOR))
    reporting = tuple(r for r in rules if r.actions_of(Variety.REPORT))
    metrics = ServerMetrics.create()
    ns = snapshot.default_namespace
    gen = Dispatcher(RoutingTable(default_namespace=ns, rules=generating), {}, metrics)
    rep = Dispatcher(RoutingTable(default_namespace=ns, rules=reporting), {}, metrics)
    bag = Bag(
        {
            "context.protocol": "http",
            "context.reporter.kind": "inbound",
            "source.ip": bytes([10, 1, 0, 7]),
            "destination.uid": "kubernetes://p9.default",
            "destination.port": 9080,
            "response.code": 200,
        }
    )
    generated = (await gen.generation.run(bag)).bag
    assert generated["source.workload.name"] == "s7"
    calls = 5000
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            await gen.generation.run(bag)
        phase = (time.perf_counter() - start) / calls
        start = time.perf_counter()
        for _ in range(calls):
            rep.report([generated])
        report = (time.perf_counter() - start) / calls
        print(
            f"generation phase {phase * 1e6:.1f} us, report instances {report * 1e6:.1f} us "
            f"per request: {phase / report:.2f}x"
        )
    await handler.close()


def main() -> None:
    start = time.perf_counter()
    import adapters.kubernetesenv  # noqa: F401

    print(f"import adapters.kubernetesenv (lightkube included): {time.perf_counter() - start:.3f}s")
    asyncio.run(_main())
    asyncio.run(_generation())


if __name__ == "__main__":
    main()
