"""Keeping `ClusterCache` in step with the API server: list, then watch from the list's
resourceVersion, for pods, ReplicaSets and ReplicationControllers (client-go's reflector, by
hand, on lightkube's asyncio client).

A watch that ends is resumed from the last version seen (lightkube does that); a ``410 Gone``
(as an HTTP status or a watch ERROR event) or any other failure lists again, replacing the
store whole so that objects deleted meanwhile drop out. Failures back off with jitter, up to
`MAX_BACKOFF` seconds, and retry for ever: the adapter recovers by itself. Nothing here runs
on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.core_v1 import Pod, ReplicationController

from adapters.kubernetesenv.cache import ClusterCache, controller_of, pod_from_json

MAX_BACKOFF = 5.0
_FIRST_BACKOFF = 0.1
# Server-side watch timeout: a quiet watch is renewed this often (from the same version).
WATCH_SECONDS = 300
LIST_PAGE = 500

RESOURCES: dict[str, Any] = {
    "pods": Pod,
    "ReplicaSet": ReplicaSet,
    "ReplicationController": ReplicationController,
}


def load_config(kubeconfig_path: str, environ: dict[str, str]) -> KubeConfig:
    """The client config: ``KUBECONFIG`` from the environment wins over `kubeconfig_path` (as
    in Istio), and with neither, the in-cluster service account. Raises lightkube's
    ConfigError when none can be read."""
    path = environ.get("KUBECONFIG") or kubeconfig_path
    if path:
        return KubeConfig.from_file(path)
    return KubeConfig.from_service_account()


def is_gone(exc: BaseException) -> bool:
    """Whether `exc` says the watched version is too old (HTTP 410, or an ERROR event 410)."""
    if isinstance(exc, ApiError):
        return getattr(exc.status, "code", None) == 410
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code == 410
    return False


class Reflector:
    """One background task per resource, feeding `cache`. `on_state(resource, ok, error)` is
    called when a resource's list succeeds (ok) or any call fails (not ok, the error)."""

    def __init__(
        self,
        make_client: Callable[[], AsyncClient],
        cache: ClusterCache,
        logger: logging.Logger,
        on_state: Callable[[str, bool, BaseException | None], None],
        *,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self._make_client = make_client
        self._cache = cache
        self._logger = logger
        self._on_state = on_state
        self._watch_seconds = watch_seconds
        self._client: AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.relists = 0
        self.last_contact = 0.0
        """`time.monotonic()` of the last answer from the API server (0: none yet)."""

    def start(self) -> None:
        for resource in RESOURCES:
            self._tasks.append(asyncio.get_running_loop().create_task(self._run(resource)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _client_now(self) -> AsyncClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    async def _run(self, resource: str) -> None:
        backoff = _FIRST_BACKOFF
        while True:
            try:
                version = await self._list(resource)
                backoff = _FIRST_BACKOFF
                await self._watch(resource, version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._on_state(resource, False, exc)
                if is_gone(exc):
                    self._logger.info(
                        "kubernetesenv: %s watch expired (410), listing again", resource
                    )
                    continue
                delay = backoff * (0.5 + random.random() / 2)
                self._logger.warning(
                    "kubernetesenv: %s from the API server failed (%s: %s); retrying in %.1fs",
                    resource,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _list(self, resource: str) -> str:
        client = self._client_now()
        # Pages, so that a large cluster is decoded in slices with the event loop free between.
        listing = client.list(RESOURCES[resource], namespace="*", chunk_size=LIST_PAGE)
        items = [item.to_dict() async for item in listing]
        version = listing.resourceVersion
        self.relists += 1
        if resource == "pods":
            self._cache.replace_pods(p for p in map(pod_from_json, items) if p is not None)
        else:
            self._cache.replace_owners(resource, (_owner(item) for item in items))
        self.last_contact = time.monotonic()
        self._on_state(resource, True, None)
        return version

    async def _watch(self, resource: str, version: str) -> None:
        client = self._client_now()
        events = client.watch(
            RESOURCES[resource],
            namespace="*",
            resource_version=version,
            server_timeout=self._watch_seconds,
        )
        async for kind, obj in events:
            self.last_contact = time.monotonic()
            self._apply(resource, kind, obj.to_dict())

    def _apply(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        name = str(meta.get("name") or "")
        if kind == "DELETED":
            if resource == "pods":
                self._cache.delete_pod(namespace, name)
            else:
                self._cache.delete_owner(resource, namespace, name)
        elif kind in ("ADDED", "MODIFIED"):
            if resource == "pods":
                pod = pod_from_json(obj)
                if pod is not None:
                    self._cache.put_pod(pod)
            else:
                self._cache.put_owner(resource, namespace, name, controller_of(meta))


def _owner(item: dict[str, Any]) -> tuple[str, str, Any]:
    meta = item.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or ""), controller_of(meta)
