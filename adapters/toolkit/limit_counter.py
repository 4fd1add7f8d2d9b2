"""A counter of bound crossings shared by every handler built on one registry.

A registry refuses two collectors with one metric name, and several handlers of one adapter
live on the adapters' registry at once; so the counter is created by the first handler that
acquires it, labelled by handler, and unregistered when the last one releases it.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass
class _Shared:
    counter: Counter
    users: int = 0


_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Shared]] = (
    weakref.WeakKeyDictionary()
)


def acquire(
    registry: CollectorRegistry, name: str, documentation: str, label: str = "handler"
) -> Counter:
    """The counter `name` (one label, `label`) on `registry`; pair each call with `release`."""
    by_name = _SHARED.setdefault(registry, {})
    shared = by_name.get(name)
    if shared is None:
        counter = Counter(name, documentation, [label], registry=registry)
        shared = by_name[name] = _Shared(counter)
    shared.users += 1
    return shared.counter


def release(registry: CollectorRegistry, name: str, value: str) -> None:
    """Drop the series of `name` labelled `value`; unregister the counter when nobody uses
    it."""
    by_name = _SHARED.get(registry)
    shared = by_name.get(name) if by_name is not None else None
    if by_name is None or shared is None:
        return
    with contextlib.suppress(KeyError):  # KeyError: this handler never counted
        shared.counter.remove(value)
    shared.users -= 1
    if shared.users == 0:
        registry.unregister(shared.counter)
        del by_name[name]
