"""Benchmark of the prometheus adapter's report path and of scraping what it holds.

Run from the repository root: ``.venv/bin/python -m bench.report_bench`` (``--repeats N``).

1. Cost per reported request: the four HTTP metric instances Istio 1.4 builds for a request
   (``requests_total``, ``request_duration_seconds``, ``request_bytes``, ``response_bytes``; 20
   labels each, Istio's buckets) through ``PrometheusHandler.report``, against bare
   ``prometheus_client`` calls for the same series in the same run (``labels(*20 strings)`` then
   ``inc``/``observe``). Label values cycle through 100 existing combinations, as in
   perf-anchors.md. ``report`` never awaits, so its coroutine is driven with ``send(None)``: the
   figure is the adapter's own cost, without event-loop scheduling. Goal: ratio <= 3.
2. Scrape: ``generate_latest`` of 10,000 counter series (20 labels) held by the adapter's store,
   against the same series in a bare ``prometheus_client`` Counter (which also emits ``_created``
   lines), and how long one HTTP scrape of mixer's adapter metrics server (``AdminServer``, as on
   :42422) delays an asyncio loop running at the same time (the scrape runs on the server's own
   thread, but the GIL is shared).

Every loop is bounded in count. Timed sections pause the cyclic GC, as ``timeit`` does. Medians of
``--repeats`` runs. Exit status 1 if the ratio misses 3.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import logging
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from adapters import prometheus
from adapters.base import Env, Instance
from mixer.server.admin import AdminServer

TARGET_RATIO: Final = 3.0
REQUESTS: Final = 20_000
COMBINATIONS: Final = 100
CHUNKS: Final = 10
SCRAPE_SERIES: Final = 10_000
NS: Final = "istio-system"

LABELS: Final = (
    "reporter",
    "source_app",
    "source_principal",
    "source_workload",
    "source_workload_namespace",
    "source_version",
    "destination_app",
    "destination_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "permissive_response_code",
    "permissive_response_policyid",
    "connection_security_policy",
)
DURATION_BOUNDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SIZE_BUCKETS: Final = {
    "exponentialBuckets": {"numFiniteBuckets": 8, "scale": 1, "growthFactor": 10}
}


def istio_params() -> prometheus.Params:
    """The Istio 1.4 HTTP metrics of the standard prometheus handler."""

    def metric(name: str, instance: str, kind: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "instance_name": f"{instance}.instance.{NS}",
            "kind": kind,
            "label_names": list(LABELS),
            **extra,
        }

    return prometheus.parse_params(
        {
            "metricsExpirationPolicy": {"metricsExpiryDuration": "10m"},
            "metrics": [
                metric("requests_total", "requestcount", "COUNTER"),
                metric(
                    "request_duration_seconds",
                    "requestduration",
                    "DISTRIBUTION",
                    buckets={"explicit_buckets": {"bounds": list(DURATION_BOUNDS)}},
                ),
                metric("request_bytes", "requestsize", "DISTRIBUTION", buckets=SIZE_BUCKETS),
                metric("response_bytes", "responsesize", "DISTRIBUTION", buckets=SIZE_BUCKETS),
            ],
        }
    )


def dimensions(i: int) -> dict[str, object]:
    """One of the label combinations, with values typed as the attribute bag types them."""
    dims: dict[str, object] = {label: f"{label}-{i % 7}" for label in LABELS}
    dims["reporter"] = "destination" if i % 2 else "source"
    dims["destination_workload"] = f"workload-{i}"
    dims["response_code"] = 200 if i % 10 else 503
    return dims


def make_env(registry: CollectorRegistry) -> Env:
    return Env(
        handler_name=f"prometheus.handler.{NS}",
        logger=logging.getLogger("bench.report"),
        registry=registry,
        clock=time.monotonic,
    )


def drive(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("report suspended; this benchmark assumes it does not")


def timed(work: Callable[..., object], *args: Any) -> float:
    """Seconds ``work(*args)`` takes, with the cyclic GC paused as timeit does."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        work(*args)
        return time.perf_counter() - started
    finally:
        gc.enable()


# ----------------------------------------------------------------------------------------------
# 1. Report path


def report_costs(requests: int, batch: int) -> tuple[float, float, float]:
    """µs per request: adapter, bare labels() calls, bare calls on cached children."""
    handler = prometheus.build(istio_params(), make_env(CollectorRegistry()))
    combos = [dimensions(i) for i in range(COMBINATIONS)]
    batches: list[list[Instance]] = []
    for start in range(0, requests, batch):
        instances: list[Instance] = []
        for i in range(start, min(start + batch, requests)):
            dims = combos[i % COMBINATIONS]
            duration = datetime.timedelta(microseconds=1000 + 37 * i % 900_000)
            instances += [
                Instance(f"requestcount.instance.{NS}", "metric", {"value": 1, "dimensions": dims}),
                Instance(
                    f"requestduration.instance.{NS}",
                    "metric",
                    {"value": duration, "dimensions": dims},
                ),
                Instance(
                    f"requestsize.instance.{NS}", "metric", {"value": i % 5000, "dimensions": dims}
                ),
                Instance(
                    f"responsesize.instance.{NS}",
                    "metric",
                    {"value": (i * 7) % 90_000, "dimensions": dims},
                ),
            ]
        batches.append(instances)

    def adapter(part: list[list[Instance]]) -> None:
        for instances in part:
            drive(handler.report(instances))

    # The bare side gets what a hand-written exporter would have: label strings, float values.
    counter = Counter("bare_requests_total", "", LABELS, registry=None)
    duration_h = Histogram("bare_duration", "", LABELS, registry=None, buckets=DURATION_BOUNDS)
    size_buckets = tuple(10.0**i for i in range(9))
    request_h = Histogram("bare_request_bytes", "", LABELS, registry=None, buckets=size_buckets)
    response_h = Histogram("bare_response_bytes", "", LABELS, registry=None, buckets=size_buckets)
    label_values = [
        tuple(prometheus.label_value(combos[i][label]) for label in LABELS)
        for i in range(COMBINATIONS)
    ]
    values = [
        (
            label_values[i % COMBINATIONS],
            (1000 + 37 * i % 900_000) / 1e6,
            float(i % 5000),
            float((i * 7) % 90_000),
        )
        for i in range(requests)
    ]

    def bare(part: list[tuple[tuple[str, ...], float, float, float]]) -> None:
        for lv, seconds, req, resp in part:
            counter.labels(*lv).inc(1.0)
            duration_h.labels(*lv).observe(seconds)
            request_h.labels(*lv).observe(req)
            response_h.labels(*lv).observe(resp)

    children = [
        (
            counter.labels(*lv),
            duration_h.labels(*lv),
            request_h.labels(*lv),
            response_h.labels(*lv),
        )
        for lv in label_values
    ]
    cached = [(children[i % COMBINATIONS], s, q, r) for i, (_, s, q, r) in enumerate(values)]

    def bare_cached(part: list[tuple[tuple[Any, ...], float, float, float]]) -> None:
        for (c, d, q_h, r_h), seconds, req, resp in part:
            c.inc(1.0)
            d.observe(seconds)
            q_h.observe(req)
            r_h.observe(resp)

    adapter(batches)  # warm: every series exists before timing
    # The three sides take turns on slices of the work, so a change in machine load during the
    # run hits them alike.
    totals = [0.0, 0.0, 0.0]
    batch_step = -(-len(batches) // CHUNKS)
    value_step = -(-requests // CHUNKS)
    for k in range(CHUNKS):
        requests_part = slice(k * value_step, (k + 1) * value_step)
        totals[0] += timed(adapter, batches[k * batch_step : (k + 1) * batch_step])
        totals[1] += timed(bare, values[requests_part])
        totals[2] += timed(bare_cached, cached[requests_part])
    per_request = 1e6 / requests
    return (totals[0] * per_request, totals[1] * per_request, totals[2] * per_request)


# ----------------------------------------------------------------------------------------------
# 2. Scrape


def scrape_costs() -> tuple[float, int, float, int, float]:
    """ms and bytes per scrape (adapter store, bare Counter), and the worst event-loop stall (ms)
    while one HTTP scrape of the adapter's server runs."""
    registry = CollectorRegistry()
    params = prometheus.parse_params(
        {
            "metrics": [
                {
                    "name": "requests_total",
                    "instanceName": f"requestcount.instance.{NS}",
                    "kind": "COUNTER",
                    "labelNames": list(LABELS),
                }
            ]
        }
    )
    handler = prometheus.build(params, make_env(registry))
    instances = [
        Instance(f"requestcount.instance.{NS}", "metric", {"value": 1, "dimensions": dimensions(i)})
        for i in range(SCRAPE_SERIES)
    ]
    drive(handler.report(instances))
    assert prometheus.MetricStore.on(registry, time.monotonic).series_count() == SCRAPE_SERIES

    bare_registry = CollectorRegistry()
    bare = Counter("bare_requests_total", "", LABELS, registry=bare_registry)
    for i in range(SCRAPE_SERIES):
        dims = dimensions(i)
        bare.labels(*(prometheus.label_value(dims[label]) for label in LABELS)).inc()

    ours_text = generate_latest(registry)
    bare_text = generate_latest(bare_registry)
    ours_ms = timed(generate_latest, registry) * 1e3
    bare_ms = timed(generate_latest, bare_registry) * 1e3

    server = AdminServer("127.0.0.1", 0, registry, ready=lambda: True)  # mixer's :42422 server
    server.start()
    try:
        stall_ms = asyncio.run(_loop_stall_during_scrape(server.port)) * 1e3
    finally:
        server.stop()
    return ours_ms, len(ours_text), bare_ms, len(bare_text), stall_ms


async def _loop_stall_during_scrape(port: int) -> float:
    """The longest gap between 1 ms ticks of the loop while a scrape runs on the server thread."""
    done = asyncio.Event()
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        for _ in range(100_000):  # bounded; ends when the scrape is done
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.001)
            last = now
            if done.is_set():
                return

    def fetch() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
            resp.read()

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await asyncio.to_thread(fetch)
    done.set()
    await task
    return worst


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args(argv)

    print(f"report path: {args.requests} requests x 4 instances, medians of {args.repeats}")
    header = ("batch", "adapter µs/req", "bare µs/req", "cached µs/req", "ratio")
    print("{:>6} {:>15} {:>12} {:>14} {:>6}".format(*header))
    worst_ratio = 0.0
    for batch in (1, 100):
        runs = [report_costs(args.requests, batch) for _ in range(args.repeats)]
        adapter = statistics.median(r[0] for r in runs)
        bare = statistics.median(r[1] for r in runs)
        cached = statistics.median(r[2] for r in runs)
        ratio = adapter / bare
        worst_ratio = max(worst_ratio, ratio)
        print(f"{batch:>6} {adapter:>15.2f} {bare:>12.2f} {cached:>14.2f} {ratio:>6.2f}")

    scrapes = [scrape_costs() for _ in range(args.repeats)]
    print(f"\nscrape of {SCRAPE_SERIES} counter series, 20 labels, medians of {args.repeats}")
    print(
        f"  adapter store: {statistics.median(s[0] for s in scrapes):7.1f} ms "
        f"{statistics.median(s[1] for s in scrapes) / 1e6:5.2f} MB (no _created lines)"
    )
    print(
        f"  bare Counter:  {statistics.median(s[2] for s in scrapes):7.1f} ms "
        f"{statistics.median(s[3] for s in scrapes) / 1e6:5.2f} MB (with _created lines)"
    )
    print(
        "  worst asyncio loop stall during one HTTP scrape: "
        f"{statistics.median(s[4] for s in scrapes):.1f} ms"
    )
    ok = worst_ratio <= TARGET_RATIO
    print(f"\nratio goal <= {TARGET_RATIO}: {'met' if ok else 'MISSED'} (worst {worst_ratio:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
