"""What a kubernetesenv relist costs: 5,000 pods listed from the test API server
(tests/k8s_api_server.py) through lightkube, decoded and projected, 3 times; and the import.

Run from the repository root: ``.venv/bin/python -m bench.kubernetesenv_list``.
"""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
import time

PODS_LISTED = 5000


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


def main() -> None:
    start = time.perf_counter()
    import adapters.kubernetesenv  # noqa: F401

    print(f"import adapters.kubernetesenv (lightkube included): {time.perf_counter() - start:.3f}s")
    asyncio.run(_main())


if __name__ == "__main__":
    main()
