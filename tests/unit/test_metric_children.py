"""Labelled metric children looked up once, with a bound on how many are remembered."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from mixer.telemetry import Children


def test_children_are_the_metrics_own_and_the_cache_is_bounded() -> None:
    registry = CollectorRegistry()
    counter = Counter("things", "Things.", ["name"], registry=registry)
    children = Children(counter, max_entries=2)
    for name in ("a", "a", "b", "c", "c"):
        children.get(name).inc()
    assert children.get("a") is counter.labels("a")
    assert [registry.get_sample_value("things_total", {"name": n}) for n in "abc"] == [2, 1, 2]
    assert len(children._cache) == 2
