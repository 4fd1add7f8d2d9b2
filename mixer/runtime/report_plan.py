"""Report evaluation that redoes only what changed from one entry to the next.

Consecutive report entries repeat most of their attributes: a DELTA-encoded Report batch says
which ones each entry changed, and an access-log stream repeats its node, cluster and peer
attributes entry after entry. `ReportPlan` is built once per routing table: every program the
report rules evaluate (matches and instance fields, a metric's dimensions as one), the names each
may read, and for each attribute name the programs that read it. A `ReportSession` evaluates one
batch's entries in order. Given an entry's bag and the names that changed since the entry
before, it re-evaluates only the programs that read a changed name and keeps the other results
(failures included: programs are pure), and it chooses the candidate rules again only when the
namespace or an indexed attribute changed. Each instance it builds equals the one
`Dispatcher.report` builds from scratch for the same bag, which stays as the reference path
(`tests/unit/test_report_plan.py` compares the two, series by series).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from adapters.base import Instance
from mixer.attributes.bag import Bag
from mixer.runtime.reporting import ReportWorker
from mixer.runtime.routing import RoutingTable, Rule, request_namespace
from mixer.telemetry import Children, ServerMetrics
from mixer.templates import Variety

logger = logging.getLogger(__name__)


class _Failed:
    """A program's evaluation raised: remembered like a value, so that every entry that reuses
    it fails (and is counted) the way evaluating again would."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


_STALE: Any = object()

# One instance to build: (instance name, template, handler name, (field key, slot) per field).
_Build = tuple[str, str, str, tuple[tuple[str, int], ...]]


class _RulePlan:
    __slots__ = ("builds", "match", "name", "sampler")

    def __init__(self, rule: Rule, match: int, builds: tuple[_Build, ...]) -> None:
        self.name = rule.name
        self.match = match
        self.sampler = rule.sampler
        self.builds = builds


class ReportPlan:
    """What the report rules of one routing table evaluate, as numbered slots.

    `usable` is False when some program cannot say what it reads: a session would not know
    what to re-evaluate, so such configs keep the reference path.
    """

    def __init__(self, routes: RoutingTable) -> None:
        self.routes = routes
        self.usable = True
        self.evaluators: list[Callable[[Bag], object]] = []
        slots: dict[int, int] = {}
        depends: dict[str, list[int]] = {}
        self.rules: dict[int, _RulePlan] = {}

        def slot(identity: int, evaluate: Callable[[Bag], object], names: frozenset[str]) -> int:
            found = slots.get(identity)
            if found is None:
                found = slots[identity] = len(self.evaluators)
                self.evaluators.append(evaluate)
                for name in names:
                    depends.setdefault(name, []).append(found)
            return found

        for rule in routes.rules:
            actions = rule.actions_of(Variety.REPORT)
            if not actions:
                continue
            match = -1
            if rule.match is not None:
                names = getattr(rule.match, "names", None)
                if not isinstance(names, frozenset):
                    self.usable = False
                    return
                match = slot(id(rule.match), rule.match.evaluate, names)
            builds: list[_Build] = []
            for action in actions:
                for builder in action.instances:
                    fields = builder.field_evaluators()
                    if fields is None:
                        self.usable = False
                        return
                    steps = tuple((f.key, slot(f.identity, f.evaluate, f.names)) for f in fields)
                    builds.append((builder.name, builder.template, action.handler.name, steps))
            self.rules[id(rule)] = _RulePlan(rule, match, tuple(builds))
        self.depends = {name: tuple(found) for name, found in depends.items()}
        self.selection = routes.selection_names(Variety.REPORT)


class ReportSession:
    """Evaluates one batch's entries in order (`add`), collecting instances per handler until
    `flush` offers them to the report workers. Not shared between batches or tasks."""

    __slots__ = (
        "_build_errors",
        "_candidates",
        "_match_errors",
        "_metrics",
        "_pending",
        "_plan",
        "_previous",
        "_values",
        "_workers",
    )

    def __init__(
        self, plan: ReportPlan, workers: Mapping[str, ReportWorker], metrics: ServerMetrics
    ) -> None:
        self._plan = plan
        self._workers = workers
        self._metrics = metrics
        self._match_errors = Children(metrics.rule_match_errors)
        self._build_errors = Children(metrics.report_dropped)
        self._values: list[Any] = [_STALE] * len(plan.evaluators)
        self._candidates: list[_RulePlan] | None = None
        self._previous: Mapping[str, object] | None = None
        self._pending: dict[str, list[Instance]] = {}

    def add(self, bag: Bag, changed: Collection[str] | None) -> None:
        """Report the entry `bag`, whose attributes other than `changed` are those of the bag
        given before (None: anything may have changed). `bag` must be a plain `Bag`."""
        plan = self._plan
        values = self._values
        if changed is None or self._candidates is None:
            values[:] = [_STALE] * len(values)
            self._candidates = None
        else:
            depends = plan.depends
            for name in changed:
                for stale in depends.get(name, ()):
                    values[stale] = _STALE
            if not plan.selection.isdisjoint(changed):
                self._candidates = None
        candidates = self._candidates
        if candidates is None:
            rules = plan.routes.candidates(Variety.REPORT, request_namespace(bag), bag)
            candidates = self._candidates = [plan.rules[id(rule)] for rule in rules]
        evaluators = plan.evaluators
        pending = self._pending
        for rule in candidates:
            slot = rule.match
            if slot >= 0:
                matched = values[slot]
                if matched is _STALE:
                    matched = values[slot] = _evaluate(evaluators[slot], bag)
                if matched is not True:
                    if matched.__class__ is _Failed:
                        # Mixer: a match that fails to evaluate does not match; it is counted.
                        self._match_errors.get(rule.name).inc()
                        logger.debug("rule %s: match failed: %s", rule.name, matched.error)
                    continue
            if rule.sampler is not None and not rule.sampler.keep(bag):
                continue
            for name, template, handler, steps in rule.builds:
                fields: dict[str, Any] = {}
                for key, slot in steps:
                    value = values[slot]
                    if value is _STALE:
                        value = values[slot] = _evaluate(evaluators[slot], bag)
                    if value.__class__ is _Failed:
                        self._build_errors.get(handler, "build_error").inc()
                        logger.debug("instance %s failed to build: %s", name, value.error)
                        break
                    fields[key] = value
                else:
                    found = pending.get(handler)
                    if found is None:
                        found = pending[handler] = []
                    found.append(Instance(name, template, fields))

    def add_whole(self, bag: Bag) -> None:
        """Report the entry `bag` given whole (an INDEPENDENT batch, an access log): what
        changed is found by comparing it with the bag given before."""
        previous = self._previous
        self._previous = bag
        if previous is None:
            self.add(bag, None)
            return
        changed = [
            name for name, value in bag.items() if not _same(previous.get(name, _STALE), value)
        ]
        changed.extend(name for name in previous if name not in bag)
        self.add(bag, changed)

    def flush(self) -> int:
        """Offer what was built so far to the report workers; returns the instances accepted."""
        accepted = 0
        for handler, instances in self._pending.items():
            worker = self._workers.get(handler)
            if worker is not None:
                accepted += len(instances) - worker.offer(instances)
        self._pending = {}
        return accepted


def _evaluate(evaluate: Callable[[Bag], object], bag: Bag) -> object:
    try:
        return evaluate(bag)
    except Exception as exc:
        return _Failed(exc)


def _same(old: object, new: object) -> bool:
    """Equal values of the same type (1, 1.0 and True are equal in Python, not as attributes)."""
    return old is new or (old.__class__ is new.__class__ and old == new)
