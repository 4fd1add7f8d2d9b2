"""Quota choices (rule and instance per requested quota) remembered by the values they read."""

from __future__ import annotations

from typing import Any

import mixer.expr
from adapters.base import Instance, QuotaArgs, QuotaResult
from mixer.attributes.bag import Bag, StringMap
from mixer.runtime.dispatcher import Dispatcher, QuotaRequest
from mixer.runtime.routing import Action, HandlerEntry, InstanceBuilder, RoutingTable, Rule
from mixer.telemetry import ServerMetrics
from mixer.templates import Variety


class Recorder:
    """A quota handler that grants everything and keeps the instances it was given."""

    answers_inline = True

    def __init__(self) -> None:
        self.instances: list[Instance] = []

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        self.instances.append(instance)
        return QuotaResult(granted=args.amount)

    async def close(self) -> None:
        return None


def c(text: str) -> Any:
    return mixer.expr.compile(text)


def dispatcher(handler: Recorder, metrics: ServerMetrics) -> Dispatcher:
    entry = HandlerEntry("q.memquota.istio-system", "memquota", handler, "")

    def rule(name: str, match: str, user: str) -> Rule:
        builder = InstanceBuilder(
            "requestcount.instance.istio-system",
            "requestcount",
            "quota",
            {"dimensions": {"user": c(user), "app": c('destination.labels["app"] | "none"')}},
        )
        return Rule(name, "istio-system", c(match), (Action(entry, (builder,), Variety.QUOTA),))

    rules = (
        # `request.size > 10` fails to evaluate when request.size is a string.
        rule("bigrequests", "request.size > 10", '"big"'),
        rule("reviews", 'destination.service == "reviews"', 'source.user | "anonymous"'),
    )
    return Dispatcher(RoutingTable(rules=rules), {}, metrics)


def bag(**attrs: object) -> Bag:
    base: dict[str, object] = {
        "destination.service": "reviews",
        "destination.labels": StringMap({"app": "reviews", "version": "v1"}),
        "request.size": 5,
        "source.user": "alice",
        "request.path": "/not/read",
    }
    base.update(attrs)
    return Bag({k: v for k, v in base.items() if v is not None})  # type: ignore[arg-type]


async def quota(d: Dispatcher, b: Bag) -> Any:
    return (await d.quota(b, {"requestcount": QuotaRequest(1)}, ""))["requestcount"]


async def test_the_same_reads_give_the_same_instance_and_references_without_evaluating() -> None:
    handler = Recorder()
    d = dispatcher(handler, ServerMetrics.create())
    first = await quota(d, bag())
    second = await quota(d, bag(**{"request.path": "/other"}))  # not read by the choice
    assert handler.instances[0] is handler.instances[1]
    assert handler.instances[0].fields["dimensions"] == {"user": "alice", "app": "reviews"}
    assert second.references == first.references
    assert second.references is not first.references
    assert ("request.path", None) not in first.references.reads


async def test_any_read_that_differs_chooses_again() -> None:
    handler = Recorder()
    d = dispatcher(handler, ServerMetrics.create())
    await quota(d, bag())
    await quota(d, bag(**{"source.user": "bob"}))
    await quota(d, bag(**{"source.user": None}))  # absent: the default
    await quota(d, bag(**{"destination.labels": StringMap({"app": "ratings"})}))
    await quota(d, bag(**{"request.size": 50}))  # the first rule now matches
    outcome = await quota(d, bag(**{"destination.service": "ratings"}))  # no rule matches
    dims = [i.fields["dimensions"] for i in handler.instances]
    assert dims == [
        {"user": "alice", "app": "reviews"},
        {"user": "bob", "app": "reviews"},
        {"user": "anonymous", "app": "reviews"},
        {"user": "alice", "app": "ratings"},
        {"user": "big", "app": "reviews"},
    ]
    assert outcome.granted == 1  # unmatched quotas are granted in full, as in Mixer
    assert outcome.references.reads[("destination.service", None)] is True


async def test_a_match_that_fails_is_evaluated_and_counted_every_time() -> None:
    handler = Recorder()
    metrics = ServerMetrics.create()
    d = dispatcher(handler, metrics)
    for _ in range(3):
        await quota(d, bag(**{"request.size": "not a number"}))
    errors = metrics.registry.get_sample_value(
        "mixer_config_rule_config_match_error_total", {"rule": "bigrequests"}
    )
    assert errors == 3
    assert len(handler.instances) == 3
    assert handler.instances[0] is not handler.instances[1]


async def test_only_quotas_a_handler_answered_are_counted_by_name() -> None:
    metrics = ServerMetrics.create()
    d = dispatcher(Recorder(), metrics)
    requested = {"requestcount": QuotaRequest(1), **{f"junk{i}": QuotaRequest(1) for i in range(5)}}
    outcome = await d.check(bag(), requested)
    assert outcome.quotas["junk3"].granted == 1  # unconfigured: granted in full, as in Mixer
    assert (
        metrics.registry.get_sample_value(
            "mixer_quota_results_total", {"quota": "requestcount", "result": "granted"}
        )
        == 1.0
    )
    series = [
        s.labels["quota"]
        for family in metrics.registry.collect()
        if family.name == "mixer_quota_results"
        for s in family.samples
    ]
    assert series == ["requestcount"]  # a name from a request gets no series of its own
