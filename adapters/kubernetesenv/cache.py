"""The in-memory view of the cluster that lookups read: pods, ReplicaSets and
ReplicationControllers projected to what the `kubernetes` template's outputs need.

Pure data, no I/O: the watch (`adapters.kubernetesenv.watch`) feeds it, the handler reads it.
Workload and owner are derived as Istio 1.4's adapter did (its `cache.go`): the pod's first
controller ownerReference; a ReplicaSet or ReplicationController is replaced by its own
controller when the cache knows it; the owner string is
``kubernetes://apis/<apiVersion>/namespaces/<ns>/<lowercase kind>s/<name>``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import StringMap

# ReplicaSet -> Deployment is one step; a chain longer than this is a loop in bad data.
_MAX_OWNER_DEPTH = 8
_UID_PREFIX = "kubernetes://"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A controller ownerReference."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What is kept of a pod."""

    name: str
    namespace: str
    labels: StringMap
    service_account: str
    pod_ip: str
    host_ip: str
    self_link: str
    created: str
    controller: OwnerRef | None
    # (container name, declared container ports), spec order; init containers excluded.
    containers: tuple[tuple[str, tuple[int, ...]], ...]


def controller_of(metadata: Mapping[str, Any]) -> OwnerRef | None:
    """The first ownerReference with ``controller: true``. One without the field counts as
    not a controller (Istio's adapter crashed on it)."""
    for ref in metadata.get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return OwnerRef(
                str(ref.get("apiVersion", "")), str(ref.get("kind", "")), str(ref.get("name", ""))
            )
    return None


def pod_from_json(obj: Mapping[str, Any]) -> PodInfo | None:
    """A pod object (JSON, as the API server sends it) projected; None when it has no name."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    labels = meta.get("labels") or {}
    containers = tuple(
        (
            str(c.get("name", "")),
            tuple(
                int(p["containerPort"])
                for p in c.get("ports") or ()
                if isinstance(p, Mapping) and isinstance(p.get("containerPort"), int)
            ),
        )
        for c in spec.get("containers") or ()
        if isinstance(c, Mapping)
    )
    return PodInfo(
        name=name,
        namespace=str(meta.get("namespace") or ""),
        labels=StringMap({str(k): str(v) for k, v in labels.items()}),
        service_account=str(spec.get("serviceAccountName") or ""),
        pod_ip=_ip_text(status.get("podIP")),
        host_ip=_ip_text(status.get("hostIP")),
        self_link=str(meta.get("selfLink") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        controller=controller_of(meta),
        containers=containers,
    )


def _ip_text(value: object) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        return ip_key(ipaddress.ip_address(value).packed, unspecified=True)
    except ValueError:
        return ""


_MAPPED = b"\0" * 10 + b"\xff\xff"
_UNSPECIFIED = (b"\0" * 4, b"\0" * 16)


def ip_key(value: object, *, unspecified: bool = False) -> str:
    """An IP attribute (4 or 16 raw bytes) as the cache indexes it, IPv4-mapped IPv6 as IPv4;
    "" for none or (unless `unspecified`) the unspecified address, whose lookup Istio skips.
    On the request path: socket's C formatting, not `ipaddress`."""
    if not isinstance(value, bytes):
        return ""
    raw = value[12:] if len(value) == 16 and value[:12] == _MAPPED else value
    if not unspecified and raw in _UNSPECIFIED:
        return ""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return ""


def uid_key(uid: str) -> str:
    """Istio's key for a UID: the UID itself when it is an IP address, else ``<ns>/<pod>``
    from ``[kubernetes://]<pod>.<ns>`` split at the last dot (pod names may hold dots)."""
    if not uid.startswith(_UID_PREFIX):
        try:
            return ip_key(ipaddress.ip_address(uid).packed, unspecified=True)
        except ValueError:
            pass
    rest = uid[len(_UID_PREFIX) :] if uid.startswith(_UID_PREFIX) else uid
    name, dot, namespace = rest.rpartition(".")
    return f"{namespace}/{name}" if dot else rest


class ClusterCache:
    """Pods by ``ns/name`` and by IP, and the controllers of ReplicaSets and
    ReplicationControllers by ``ns/name``. At most `max_pods` pods and `max_owners` owners per
    kind are kept; what does not fit is counted in `dropped` and left out. `version` grows
    with every change, so that answers derived from the cache can be remembered until then."""

    def __init__(self, max_pods: int, max_owners: int) -> None:
        self.max_pods = max_pods
        self.max_owners = max_owners
        self.dropped = 0
        self.version = 0
        self._pods: dict[str, PodInfo] = {}
        self._by_ip: dict[str, dict[str, PodInfo]] = {}
        self._owners: dict[str, dict[str, OwnerRef | None]] = {
            "ReplicaSet": {},
            "ReplicationController": {},
        }

    # -- updates (from the watch) ---------------------------------------------------------

    def replace_pods(self, pods: Iterable[PodInfo]) -> None:
        """A fresh list: the store becomes exactly `pods` (vanished ones drop out)."""
        self.version += 1
        self._pods = {}
        self._by_ip = {}
        for pod in pods:
            self.put_pod(pod)

    def put_pod(self, pod: PodInfo) -> None:
        key = f"{pod.namespace}/{pod.name}"
        old = self._pods.get(key)
        if old is None and len(self._pods) >= self.max_pods:
            self.dropped += 1
            return
        self.version += 1
        if old is not None:
            self._unindex(key, old)
        self._pods[key] = pod
        if pod.pod_ip:
            self._by_ip.setdefault(pod.pod_ip, {})[key] = pod

    def delete_pod(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        old = self._pods.pop(key, None)
        if old is not None:
            self.version += 1
            self._unindex(key, old)

    def _unindex(self, key: str, pod: PodInfo) -> None:
        if pod.pod_ip:
            same = self._by_ip.get(pod.pod_ip)
            if same is not None:
                same.pop(key, None)
                if not same:
                    del self._by_ip[pod.pod_ip]

    def replace_owners(self, kind: str, owners: Iterable[tuple[str, str, OwnerRef | None]]) -> None:
        """A fresh list of `kind` (ReplicaSet or ReplicationController): (ns, name, controller)."""
        self.version += 1
        self._owners[kind] = {}
        for namespace, name, controller in owners:
            self.put_owner(kind, namespace, name, controller)

    def put_owner(self, kind: str, namespace: str, name: str, controller: OwnerRef | None) -> None:
        table = self._owners[kind]
        key = f"{namespace}/{name}"
        if key not in table and len(table) >= self.max_owners:
            self.dropped += 1
            return
        self.version += 1
        table[key] = controller

    def delete_owner(self, kind: str, namespace: str, name: str) -> None:
        self.version += 1
        self._owners[kind].pop(f"{namespace}/{name}", None)

    def __len__(self) -> int:
        return len(self._pods)

    # -- lookups (the request path: memory only) ------------------------------------------

    def find(self, key: str) -> PodInfo | None:
        """The pod for a key: by IP first (the newest pod holding it, as Istio 1.5+ chose:
        a finished Job's pod keeps its IP after reuse), then by ``ns/name``."""
        same_ip = self._by_ip.get(key)
        if same_ip:
            newest: PodInfo | None = None
            for pod in same_ip.values():
                if newest is None or pod.created > newest.created:
                    newest = pod
            return newest
        return self._pods.get(key)

    def workload(self, pod: PodInfo) -> tuple[str, str]:
        """(workload name, owner) of `pod`; owner "" when unknown."""
        root = pod.controller
        seen = 0
        while root is not None and root.kind in self._owners and seen < _MAX_OWNER_DEPTH:
            seen += 1
            key = f"{pod.namespace}/{root.name}"
            table = self._owners[root.kind]
            if key not in table:
                break  # not (yet) known: the ReplicaSet itself is the root, as in Istio
            above = table[key]
            if above is None:
                break
            root = above
        if root is None:
            return pod.name, pod.self_link
        owner = (
            f"kubernetes://apis/{root.api_version}/namespaces/{pod.namespace}/"
            f"{root.kind.lower()}s/{root.name}"
        )
        return root.name, owner


def _packed(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def outputs(cache: ClusterCache, pod: PodInfo, side: str, port: int = 0) -> dict[str, Any]:
    """The `kubernetes` template outputs of one side (``source``/``destination``) for `pod`,
    setting only what Istio's adapter set."""
    out: dict[str, Any] = {}
    if pod.name and pod.namespace:
        out[f"{side}_pod_uid"] = f"{_UID_PREFIX}{pod.name}.{pod.namespace}"
    if pod.pod_ip:
        out[f"{side}_pod_ip"] = _packed(pod.pod_ip)
    out[f"{side}_pod_name"] = pod.name
    if pod.labels:
        out[f"{side}_labels"] = pod.labels
    out[f"{side}_namespace"] = pod.namespace
    if pod.service_account:
        out[f"{side}_service_account_name"] = pod.service_account
    if pod.host_ip:
        out[f"{side}_host_ip"] = _packed(pod.host_ip)
    workload, owner = cache.workload(pod)
    out[f"{side}_workload_uid"] = f"istio://{pod.namespace}/workloads/{workload}"
    out[f"{side}_workload_name"] = workload
    out[f"{side}_workload_namespace"] = pod.namespace
    if owner:
        out[f"{side}_owner"] = owner
    if side == "destination" and port > 0:
        for name, ports in pod.containers:
            if port in ports:
                out["destination_container_name"] = name
                break
    return out
