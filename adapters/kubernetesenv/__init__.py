"""kubernetesenv: the `kubernetes` attribute generator, as Istio's adapter of that name.

It keeps pods, ReplicaSets and ReplicationControllers of the whole cluster in memory
(`cache`), fed by list+watch on a background task (`watch`), and answers `generate` from that
memory alone: no request ever waits on the API server. Each side (destination, then source) is
looked up by its UID (``kubernetes://<pod>.<ns>``) when the instance has one, else by its IP;
a UID that misses does not fall back to the IP, as in Istio.

When the API server cannot be reached, lookups go on from what was last listed for
`cache_refresh_duration` (Istio's resync period) after the first failure; after that, and
before the first list, they answer nothing, so that the bindings' ``|`` defaults apply.
Either way the handler never raises; ``mixer_kubernetesenv_api_errors_total`` counts
failures and a warning is logged.

Params (camelCase or snake_case): ``kubeconfigPath`` (``KUBECONFIG`` in the environment wins,
as in Istio; neither means in-cluster config), ``cacheRefreshDuration`` (default 5m),
``clusterRegistriesNamespace`` (accepted, unused: multi-cluster Secrets are not watched),
``maxPods`` (default 200000) and ``maxOwners`` (per kind, default 200000): objects beyond them
are not kept, and ``mixer_kubernetesenv_cache_dropped_total`` counts them.
"""

from __future__ import annotations

import datetime
import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lightkube import AsyncClient
from prometheus_client import CollectorRegistry, Counter, Gauge

from adapters.base import AdapterInfo, Env, Instance
from adapters.kubernetesenv.cache import ClusterCache, ip_key, outputs, uid_key
from adapters.kubernetesenv.watch import Reflector, load_config
from adapters.toolkit.params import (
    canonical_fields,
    positive_duration_param,
    positive_int_param,
    string_param,
)

# Remembered answers, dropped together when full (inputs come from requests: bounded).
_MEMO_MAX = 4096

_FIELDS = {
    "kubeconfigPath": "kubeconfig_path",
    "cacheRefreshDuration": "cache_refresh_duration",
    "clusterRegistriesNamespace": "cluster_registries_namespace",
    "maxPods": "max_pods",
    "maxOwners": "max_owners",
}


@dataclass(frozen=True)
class KubernetesEnvParams:
    """Typed handler params (see the module docstring)."""

    kubeconfig_path: str = ""
    cache_refresh_duration: datetime.timedelta = datetime.timedelta(minutes=5)
    cluster_registries_namespace: str = ""
    max_pods: int = 200_000
    max_owners: int = 200_000


def parse_params(raw: Mapping[str, Any]) -> KubernetesEnvParams:
    """Validate ``kubernetesenv`` params; pure, no I/O (the kubeconfig is read at build)."""
    fields = canonical_fields(raw, _FIELDS, "")
    defaults = KubernetesEnvParams()
    return KubernetesEnvParams(
        kubeconfig_path=string_param(fields.get("kubeconfigPath", ""), "kubeconfigPath"),
        cache_refresh_duration=(
            positive_duration_param(fields["cacheRefreshDuration"], "cacheRefreshDuration")
            if "cacheRefreshDuration" in fields
            else defaults.cache_refresh_duration
        ),
        cluster_registries_namespace=string_param(
            fields.get("clusterRegistriesNamespace", ""), "clusterRegistriesNamespace"
        ),
        max_pods=positive_int_param(fields.get("maxPods", defaults.max_pods), "maxPods"),
        max_owners=positive_int_param(fields.get("maxOwners", defaults.max_owners), "maxOwners"),
    )


class _Metrics:
    """The adapter's series on one registry, labelled by handler and shared by every
    kubernetesenv handler built on it (a registry refuses two collectors with one name: a
    config with two such handlers, or a reload that rebuilds one, would otherwise fail)."""

    def __init__(self, reg: CollectorRegistry) -> None:
        self.users = 0
        self.errors = Counter(
            "mixer_kubernetesenv_api_errors",
            "Failed list or watch calls to the Kubernetes API server, by handler and resource.",
            ["handler", "resource"],
            registry=reg,
        )
        self.up = Gauge(
            "mixer_kubernetesenv_api_up",
            "1 while lookups answer from a cache the API server confirmed within the refresh "
            "duration, else 0 (lookups then answer nothing).",
            ["handler"],
            registry=reg,
        )
        self.pods = Gauge(
            "mixer_kubernetesenv_cache_pods", "Pods in the cache.", ["handler"], registry=reg
        )
        self.dropped = Counter(
            "mixer_kubernetesenv_cache_dropped",
            "Objects not cached because the cache was full (maxPods/maxOwners).",
            ["handler"],
            registry=reg,
        )
        self.lookups = Counter(
            "mixer_kubernetesenv_lookups",
            "Pod lookups, by handler and result (hit, miss, stale: the cache was too old).",
            ["handler", "result"],
            registry=reg,
        )
        self.collectors: tuple[Any, ...] = (
            self.errors,
            self.up,
            self.pods,
            self.dropped,
            self.lookups,
        )


_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()


def _acquire(reg: CollectorRegistry) -> _Metrics:
    metrics = _SHARED.get(reg)
    if metrics is None:
        metrics = _SHARED[reg] = _Metrics(reg)
    metrics.users += 1
    return metrics


def _release(reg: CollectorRegistry, handler: str) -> None:
    metrics = _SHARED.get(reg)
    if metrics is None:
        return
    for collector in metrics.collectors:
        # This handler's series only (a label set it never used is a KeyError).
        for labels in list(collector._metrics):
            if labels[0] == handler:
                collector.remove(*labels)
    metrics.users -= 1
    if metrics.users == 0:
        for collector in metrics.collectors:
            reg.unregister(collector)
        del _SHARED[reg]


class KubernetesEnvHandler:
    """Generates `kubernetes` instances' outputs from the cluster cache."""

    answers_inline = True  # memory only: `generate` never waits

    def __init__(self, params: KubernetesEnvParams, env: Env) -> None:
        self._params = params
        self._env = env
        self._name = env.handler_name
        self._metrics = _acquire(env.registry)
        self._up = self._metrics.up.labels(self._name)
        self._hit = self._metrics.lookups.labels(self._name, "hit")
        self._miss = self._metrics.lookups.labels(self._name, "miss")
        self._stale = self._metrics.lookups.labels(self._name, "stale")
        self._refresh = params.cache_refresh_duration.total_seconds()
        self.cache = ClusterCache(params.max_pods, params.max_owners)
        self._dropped_seen = 0
        self._failing: set[str] = set()
        self._failing_since: float | None = None
        # Answers by (destination key, source key, port), while the cache is unchanged.
        self._memo: dict[tuple[str, str, int], tuple[Mapping[str, Any], int, int]] = {}
        self._memo_version = -1
        self.reflector = Reflector(self._client, self.cache, env.logger, self._on_state)
        self.reflector.start()

    def _client(self) -> AsyncClient:
        return AsyncClient(config=load_config(self._params.kubeconfig_path, dict(os.environ)))

    def _on_state(self, resource: str, ok: bool, error: BaseException | None) -> None:
        if ok:
            if resource in self._failing:
                self._failing.discard(resource)
                self._env.logger.info("kubernetesenv %s: %s listed again", self._name, resource)
            if not self._failing:
                self._failing_since = None
        else:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self._failing.add(resource)
            self._metrics.errors.labels(self._name, resource).inc()
        self._metrics.pods.labels(self._name).set(len(self.cache))
        if self.cache.dropped > self._dropped_seen:
            self._metrics.dropped.labels(self._name).inc(self.cache.dropped - self._dropped_seen)
            self._dropped_seen = self.cache.dropped

    def fresh(self) -> bool:
        """Whether the cache may answer: listed once, and not failing for longer than the
        refresh duration."""
        since = self._failing_since
        ok = self.reflector.last_contact > 0 and (
            since is None or time.monotonic() - since <= self._refresh
        )
        self._up.set(1 if ok else 0)
        return ok

    async def generate(self, instance: Instance) -> Mapping[str, Any]:
        """The outputs for `instance` (read-only: the same mapping answers equal inputs until
        the cache changes)."""
        if not self.fresh():
            self._stale.inc()
            return {}
        fields = instance.fields
        keys = []
        for side in ("destination", "source"):
            uid = fields.get(f"{side}_uid")
            keys.append(
                uid_key(uid) if isinstance(uid, str) and uid else ip_key(fields.get(f"{side}_ip"))
            )
        port = fields.get("destination_port")
        memo_key = (keys[0], keys[1], port if isinstance(port, int) else 0)
        cache = self.cache
        if self._memo_version != cache.version or len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
            self._memo_version = cache.version
        remembered = self._memo.get(memo_key)
        if remembered is None:
            remembered = self._memo[memo_key] = self._lookup(memo_key)
        out, hits, misses = remembered
        if hits:
            self._hit.inc(hits)
        if misses:
            self._miss.inc(misses)
        return out

    def _lookup(self, memo_key: tuple[str, str, int]) -> tuple[Mapping[str, Any], int, int]:
        out: dict[str, Any] = {}
        hits = misses = 0
        for side, key in zip(("destination", "source"), memo_key[:2], strict=True):
            if not key:
                continue
            pod = self.cache.find(key)
            if pod is None:
                misses += 1
                self._env.logger.debug("kubernetesenv: could not find pod for %s (%s)", side, key)
                continue
            hits += 1
            port = memo_key[2] if side == "destination" else 0
            out.update(outputs(self.cache, pod, side, port))
        return MappingProxyType(out), hits, misses

    async def close(self) -> None:
        await self.reflector.close()
        _release(self._env.registry, self._name)


def build(params: KubernetesEnvParams, env: Env) -> KubernetesEnvHandler:
    """Start the watch (on the running event loop) and return the handler at once: lookups
    answer nothing until the first list arrives."""
    return KubernetesEnvHandler(params, env)


INFO = AdapterInfo(
    name="kubernetesenv",
    description="Pod, workload and owner attributes from the Kubernetes API (list+watch).",
    templates=frozenset({"kubernetes"}),
    parse_params=parse_params,
    build=build,
)
