"""The Report path decodes only what report rules may read (`RoutingTable.report_names`), and
builds the very same instances as from a fully decoded entry."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

import mixer.expr
from bench import workload
from mixer.attributes.compressed import decode_report, encode_report
from mixer.attributes.tracking import TrackingBag
from mixer.runtime.build import build_runtime, load_snapshot
from mixer.runtime.routing import (
    Action,
    HandlerEntry,
    InstanceBuilder,
    RoutingTable,
    Rule,
    request_namespace,
)
from mixer.telemetry import ServerMetrics
from mixer.templates import Variety

RULES = Path(__file__).resolve().parents[2] / "rules"


def outcome(table: RoutingTable, bag: Any) -> list[object]:
    """What routing does with `bag`: each report rule's match, then its instances' fields."""
    out: list[object] = []
    for rule in table.rules_for(Variety.REPORT, request_namespace(bag)):
        try:
            out.append(rule.match.evaluate(bag) if rule.match is not None else True)
        except Exception as exc:
            out.append(("error", str(exc)))
        for action in rule.actions_of(Variety.REPORT):
            for builder in action.instances:
                try:
                    out.append(dict(builder.build(bag).fields))
                except Exception as exc:
                    out.append(("error", str(exc)))
    return out


@pytest.mark.parametrize("config", ["rules", "bench-telemetry"])
async def test_report_rules_see_the_same_attributes_from_a_partial_decode(
    config: str, tmp_path: Path
) -> None:
    directory = RULES if config == "rules" else workload.telemetry_config(tmp_path / "c")
    runtime = await build_runtime(
        load_snapshot(directory),
        ServerMetrics.create(),
        revision="test",
        metrics_registry=CollectorRegistry(),
    )
    try:
        table = runtime.dispatcher.routes
        names = table.report_names
        assert names is not None
        entries = [workload.report_attributes(i, "names") for i in range(40)]
        # A few entries without optional attributes, so that defaults (`a | b`) read on.
        for i in range(0, 40, 7):
            for optional in ("source.workload.name", "request.useragent", "api.protocol"):
                entries[i].pop(optional, None)
        request = encode_report(entries, delta=False)
        full = decode_report(request)
        partial = decode_report(request, wanted=names)
        assert len(set(partial[0])) < len(set(full[0]))  # something was left out
        for whole, part in zip(full, partial, strict=True):
            tracking = TrackingBag(whole)
            outcome(table, tracking)
            assert {name for name, _ in tracking.refs.reads} <= names
            assert outcome(table, part) == outcome(table, whole)
    finally:
        with contextlib.suppress(Exception):
            await runtime.close()


def test_names_come_from_report_rules_only_and_a_program_that_cannot_say_means_all() -> None:
    class Opaque:
        """An expression object without `names` (a third party's, say)."""

        text = "true"

        def evaluate(self, activation: Any) -> object:
            return True

    handler = HandlerEntry("h.stdio.ns", "stdio", cast(Any, object()), "")

    def rule(variety: Variety, match: str, value: Any) -> Rule:
        builder = InstanceBuilder("i.instance.ns", "i", "metric", {"value": value})
        return Rule(
            f"r{variety.name}",
            "istio-system",
            mixer.expr.compile(match),
            (Action(handler, (builder,), variety),),
        )

    report = rule(Variety.REPORT, 'request.method == "GET"', mixer.expr.compile("request.size"))
    check = rule(Variety.CHECK, 'request.path == "/"', mixer.expr.compile("source.uid"))
    assert RoutingTable(rules=(report, check)).report_names == {
        "request",
        "request.method",
        "request.size",
        "context.reporter.kind",
        "source.namespace",
        "destination.namespace",
    }
    opaque = rule(Variety.REPORT, "true", Opaque())
    assert RoutingTable(rules=(report, opaque)).report_names is None
