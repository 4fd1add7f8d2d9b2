"""The attribute generation phase: runs the ATTRIBUTE_GENERATOR rules (kubernetesenv) on a
request bag before Check, Report, ext_authz and access-log dispatch, as Mixer's preprocessing
did.

For each matching rule, each generator instance is built from the request bag and sent to its
handler; the instance's bindings then turn the handler's output (read as ``$out.<field>``) into
attributes. Generated attributes only fill names the caller did not send (Mixer's merge): a
proxy's own `source.workload.name` always wins. Two deliberate differences from Mixer, both for
determinism and availability: generators that produce the same name are merged in config order
(Mixer took the first to complete), and a generator that raises or times out leaves its output
unset, so that its bindings take their ``|`` defaults (Mixer failed the whole request).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from adapters.base import AttributeGenerator, Instance
from mixer.attributes.bag import Bag, Value
from mixer.attributes.tracking import References, TrackingBag
from mixer.runtime.handler_calls import HandlerCalls
from mixer.runtime.routing import HandlerEntry, InstanceBuilder, RoutingTable, request_namespace
from mixer.telemetry import ServerMetrics
from mixer.templates import Variety, output_prefix

logger = logging.getLogger(__name__)

# Outputs remembered per generator instance; all dropped when full.
_MEMO_MAX = 1024


class _WithOutput(Mapping[str, object]):
    """What a binding reads: the handler's output under the template's output prefix, any
    other name from the request bag (read through its tracking view)."""

    __slots__ = ("_bag", "_output", "_prefix")

    def __init__(self, prefix: str, output: Mapping[str, Any], bag: Mapping[str, object]) -> None:
        self._prefix = prefix
        self._output = output
        self._bag = bag

    def get(self, name: str, default: object = None) -> object:
        if name.startswith(self._prefix):
            value = self._output.get(name[len(self._prefix) :])
            return default if value is None else value
        return self._bag.get(name, default)

    def __getitem__(self, name: str) -> object:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._bag)

    def __len__(self) -> int:
        return len(self._bag)


class Generated:
    """A request bag after generation, and what the phase read from the caller's attributes."""

    __slots__ = ("bag", "names", "references")

    def __init__(self, bag: Bag, references: References, names: frozenset[str]) -> None:
        self.bag = bag
        self.references = references
        self.names = names
        """The attributes the phase added (the caller did not send them)."""

    def caller_references(self, later: References) -> References:
        """`later` (what dispatch read from `bag`) restated against the caller's bag, plus what
        generation read: a generated attribute counts as read and absent, since the caller
        sending it would change the result."""
        reads = dict(self.references.reads)
        names = self.names
        for (name, key), present in later.reads.items():
            if name in names:
                reads[(name, None)] = False
            else:
                reads[(name, key)] = present
        return References(reads)


class Generation:
    """The generation phase of one routing table. `active` is False when no rule generates
    attributes; callers then skip the phase entirely."""

    def __init__(self, routes: RoutingTable, calls: HandlerCalls, metrics: ServerMetrics) -> None:
        self.routes = routes
        self.calls = calls
        self._metrics = metrics
        self.active = any(r.actions_of(Variety.ATTRIBUTE_GENERATOR) for r in routes.rules)
        # Per instance builder: outputs seen (by identity) and their binding values (see
        # `_bind`), at most _MEMO_MAX each; and whether its bindings read the output alone.
        self._memo: dict[int, dict[int, tuple[Mapping[str, Any], list[object]]]] = {}
        self._pure: dict[int, bool] = {}

    async def run(self, bag: Bag) -> Generated:
        """`bag` with the generated attributes filled in; raises nothing on a failing generator
        or binding (counted in ``mixer_attribute_generation_errors`` and logged)."""
        tracking = TrackingBag(bag)
        jobs = self._instances(tracking)
        generated: dict[str, Value] = {}
        if jobs:
            results = await self.calls.run_all(
                [(entry, generator.generate(instance)) for entry, generator, _, instance in jobs]
            )
            for (entry, _, builder, _), result in zip(jobs, results, strict=True):
                output: Mapping[str, Any]
                if isinstance(result, BaseException):
                    self._metrics.generation_errors.labels(builder.name, "handler").inc()
                    logger.warning(
                        "attribute generation: handler %s failed for instance %s: %r",
                        entry.name,
                        builder.name,
                        result,
                    )
                    output = {}
                else:
                    output = result  # type: ignore[assignment]
                self._bind(builder, output, tracking, generated)
        if not generated:
            return Generated(bag, tracking.refs, frozenset())
        data = dict(bag._data)
        data.update(generated)
        return Generated(Bag._adopt(data), tracking.refs, frozenset(generated))

    async def run_all(self, bags: Sequence[Bag]) -> list[Bag]:
        """Each bag after generation, in order (a Report's records)."""
        return [(await self.run(bag)).bag for bag in bags]

    def _instances(
        self, tracking: TrackingBag
    ) -> list[tuple[HandlerEntry, AttributeGenerator, InstanceBuilder, Instance]]:
        namespace = request_namespace(tracking)
        jobs: list[tuple[HandlerEntry, AttributeGenerator, InstanceBuilder, Instance]] = []
        seen: set[tuple[int, str]] = set()
        for rule in self.routes.candidates(Variety.ATTRIBUTE_GENERATOR, namespace, tracking):
            if not _matches(rule.match, tracking, self._metrics, rule.name):
                continue
            for action in rule.actions_of(Variety.ATTRIBUTE_GENERATOR):
                generator = action.handler.generator
                if generator is None:
                    continue
                for builder in action.instances:
                    # Istio's stock rules send one instance twice for TCP (two rules, one
                    # with `context.protocol == "tcp"`): the second answer could only fill
                    # what the first already did.
                    key = (id(action.handler), builder.name)
                    if key in seen:
                        continue
                    seen.add(key)
                    try:
                        instance = builder.build(tracking)
                    except Exception as exc:
                        self._metrics.generation_errors.labels(builder.name, "instance").inc()
                        logger.debug("instance %s failed to build: %s", builder.name, exc)
                        continue
                    jobs.append((action.handler, generator, builder, instance))
        return jobs

    def _bind(
        self,
        builder: InstanceBuilder,
        output: Mapping[str, Any],
        tracking: TrackingBag,
        generated: dict[str, Value],
    ) -> None:
        prefix = output_prefix(builder.template)
        table = self._memo.get(id(builder))
        if table is None:
            table = self._memo[id(builder)] = {}
        memo = table.get(id(output))
        pure = self._pure.get(id(builder))
        if pure is None:
            pure = self._pure[id(builder)] = _reads_only_output(builder, prefix)
        sent = tracking.refs.reads
        data = tracking._bag._data
        view: _WithOutput | None = None
        values: list[object] = []
        known = memo is not None and memo[0] is output
        if pure and not known:
            # Bindings that read the output alone give the same values for the same output
            # (a generator answers equal inputs with the same mapping): evaluate them once.
            view = _WithOutput(prefix, output, tracking)
            values = [_evaluate(program, view) for _, program in builder.bindings]
            if len(table) >= _MEMO_MAX:
                table.clear()
            # The entry holds `output`, so its id cannot be reused while the entry lives.
            table[id(output)] = (output, values)
            known = True
        elif known:
            assert memo is not None
            values = memo[1]
        for i, (attribute, program) in enumerate(builder.bindings):
            # Fill only: the caller's value wins, then an earlier generator's. Whether the
            # caller sent it is a read (it decides the result), recorded like any other.
            if attribute in generated:
                continue
            present = attribute in data
            sent[(attribute, None)] = present
            if present:
                continue
            if known:
                value = values[i]
            else:
                if view is None:
                    view = _WithOutput(prefix, output, tracking)
                value = _evaluate(program, view)
            if isinstance(value, _Failed):
                self._metrics.generation_errors.labels(builder.name, "binding").inc()
                logger.debug("binding %s of %s failed: %s", attribute, builder.name, value.error)
                continue
            generated[attribute] = value  # type: ignore[assignment]


class _Failed:
    """A binding that raised, remembered as such."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _evaluate(program: Any, view: _WithOutput) -> object:
    try:
        return program.evaluate(view)
    except Exception as exc:
        return _Failed(exc)


def _reads_only_output(builder: InstanceBuilder, prefix: str) -> bool:
    """Whether every binding of `builder` reads nothing but the handler's output."""
    for _, program in builder.bindings:
        names = getattr(program, "names", None)
        if not isinstance(names, frozenset):
            return False
        # A dotted name is also looked up by its leading parts (`a`, `a.b` of `a.b.c`).
        if any(
            not (name + ".").startswith(prefix) and not prefix.startswith(name + ".")
            for name in names
        ):
            return False
    return True


def _matches(match: Any, tracking: TrackingBag, metrics: ServerMetrics, rule: str) -> bool:
    if match is None:
        return True
    try:
        return match.evaluate(tracking) is True
    except Exception as exc:
        metrics.rule_match_errors.labels(rule).inc()
        logger.debug("rule %s: match failed: %s", rule, exc)
        return False
