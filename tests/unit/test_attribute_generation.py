"""The attribute generation phase (`mixer.runtime.generation`): generator rules run before Check
and Report dispatch, fill only what the caller did not send, and say what they read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import CheckResult, Instance
from mixer.attributes.bag import Bag, StringMap
from mixer.expr import Program
from mixer.expr import compile as compile_expression
from mixer.runtime.dispatcher import Dispatcher
from mixer.runtime.routing import Action, HandlerEntry, InstanceBuilder, RoutingTable, Rule
from mixer.telemetry import ServerMetrics
from mixer.templates import TEMPLATES, Variety, output_prefix

VOCABULARY = {
    "source.ip": "IP_ADDRESS",
    "source.uid": "STRING",
    "source.labels": "STRING_MAP",
    "source.workload.name": "STRING",
    "context.protocol": "STRING",
}
PREFIX = output_prefix("kubernetes")
POD_IP = bytes([10, 1, 0, 5])


def expr(text: str) -> Program:
    return compile_expression(text, vocabulary=VOCABULARY)


def binding(text: str) -> Program:
    outputs = {PREFIX + k: v for k, v in TEMPLATES["kubernetes"].outputs.items()}
    return compile_expression(text.replace("$out.", PREFIX), vocabulary={**VOCABULARY, **outputs})


class Generator:
    """An attribute generator answering from a fixed table, counting its calls."""

    answers_inline = True

    def __init__(self, output: Mapping[str, Any], *, fail: bool = False) -> None:
        self.output = output
        self.fail = fail
        self.calls: list[Instance] = []

    async def generate(self, instance: Instance) -> Mapping[str, Any]:
        self.calls.append(instance)
        if self.fail:
            raise RuntimeError("generator was told to fail")
        return self.output

    async def close(self) -> None:
        return None


class DenyReviews:
    """A check handler that denies; its rule matches only the generated workload name."""

    answers_inline = True

    async def check(self, instance: Instance) -> CheckResult:
        return CheckResult(status_code=7, message="no")

    async def close(self) -> None:
        return None


GENERATED = {
    "source_workload_name": "reviews-v1",
    "source_labels": StringMap({"app": "reviews"}),
}


def dispatcher(generator: Generator, *, tcp_rule: bool = False) -> tuple[Dispatcher, ServerMetrics]:
    metrics = ServerMetrics.create()
    gen_entry = HandlerEntry("kubernetesenv.istio-system", "kubernetesenv", generator, "g")
    builder = InstanceBuilder(
        "attributes.istio-system",
        "attributes",
        "kubernetes",
        {"source_ip": expr('source.ip | ip("0.0.0.0")'), "source_uid": expr('source.uid | ""')},
        bindings=(
            ("source.workload.name", binding('$out.source_workload_name | "unknown"')),
            ("source.labels", binding("$out.source_labels | emptyStringMap()")),
        ),
    )
    action = Action(gen_entry, (builder,), Variety.ATTRIBUTE_GENERATOR)
    rules = [Rule("kubeattrgen", "istio-system", None, (action,))]
    if tcp_rule:  # Istio's stock config: the same instance again for TCP
        rules.append(
            Rule("tcpkubeattrgen", "istio-system", expr('context.protocol == "tcp"'), (action,))
        )
    deny = HandlerEntry("deny.istio-system", "denier", DenyReviews(), "d")
    check = Action(
        deny, (InstanceBuilder("c.istio-system", "c", "checknothing", {}),), Variety.CHECK
    )
    rules.append(
        Rule("denyreviews", "istio-system", expr('source.workload.name == "reviews-v1"'), (check,))
    )
    routes = RoutingTable(rules=tuple(rules))
    return Dispatcher(routes, {}, metrics), metrics


async def test_check_sees_generated_attributes_and_references_what_the_caller_sent() -> None:
    d, _ = dispatcher(Generator(GENERATED))
    outcome = await d.check(Bag({"source.ip": POD_IP}))
    assert outcome.status_code == 7  # the rule matched on the generated workload name
    reads = outcome.references.reads
    assert reads[("source.ip", None)] is True  # read by generation
    assert reads[("source.uid", None)] is False
    # Generated, so absent from the caller's bag: sending it would change the answer.
    assert reads[("source.workload.name", None)] is False


async def test_generated_attributes_only_fill_what_the_caller_did_not_send() -> None:
    generator = Generator(GENERATED)
    d, _ = dispatcher(generator)
    outcome = await d.check(Bag({"source.ip": POD_IP, "source.workload.name": "mine"}))
    assert outcome.status_code == 0
    assert outcome.references.reads[("source.workload.name", None)] is True
    [bag] = await d.generate_report([Bag({"source.ip": POD_IP, "source.workload.name": "mine"})])
    assert bag["source.workload.name"] == "mine"
    assert bag["source.labels"] == StringMap({"app": "reviews"})
    assert generator.calls[0].fields == {"source_ip": POD_IP, "source_uid": ""}


async def test_a_failing_generator_leaves_the_defaults_and_is_counted() -> None:
    d, metrics = dispatcher(Generator(GENERATED, fail=True))
    [bag] = await d.generate_report([Bag({"source.ip": POD_IP})])
    assert bag["source.workload.name"] == "unknown"
    assert bag["source.labels"] == StringMap({})
    assert (
        metrics.registry.get_sample_value(
            "mixer_attribute_generation_errors_total",
            {"instance": "attributes.istio-system", "reason": "handler"},
        )
        == 1
    )
    dispatched = metrics.registry.get_sample_value(
        "mixer_runtime_dispatches_total",
        {"adapter": "kubernetesenv", "handler": "kubernetesenv.istio-system", "error": "true"},
    )
    assert dispatched == 1


async def test_one_instance_in_two_matching_rules_is_generated_once() -> None:
    generator = Generator(GENERATED)
    d, _ = dispatcher(generator, tcp_rule=True)
    await d.generate_report([Bag({"source.ip": POD_IP, "context.protocol": "tcp"})])
    assert len(generator.calls) == 1


def test_reports_decode_what_generation_reads() -> None:
    d, _ = dispatcher(Generator(GENERATED))
    names = d.routes.report_names
    assert names is not None and {"source.ip", "source.uid"} <= names


class ByIp(Generator):
    """Answers per source IP, the same mapping for the same IP (as kubernetesenv does)."""

    def __init__(self, table: Mapping[bytes, Mapping[str, Any]]) -> None:
        super().__init__({})
        self.table = table

    async def generate(self, instance: Instance) -> Mapping[str, Any]:
        self.calls.append(instance)
        return self.table.get(instance.fields["source_ip"], {})


async def test_remembered_binding_values_follow_each_output() -> None:
    a = {"source_workload_name": "a", "source_labels": StringMap({"app": "a"})}
    b = {"source_workload_name": "b"}
    ips = {bytes([10, 0, 0, 1]): a, bytes([10, 0, 0, 2]): b}
    d, _ = dispatcher(ByIp(ips))
    for ip, (workload, labels) in [
        (bytes([10, 0, 0, 1]), ("a", {"app": "a"})),
        (bytes([10, 0, 0, 2]), ("b", {})),
        (bytes([10, 0, 0, 1]), ("a", {"app": "a"})),
        (bytes([10, 0, 0, 3]), ("unknown", {})),
        (bytes([10, 0, 0, 2]), ("b", {})),
    ]:
        [bag] = await d.generate_report([Bag({"source.ip": ip})])
        assert bag["source.workload.name"] == workload
        assert dict(bag["source.labels"]) == labels  # type: ignore[call-overload]
