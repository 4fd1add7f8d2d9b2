"""The incremental Report path (`ReportSession`) against the reference path, series by series.

Random configs of Istio's standard metrics (subsets of the metrics, random rule matches, rules
scoped to other namespaces, enough rules for the rule index, fields that fail to evaluate) and
random batches (INDEPENDENT and DELTA, random deltas over small value pools so that values
repeat and change back) go through both paths of `MixerService`: the reference decodes a bag per
entry and evaluates every rule from scratch (`Dispatcher.report`), the incremental one evaluates
what each entry changed. The instances each handler is offered, the counted failures and the
prometheus series must be the same.
"""

from __future__ import annotations

import copy
import datetime
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from google.protobuf import json_format
from prometheus_client import CollectorRegistry, generate_latest

from adapters.base import Instance, SeriesReportHandler
from bench import workload
from mixer.api.accesslog_servicer import AccessLogService
from mixer.api.mixer_servicer import MixerService
from mixer.attributes.compressed import encode_report
from mixer.attributes.envoy import bags_from_access_logs
from mixer.attributes.lazy import LazyReportRequest, LazyStreamAccessLogsMessage
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.runtime.build import build_runtime, load_snapshot
from mixer.runtime.report_plan import ReportPlan
from mixer.runtime.runtime import Runtime, RuntimeHolder
from mixer.telemetry import ServerMetrics
from mixer.v1 import mixer_pb2

MATCHES = (
    None,
    'context.protocol == "http"',
    'context.protocol == "tcp"',
    'destination.service.name == "reviews"',
    'destination.service.name == "ratings" && response.code >= 400',
    'source.labels["app"] == "productpage" || response.code == 503',
    'request.headers["x-canary"] == "1"',
    "response.size > 2000",  # fails to evaluate where response.size is absent
    'match(request.useragent | "-", "curl*") == false',
    '(connection.event | "na") == "open"',
)
CONFIG_NS = "istio-system"
VALUES = ("1", "request.size | 0", "response.size", 'response.duration | "0ms"', "response.code")


def random_config(rng: random.Random, directory: Path) -> Path:
    """The bench's telemetry config (Istio's metrics through prometheus), shuffled by `rng`."""
    workload.telemetry_config(directory)
    path = directory / "telemetry.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    instances = [d for d in docs if d["kind"] == "instance"]
    rules = [d for d in docs if d["kind"] == "rule"]
    others = [d for d in docs if d["kind"] not in ("instance", "rule")]
    for instance in instances:
        if rng.random() < 0.2:
            instance["spec"]["params"]["value"] = rng.choice(VALUES)
    metric_names = [i["metadata"]["name"] for i in instances]
    out_rules = []
    for n in range(rng.randint(1, 12)):
        rule = copy.deepcopy(rng.choice(rules)) if n < len(rules) else copy.deepcopy(rules[0])
        rule["metadata"]["name"] = f"r{n}"
        if rng.random() < 0.7:
            match = rng.choice(MATCHES)
            if match is None:
                rule["spec"].pop("match", None)
            else:
                rule["spec"]["match"] = match
        if rng.random() < 0.25:
            rule["metadata"]["namespace"] = workload.NS  # applies to that namespace's traffic only
        for action in rule["spec"]["actions"]:
            chosen = rng.sample(metric_names, rng.randint(1, 4))
            # Fully qualified: a rule in another namespace refers to istio-system's.
            action["handler"] = f"{action['handler']}.handler.{CONFIG_NS}"
            action["instances"] = [f"{name}.instance.{CONFIG_NS}" for name in chosen]
        out_rules.append(rule)
    path.write_text(yaml.safe_dump_all([*others, *instances, *out_rules], sort_keys=False))
    return directory


POOLS: dict[str, tuple[object, ...]] = {
    "response.code": (200, 200, 404, 503),
    "response.size": (100, 2500, 100),
    "request.size": (0, 600),
    "response.duration": tuple(datetime.timedelta(milliseconds=m) for m in (1, 7, 1, 250)),
    "context.protocol": ("http", "http", "tcp"),
    "destination.namespace": (workload.NS, workload.NS, "shop"),
    "context.reporter.kind": ("inbound", "inbound", "outbound"),
    "request.useragent": ("curl/8", "Mozilla/5.0", "kube-probe/1.15"),
    "connection.event": ("open", "close"),
    "request.headers": (
        {"x-canary": "1", "user-agent": "curl/8"},
        {"x-canary": "0"},
        {"user-agent": "Mozilla/5.0"},
    ),
}


def random_entries(rng: random.Random, count: int, delta: bool) -> list[dict[str, object]]:
    """Report entries from the bench's traffic, changed at random from one to the next.

    Some attributes are absent for a while (defaults such as `a | b` read on, and some fields
    and matches fail to evaluate): in a DELTA batch until an entry adds them (an entry never
    removes one), in an INDEPENDENT one entry by entry.
    """
    absent = set(rng.sample(sorted(POOLS), 4))
    entries: list[dict[str, object]] = []
    current: dict[str, object] = {}
    for _ in range(count):
        entry = dict(current)
        if not current or rng.random() < 0.3:  # another request: many attributes change
            entry.update(workload.report_attributes(rng.randrange(1000), "plan"))
        for name in rng.sample(sorted(POOLS), rng.randint(0, 3)):
            entry[name] = rng.choice(POOLS[name])
        for name in sorted(absent):
            keep_out = name not in current and rng.random() < 0.9 if delta else rng.random() < 0.5
            if keep_out:
                entry.pop(name, None)
        entries.append(entry)
        current = entry
    return entries


def series(registry: CollectorRegistry) -> list[str]:
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if not line.startswith("#") and "_created" not in line
    )


class Recorded:
    """A runtime whose report workers' offers are recorded (and still delivered).

    Prepared series (`adapters.base.SeriesReportHandler`) are recorded as the instances they
    stand for: the instance each handle was prepared from, with the value given."""

    def __init__(self, runtime: Runtime, metrics: ServerMetrics, registry: CollectorRegistry):
        self.runtime = runtime
        self.metrics = metrics
        self.registry = registry
        self.holder = RuntimeHolder(runtime)
        self.service = MixerService(self.holder, metrics)
        self.offered: dict[str, list[Instance]] = {}
        self.prepared: dict[int, tuple[object, Instance]] = {}
        dispatcher = runtime.dispatcher
        for name, worker in dispatcher.report_workers.items():
            worker.offer = self._recorder(name, worker.offer)  # type: ignore[method-assign]
            worker.record = self._series_recorder(name, worker.record)  # type: ignore[method-assign]
            handler = cast(Any, worker)._handler
            if isinstance(handler, SeriesReportHandler):
                handler.prepare = self._preparer(handler.prepare)  # type: ignore[method-assign]
        # The plan holds each handler's `prepare`: plan again with the recording one.
        dispatcher._report_plan = ReportPlan(dispatcher.routes)
        self.series_handlers = dispatcher._report_plan.series_handlers

    def _recorder(self, name: str, offer: Any) -> Any:
        def record(instances: list[Instance]) -> int:
            self.offered.setdefault(name, []).extend(instances)
            return int(offer(instances))

        return record

    def _preparer(self, prepare: Any) -> Any:
        def recording(instance: Instance) -> object:
            handle = prepare(instance)
            if handle is not None:
                self.prepared[id(handle)] = (handle, instance)  # kept alive: ids stay unique
            return handle

        return recording

    def _series_recorder(self, name: str, record: Any) -> Any:
        def recording(items: list[tuple[object | None, Any]]) -> None:
            out = self.offered.setdefault(name, [])
            for handle, value in items:
                if handle is None:
                    out.append(value)
                    continue
                instance = self.prepared[id(handle)][1]
                out.append(instance._replace(fields={**instance.fields, "value": value}))
            record(items)

        return recording

    def failures(self) -> dict[str, float]:
        out = {}
        for family in self.metrics.registry.collect():
            if family.name in ("mixer_config_rule_config_match_error", "mixer_report_dropped"):
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        out[f"{sample.name}{sorted(sample.labels.items())}"] = sample.value
        return out

    async def flush(self) -> None:
        for worker in self.runtime.dispatcher.report_workers.values():
            assert await worker.flush(5.0)


async def assert_same(reference: Recorded, incremental: Recorded) -> None:
    """Once both have delivered: the same instances offered to each handler, in order, the
    same failures counted and the same prometheus series."""
    await reference.flush()
    await incremental.flush()
    assert reference.offered.keys() == incremental.offered.keys()
    for handler, instances in reference.offered.items():
        assert incremental.offered[handler] == instances, handler
    assert incremental.failures() == reference.failures()
    assert series(incremental.registry) == series(reference.registry)


async def recorded(config: Path) -> Recorded:
    metrics = ServerMetrics.create()
    registry = CollectorRegistry()
    runtime = await build_runtime(
        load_snapshot(config), metrics, revision="test", metrics_registry=registry
    )
    return Recorded(runtime, metrics, registry)


@pytest.mark.parametrize("seed", range(24))
async def test_incremental_reports_equal_the_reference_series_by_series(
    seed: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    config = random_config(rng, tmp_path / "config")
    reference, incremental = await recorded(config), await recorded(config)
    try:
        assert incremental.runtime.dispatcher.report_session() is not None
        for _ in range(4):
            delta = rng.random() < 0.7
            entries = random_entries(rng, rng.randint(1, 60), delta)
            request = encode_report(entries, delta=delta)
            wire = request.SerializeToString()
            message = mixer_pb2.ReportRequest.FromString(wire)
            await reference.service._report_bags(reference.runtime, message, None, False)
            # As the server parses it: string maps left as bytes until read (`lazy`).
            await incremental.service.report(LazyReportRequest.FromString(wire), None)
        await assert_same(reference, incremental)
    finally:
        await reference.holder.close()
        await incremental.holder.close()


def random_als_messages(rng: random.Random, count: int) -> list[als_pb2.StreamAccessLogsMessage]:
    """ALS messages of the bench's traffic: HTTP entries changed at random, some TCP ones."""
    messages = []
    for m in range(count):
        entries = []
        for _ in range(rng.randint(1, 12)):
            entry = workload._als_entry(rng.randrange(40), "plan")
            if rng.random() < 0.3:
                entry["response"]["response_code"] = rng.choice((200, 404, 503))
            if rng.random() < 0.2:
                del entry["common_properties"]["tls_properties"]
            if rng.random() < 0.2:
                entry["request"]["user_agent"] = rng.choice(("curl/8", "kube-probe/1.15"))
            if rng.random() < 0.2:
                del entry["response"]["response_body_bytes"]
            entries.append(entry)
        body: dict[str, Any] = {"http_logs": {"log_entry": entries}}
        if rng.random() < 0.2:
            body = {
                "tcp_logs": {
                    "log_entry": [{"common_properties": e["common_properties"]} for e in entries]
                }
            }
        if m == 0 or rng.random() < 0.1:
            body["identifier"] = {
                "node": {
                    "id": f"sidecar~10.1.2.{m}~ratings-v1-x.default~default.svc.cluster.local"
                },
                "log_name": rng.choice(("inbound", "outbound")),
            }
        messages.append(json_format.ParseDict(body, als_pb2.StreamAccessLogsMessage()))
    return messages


async def _stream(
    messages: list[als_pb2.StreamAccessLogsMessage],
) -> AsyncIterator[als_pb2.StreamAccessLogsMessage]:
    for message in messages:
        yield message


@pytest.mark.parametrize("seed", range(12))
async def test_incremental_access_logs_equal_the_reference_series_by_series(
    seed: int, tmp_path: Path
) -> None:
    rng = random.Random(1000 + seed)
    config = random_config(rng, tmp_path / "config")
    reference, incremental = await recorded(config), await recorded(config)
    try:
        service = AccessLogService(incremental.holder, incremental.metrics)
        for _ in range(3):
            messages = random_als_messages(rng, rng.randint(1, 6))
            # As the server parses them: addresses and TLS blocks left as bytes (`lazy`).
            lazy = [LazyStreamAccessLogsMessage.FromString(m.SerializeToString()) for m in messages]
            await service.stream(_stream(lazy), cast(Any, None))
            identifier = None
            for message in messages:
                if message.HasField("identifier"):
                    identifier = message.identifier
                reference.runtime.dispatcher.report(bags_from_access_logs(message, identifier))
        await assert_same(reference, incremental)
    finally:
        await reference.holder.close()
        await incremental.holder.close()


async def test_values_equal_in_python_but_not_as_attributes_are_changes(tmp_path: Path) -> None:
    """1, 1.0 and True are one dict key and compare equal, yet are different attribute values
    (True is no metric value at all)."""
    config = workload.telemetry_config(tmp_path / "config")
    reference, incremental = await recorded(config), await recorded(config)
    try:
        base = workload.report_attributes(0, "eq")
        entries = [{**base, "request.size": size} for size in (1, True, 1.0, 1)]
        message = encode_report(entries, delta=False)
        await reference.service._report_bags(reference.runtime, message, None, False)
        await incremental.service.report(message, None)
        await assert_same(reference, incremental)
    finally:
        await reference.holder.close()
        await incremental.holder.close()
