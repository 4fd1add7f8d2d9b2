"""The adapter registry: built-in adapters in an explicit table, plus entry-point plugins.

Third parties publish an `adapters.base.AdapterInfo` under the ``mixer.adapters`` entry-point
group (``[project.entry-points."mixer.adapters"] myadapter = "mypkg.adapter:INFO"``). Plugins are
loaded and checked once at start; a bad plugin or a name clash stops start-up with a message
naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType

from adapters.base import AdapterInfo

__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "AdapterLoadError", "load_registry"]

ENTRY_POINT_GROUP = "mixer.adapters"

BUILTINS: Mapping[str, str] = MappingProxyType(
    {
        "denier": "adapters.denier",
        "listchecker": "adapters.listchecker",
        "memquota": "adapters.memquota",
        "redisquota": "adapters.redisquota",
        "prometheus": "adapters.prometheus",
        "otel": "adapters.otel",
        "stdio": "adapters.stdio",
        "kubernetesenv": "adapters.kubernetesenv",
    }
)


class AdapterLoadError(RuntimeError):
    """A plugin could not be loaded, is not an AdapterInfo, or clashes with another adapter."""


def _check(info: object, origin: str) -> AdapterInfo:
    if not isinstance(info, AdapterInfo):
        raise AdapterLoadError(
            f"{origin}: expected an adapters.base.AdapterInfo, got {type(info).__name__}"
        )
    if not info.name or not info.templates:
        raise AdapterLoadError(f"{origin}: adapter must have a name and at least one template")
    if not callable(info.parse_params) or not callable(info.build):
        raise AdapterLoadError(f"{origin}: parse_params and build must be callable")
    return info


def load_registry(plugins: Iterable[EntryPoint] | None = None) -> Mapping[str, AdapterInfo]:
    """Built-ins plus entry-point plugins, checked; raises AdapterLoadError on any problem."""
    registry: dict[str, AdapterInfo] = {}
    for name, module_name in BUILTINS.items():
        info = _check(getattr(importlib.import_module(module_name), "INFO", None), module_name)
        if info.name != name:
            raise AdapterLoadError(f"{module_name}: INFO.name is {info.name!r}, expected {name!r}")
        registry[name] = info
    eps = plugins if plugins is not None else entry_points(group=ENTRY_POINT_GROUP)
    for ep in eps:
        origin = f"entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP!r}"
        try:
            loaded = ep.load()
        except Exception as exc:
            raise AdapterLoadError(f"{origin}: cannot be loaded: {exc}") from exc
        info = _check(loaded, origin)
        if info.name in registry:
            raise AdapterLoadError(f"{origin}: adapter name {info.name!r} is already registered")
        registry[info.name] = info
    return MappingProxyType(registry)
