"""A Kubernetes API server for tests: the real list and watch protocol over HTTP/1.1 on loopback.

It serves ``/api/v1/pods``, ``/apis/apps/v1/replicasets`` and
``/api/v1/replicationcontrollers`` (all namespaces) as the API server does: a list is JSON with
``metadata.resourceVersion``; ``?watch=true&resourceVersion=N`` streams (chunked) one JSON event
per line (ADDED, MODIFIED, DELETED) for every change after N, until ``timeoutSeconds``. A
version older than the last `compact()` is answered as a real server answers an expired one:
an ERROR event carrying a 410 Status (or, with ``gone_as_http``, an HTTP 410), so the client must
list again. `stop()` and `start()` (same port) make it unreachable and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.parse
from pathlib import Path
from typing import Any

PATHS = {
    "/api/v1/pods": ("Pod", "v1"),
    "/apis/apps/v1/replicasets": ("ReplicaSet", "apps/v1"),
    "/api/v1/replicationcontrollers": ("ReplicationController", "v1"),
}
PODS, REPLICASETS, RCS = PATHS


class KubeApiServer:
    def __init__(self) -> None:
        self.port = 0
        self.version = 1
        self.objects: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PATHS}
        self.events: dict[str, list[tuple[int, str, dict[str, Any]]]] = {p: [] for p in PATHS}
        self.oldest = 0  # watches from a version below this get 410
        self.gone_as_http = False
        self.lists: dict[str, int] = {p: 0 for p in PATHS}
        self.watches: dict[str, int] = {p: 0 for p in PATHS}
        self.gone_sent = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> KubeApiServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every open connection (the server goes away)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._streams):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "test", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "test", "user": {}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                    "current-context": "test",
                }
            )
        )
        return path

    # -- changes ------------------------------------------------------------------------------

    def apply(self, path: str, obj: dict[str, Any]) -> None:
        meta = obj.setdefault("metadata", {})
        key = f"{meta.get('namespace', '')}/{meta['name']}"
        kind, api_version = PATHS[path]
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", api_version)
        self.version += 1
        meta["resourceVersion"] = str(self.version)
        event = "MODIFIED" if key in self.objects[path] else "ADDED"
        self.objects[path][key] = obj
        self._record(path, event, obj)

    def delete(self, path: str, namespace: str, name: str) -> None:
        obj = self.objects[path].pop(f"{namespace}/{name}")
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self._record(path, "DELETED", obj)

    def compact(self) -> None:
        """Forget the event history: a watch from any version seen so far is now expired."""
        self.oldest = self.version + 1
        for log in self.events.values():
            log.clear()
        self._changed.set()

    def _record(self, path: str, event: str, obj: dict[str, Any]) -> None:
        self.events[path].append((self.version, event, json.loads(json.dumps(obj))))
        self._changed.set()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._streams.add(writer)
        try:
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            method, target, _ = line.decode("latin-1").split(" ", 2)
            url = urllib.parse.urlsplit(target)
            query = dict(urllib.parse.parse_qsl(url.query))
            if method != "GET" or url.path not in PATHS:
                await self._respond(writer, 404, _status(404, "NotFound", url.path))
            elif query.get("watch") in ("true", "1"):
                await self._watch(writer, url.path, query)
            else:
                await self._list(writer, url.path)
        except (ConnectionError, ValueError):
            pass
        finally:
            self._streams.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, writer: asyncio.StreamWriter, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found", 410: "Gone"}[code]
        writer.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()

    async def _list(self, writer: asyncio.StreamWriter, path: str) -> None:
        self.lists[path] += 1
        kind, api_version = PATHS[path]
        await self._respond(
            writer,
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self.version)},
                "items": list(self.objects[path].values()),
            },
        )

    async def _watch(self, writer: asyncio.StreamWriter, path: str, query: dict[str, str]) -> None:
        self.watches[path] += 1
        since = int(query.get("resourceVersion") or self.version)
        if since < self.oldest and self.gone_as_http:
            self.gone_sent += 1
            await self._respond(writer, 410, _status(410, "Expired", "too old resource version"))
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(query.get("timeoutSeconds") or 30)
        while loop.time() < deadline and self._server is not None:
            if since < self.oldest:
                self.gone_sent += 1
                error = _status(410, "Expired", "too old resource version")
                await _chunk(writer, {"type": "ERROR", "object": error})
                break
            for version, event, obj in list(self.events[path]):
                if version > since:
                    await _chunk(writer, {"type": event, "object": obj})
                    since = version
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _chunk(writer: asyncio.StreamWriter, event: object) -> None:
    data = json.dumps(event).encode() + b"\n"
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def pod(
    name: str,
    namespace: str,
    ip: str,
    *,
    owner: tuple[str, str, str] | None = None,
    labels: dict[str, str] | None = None,
    service_account: str = "",
    created: str = "2026-01-01T00:00:00Z",
    ports: dict[str, list[int]] | None = None,
    self_link: str = "",
) -> dict[str, Any]:
    """A pod as the API server returns it; `owner` is a controller (apiVersion, kind, name)."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{namespace}-{name}",
        "creationTimestamp": created,
        "labels": labels or {},
    }
    if self_link:
        meta["selfLink"] = self_link
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner[0],
                "kind": owner[1],
                "name": owner[2],
                "uid": f"uid-{owner[2]}",
                "controller": True,
            }
        ]
    return {
        "metadata": meta,
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                {"name": c, "image": "x", "ports": [{"containerPort": p} for p in ps]}
                for c, ps in (ports or {"app": []}).items()
            ],
        },
        "status": {"podIP": ip, "hostIP": "10.0.0.1", "phase": "Running"},
    }


def owned(name: str, namespace: str, owner: tuple[str, str, str] | None) -> dict[str, Any]:
    """A ReplicaSet, with its controller when given."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner[0],
                "kind": owner[1],
                "name": owner[2],
                "uid": f"uid-{owner[2]}",
                "controller": True,
            }
        ]
    selector = {"app": name}
    return {"metadata": meta, "spec": {"replicas": 1, "selector": {"matchLabels": selector}}}


def controller(name: str, namespace: str) -> dict[str, Any]:
    """A ReplicationController without a controller of its own."""
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    return {"metadata": meta, "spec": {"replicas": 1, "selector": {"app": name}}}


class ThreadedKubeApiServer:
    """A `KubeApiServer` on its own event loop in a thread, for tests that drive a mixer
    subprocess synchronously. `call(fn, *args)` runs a change on the server's loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server = KubeApiServer.__new__(KubeApiServer)

    def __enter__(self) -> ThreadedKubeApiServer:
        self._thread.start()
        self.server = self._run(self._make())
        return self

    async def _make(self) -> KubeApiServer:
        return await KubeApiServer().start()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return self._run(run())

    def __exit__(self, *exc: object) -> None:
        self._run(self.server.stop())
        self._run(_cancel_others())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _cancel_others() -> None:
    """Cancel the loop's other tasks (open watch streams) and wait for them to end."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
