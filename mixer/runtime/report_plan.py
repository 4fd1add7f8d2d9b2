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

import itertools
import logging
import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, NamedTuple

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
_MAX_CHANGE_SETS = 1024
_MAX_HANDLES = 1024  # prepared series remembered per instance of a rule

# One instance to build: its number in the plan, instance name, template, field keys, the slot
# of each field, a C-level getter of those slots' values (a tuple, in the keys' order; it may
# hold one value more than there are keys), and the slot of the series value for a handler
# that takes prepared series (-1: the handler is given whole instances).
_Build = tuple[
    int, str, str, tuple[str, ...], tuple[int, ...], Callable[[list[Any]], tuple[Any, ...]], int
]
# A rule's instances for one handler: its name, its `prepare` when it takes prepared series
# (`adapters.base.SeriesReportHandler`: its instances then travel as (handle, value) or
# (None, instance) pairs), the builds, and their `_Group` if they form one.
_Action = tuple[
    str, Callable[[Instance], object | None] | None, tuple[_Build, ...], "_Group | None"
]
# `Instance(...)` goes through a Python-level `__new__`; this is the same tuple, built in C.
_new_instance: Callable[..., Instance] = tuple.__new__


class _Group:
    """Prepared series that share every field but their values (Istio's HTTP metrics share
    their dimensions): the slots of those fields, a getter of their values, the builds'
    numbers, value slots and names, the group's number among the plan's groups, and the
    builds' handles as last prepared together, by those values' identities. One lookup finds
    every handle of a repeated series set; while those fields are unchanged, an entry only
    evaluates the values (`ReportSession` keeps the handles per group)."""

    __slots__ = ("handles", "index", "names", "numbers", "slots", "values", "vslots")

    def __init__(self, slots: tuple[int, ...], builds: tuple[_Build, ...], index: int) -> None:
        self.slots = slots
        self.values = _getter(slots)
        self.numbers = tuple(b[0] for b in builds)
        self.vslots = tuple(b[6] for b in builds)
        self.names = tuple(b[1] for b in builds)
        self.index = index
        self.handles: dict[tuple[int, ...], tuple[tuple[Any, ...], tuple[Any, ...]]] = {}


class _RulePlan:
    __slots__ = ("actions", "match", "name", "sampler")

    def __init__(self, rule: Rule, match: int, actions: tuple[_Action, ...]) -> None:
        self.name = rule.name
        self.match = match
        self.sampler = rule.sampler
        self.actions = actions


class Stale(NamedTuple):
    """What one set of changed names makes stale."""

    slots: tuple[int, ...]
    """The programs to evaluate again."""
    builds: tuple[int, ...]
    """The instances with a field to evaluate again (other than a group's)."""
    groups: tuple[int, ...]
    """The groups whose shared fields are to evaluate again."""
    reselect: bool
    """The candidate rules may differ (the namespace or an indexed attribute changed)."""
    rematch: bool
    """Some rule's match may differ."""


class ReportPlan:
    """What the report rules of one routing table evaluate, as numbered slots.

    `usable` is False when some program cannot say what it reads: a session would not know
    what to re-evaluate, so such configs keep the reference path.
    """

    def __init__(self, routes: RoutingTable) -> None:
        self.routes = routes
        self.usable = True
        self.evaluators: list[Callable[[Bag], object]] = []
        self.builds = 0
        slots: dict[int, int] = {}
        depends: dict[str, list[int]] = {}
        self.rules: dict[int, _RulePlan] = {}
        self.series_handlers: set[str] = set()
        """The handlers given prepared series and values (`ReportWorker.record`)."""
        # Per build, for a prepared series: a getter of the fields other than the value (from
        # the tuple of field values), the handles prepared so far by those values'
        # identities, and the value's position among the fields. Metric dimensions are
        # memoized (`MapFieldMemo`): a repeated series has the very same dimensions object,
        # found here without building an instance.
        self.series_of: list[
            tuple[Callable[[Any], tuple[Any, ...]], dict[tuple[int, ...], Any], int]
        ] = []
        build_slots: list[tuple[int, ...]] = []
        match_slots: set[int] = set()
        self.groups: list[_Group] = []

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
                match_slots.add(match)
            planned: list[_Action] = []
            for action in actions:
                series = action.handler.series
                if series is not None:
                    self.series_handlers.add(action.handler.name)
                builds: list[_Build] = []
                for builder in action.instances:
                    fields = builder.field_evaluators()
                    if fields is None:
                        self.usable = False
                        return
                    used = tuple(slot(f.identity, f.evaluate, f.names) for f in fields)
                    keys = tuple(f.key for f in fields)
                    value_at = -1
                    if series is not None and series.series_value in keys:
                        value_at = keys.index(series.series_value)
                    number = len(build_slots)
                    others = tuple(i for i in range(len(keys)) if i != value_at)
                    self.series_of.append((_getter(others), {}, value_at))
                    vslot = used[value_at] if value_at >= 0 else -1
                    builds.append(
                        (number, builder.name, builder.template, keys, used, _getter(used), vslot)
                    )
                    # A prepared series is kept while its other fields are: a changed value
                    # alone does not make it stale.
                    build_slots.append(
                        tuple(s for i, s in enumerate(used) if i != value_at)
                        if value_at >= 0
                        else used
                    )
                prepare = series.prepare if series is not None else None
                group = None
                shared = {build_slots[b[0]] for b in builds}
                if len(builds) > 1 and len(shared) == 1 and all(b[6] >= 0 for b in builds):
                    group = _Group(shared.pop(), tuple(builds), len(self.groups))
                    self.groups.append(group)
                planned.append((action.handler.name, prepare, tuple(builds), group))
            self.rules[id(rule)] = _RulePlan(rule, match, tuple(planned))
        self.builds = len(build_slots)
        self._depends = {name: tuple(found) for name, found in depends.items()}
        self._build_slots = build_slots
        self._match_slots = frozenset(match_slots)
        self._selection = routes.selection_names(Variety.REPORT)
        self.read_names = tuple(sorted(set(self._depends) | self._selection))
        """Every name some program or the choice of rules may read: a whole entry's changes
        are looked for among these only."""
        self.read_set = frozenset(self.read_names)
        # Changed names (in the order an entry gave them) -> what they make stale. Entries of
        # one kind of request change the same names: one lookup instead of one per name.
        # Names come from requests (only those report rules read, when decoding filters
        # them): bounded.
        self.stale_of: dict[tuple[str, ...], Stale] = {}
        """`stale`'s answers so far (read directly: a method call per entry costs more)."""

    def stale(self, changed: tuple[str, ...]) -> Stale:
        """What `changed` makes stale."""
        found = self.stale_of.get(changed)
        if found is None:
            depends = self._depends
            slots = {slot for name in changed for slot in depends.get(name, ())}
            # A group's builds are kept by the group (`ReportSession._grouped`), not one by one.
            grouped = {number for group in self.groups for number in group.numbers}
            found = Stale(
                tuple(sorted(slots)),
                tuple(
                    b
                    for b, used in enumerate(self._build_slots)
                    if b not in grouped and not slots.isdisjoint(used)
                ),
                tuple(g.index for g in self.groups if not slots.isdisjoint(g.slots)),
                not self._selection.isdisjoint(changed),
                not self._match_slots.isdisjoint(slots),
            )
            if len(self.stale_of) >= _MAX_CHANGE_SETS:
                self.stale_of.clear()
            self.stale_of[changed] = found
        return found


class ReportSession:
    """Evaluates one batch's entries in order (`add`), collecting instances per handler until
    `flush` offers them to the report workers. Not shared between batches or tasks."""

    __slots__ = (
        "_build_errors",
        "_built",
        "_failed",
        "_failing",
        "_grouped",
        "_match_errors",
        "_matched",
        "_metrics",
        "_names",
        "_pending",
        "_plan",
        "_previous",
        "_previous_types",
        "_seen",
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
        # Each instance as last built (None: not built, or it failed), reused while none of its
        # fields is stale: instances are immutable, and handlers only read them. For a handler
        # given prepared series: the series handle, or (None, instance) for a whole instance.
        self._built: list[Any] = [None] * plan.builds
        # Per group (`_Group`): its builds' handles while its shared fields are unchanged, or
        # None. Its builds' entries in `_built` are used only when it has no handles.
        self._grouped: list[tuple[Any, ...] | None] = [None] * len(plan.groups)
        # The candidate rules that matched the entry before, and those whose match failed;
        # None: choose and match again.
        self._matched: list[_RulePlan] | None = None
        self._failing: list[_RulePlan] = []
        self._failed: set[int] = set()  # the slots whose value is a `_Failed`
        self._previous: tuple[object, ...] | None = None
        self._previous_types: tuple[type, ...] | None = None
        self._seen: set[str] = set()
        self._names: tuple[str, ...] = ()
        self._pending: dict[str, list[Any]] = {}  # instances, or pairs (`series_handlers`)

    def add(self, bag: Bag, changed: Collection[str] | None) -> None:
        """Report the entry `bag`, whose attributes other than `changed` are those of the bag
        given before (None: anything may have changed). `bag` must be a plain `Bag`."""
        plan = self._plan
        values = self._values
        built = self._built
        grouped = self._grouped
        matched = self._matched
        failed = self._failed
        if changed is None or matched is None:
            values[:] = [_STALE] * len(values)
            built[:] = [None] * len(built)
            grouped[:] = [None] * len(grouped)
            failed.clear()
            matched = None
        else:
            changed = tuple(changed)
            stale = plan.stale_of.get(changed) or plan.stale(changed)
            for slot in stale.slots:
                values[slot] = _STALE
            if failed:
                failed.difference_update(stale.slots)
            # Now, not when next built: an instance not built for this entry (its rule did
            # not match) must not be reused for a later one.
            for number in stale.builds:
                built[number] = None
            for number in stale.groups:
                grouped[number] = None
            if stale.reselect or stale.rematch:
                matched = None
        evaluators = plan.evaluators
        if matched is None:
            matched, failing = [], []
            rules = plan.routes.candidates(Variety.REPORT, request_namespace(bag), bag)
            for rule in map(plan.rules.__getitem__, map(id, rules)):
                slot = rule.match
                if slot < 0:
                    matched.append(rule)
                    continue
                result = values[slot]
                if result is _STALE:
                    result = values[slot] = _evaluate(evaluators[slot], bag)
                    if result.__class__ is _Failed:
                        failed.add(slot)
                if result is True:
                    matched.append(rule)
                elif result.__class__ is _Failed:
                    failing.append(rule)
            self._matched, self._failing = matched, failing
        for rule in self._failing:
            # Mixer: a match that fails to evaluate does not match; it is counted.
            self._match_errors.get(rule.name).inc()
            logger.debug("rule %s: match failed: %s", rule.name, values[rule.match].error)
        pending = self._pending
        for rule in matched:
            if rule.sampler is not None and not rule.sampler.keep(bag):
                continue
            for handler, prepare, builds, group in rule.actions:
                out = pending.get(handler)
                if out is None:
                    out = pending[handler] = []
                group_key = None
                if group is not None:
                    kept = grouped[group.index]
                    if kept is None:
                        # The group's series went stale together: find them again in one
                        # lookup by the shared fields' values (each build then takes only its
                        # value), or build them one by one below.
                        shared = group.values(values)
                        if _STALE in shared:
                            _fill(values, evaluators, failed, group.slots, bag)
                            shared = group.values(values)
                        if not failed or failed.isdisjoint(group.slots):
                            group_key = tuple(map(id, shared))
                            # Ids of objects a remembered entry holds alive: same ids, same
                            # objects.
                            hit = group.handles.get(group_key)
                            if hit is not None:
                                kept = grouped[group.index] = hit[1]
                    if kept is not None:
                        # A kept build's steps (as in the loop below), written out again: this
                        # loop runs per series of every entry, where a helper would add a call.
                        for held, vslot, name in zip(kept, group.vslots, group.names, strict=True):
                            value = values[vslot]
                            if value is _STALE:
                                try:
                                    value = evaluators[vslot](bag)
                                except Exception as exc:
                                    value = _Failed(exc)
                                    failed.add(vslot)
                                values[vslot] = value
                            if value.__class__ is _Failed:
                                self._build_errors.get(handler, "build_error").inc()
                                logger.debug("instance %s failed to build: %s", name, value.error)
                                continue
                            out.append((held, value))
                        continue
                    for number in group.numbers:
                        built[number] = None  # kept by the group only while it has handles
                for number, name, template, keys, slots, getter, vslot in builds:
                    held = built[number]
                    if held is not None:
                        if vslot < 0:
                            out.append(held)
                            continue
                        # A prepared series whose other fields are unchanged: only its value.
                        value = values[vslot]
                        if value is _STALE:
                            try:
                                value = evaluators[vslot](bag)
                            except Exception as exc:
                                value = _Failed(exc)
                                failed.add(vslot)
                            values[vslot] = value
                        if value.__class__ is _Failed:
                            self._build_errors.get(handler, "build_error").inc()
                            logger.debug("instance %s failed to build: %s", name, value.error)
                            continue
                        out.append((held, value))
                        continue
                    found = getter(values)
                    if _STALE in found:
                        _fill(values, evaluators, failed, slots, bag)
                        found = getter(values)
                    if failed and not failed.isdisjoint(slots):
                        # As building field by field would: the first failed field is the error.
                        error = next(values[s].error for s in slots if s in failed)
                        self._build_errors.get(handler, "build_error").inc()
                        logger.debug("instance %s failed to build: %s", name, error)
                        continue
                    if vslot >= 0:
                        others, handles, value_at = plan.series_of[number]
                        identity = others(found)
                        key = tuple(map(id, identity))
                        # The ids are those of the objects a remembered entry holds alive: equal
                        # ids are the same objects.
                        held = handles.get(key)
                        if held is not None:
                            out.append((held[1], found[value_at]))
                            built[number] = held[1]
                            continue
                    instance = _new_instance(
                        Instance, (name, template, dict(zip(keys, found, strict=False)))
                    )
                    if prepare is None:
                        out.append(instance)
                        built[number] = instance
                    elif vslot < 0 or (handle := prepare(instance)) is None:
                        item = (None, instance)
                        out.append(item)
                        if vslot < 0:
                            built[number] = item
                    else:
                        out.append((handle, found[value_at]))
                        built[number] = handle
                        if len(handles) >= _MAX_HANDLES:
                            handles.clear()
                        handles[key] = (identity, handle)  # holds `identity`: ids stay unique
                if group_key is not None:
                    prepared = tuple(map(built.__getitem__, group.numbers))  # type: ignore[union-attr]
                    if None not in prepared:
                        remembered = group.handles  # type: ignore[union-attr]
                        if len(remembered) >= _MAX_HANDLES:
                            remembered.clear()
                        remembered[group_key] = (shared, prepared)
                        grouped[group.index] = prepared  # type: ignore[union-attr]

    def add_whole(self, bag: Bag, *, fixed_types: bool = False) -> None:
        """Report the entry `bag` given whole (an INDEPENDENT batch, an access log): what
        changed is found by comparing it with the bag given before, on the names read.
        `fixed_types`: every bag of the session gives each name values of one type (bags that
        one conversion makes, as from access logs), so values alone are compared."""
        data = bag._data
        # Only the names read that some entry of this session had: the others were absent in
        # every entry before, and still are unless they are new here.
        if not self._seen.issuperset(data):
            # Names the rules do not read are remembered too, not to be looked at again (the
            # session's bags hold only wanted names: bounded by the config).
            new = data.keys() - self._seen
            self._seen |= new
            if not new.isdisjoint(self._plan.read_set):
                self._names = tuple(n for n in self._plan.read_names if n in self._seen)
                self._previous = None  # a new name changed: evaluate this entry whole
        names = self._names
        values = tuple(map(data.get, names))  # attribute values are never None
        previous = self._previous
        self._previous = values
        if fixed_types:
            self._previous_types = None  # not kept: a later entry's types are compared whole
            if previous is None:
                self.add(bag, None)
            else:
                self.add(bag, tuple(itertools.compress(names, map(operator.ne, previous, values))))
            return
        types = tuple(map(type, values))
        previous_types = self._previous_types
        self._previous_types = types
        if previous is None or previous_types is None:
            self.add(bag, None)
            return
        # In C, name by name: equal values of the same type (1, 1.0 and True are equal in
        # Python, not as attributes). Entries of one stream mostly keep every type: then the
        # types are compared once, as tuples.
        if types == previous_types:
            differ: Iterable[object] = map(operator.ne, previous, values)
        else:
            differ = map(
                operator.or_,
                map(operator.ne, previous, values),
                map(operator.is_not, previous_types, types),
            )
        self.add(bag, tuple(itertools.compress(names, differ)))

    def flush(self) -> int:
        """Offer what was built so far to the report workers; returns the instances accepted."""
        accepted = 0
        series = self._plan.series_handlers
        for handler, items in self._pending.items():
            worker = self._workers.get(handler)
            if worker is None or not items:
                continue
            if handler in series:
                worker.record(items)
                accepted += len(items)
            else:
                accepted += len(items) - worker.offer(items)
        self._pending = {}
        return accepted


def _getter(slots: tuple[int, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    if not slots:
        return lambda values: ()
    # `itemgetter` of one index returns the value itself, not a tuple: ask for it twice (the
    # fields are zipped with their keys, which stops at the first key's value).
    return operator.itemgetter(*slots) if len(slots) > 1 else operator.itemgetter(*slots * 2)


def _fill(
    values: list[Any],
    evaluators: list[Callable[[Bag], object]],
    failed: set[int],
    slots: tuple[int, ...],
    bag: Bag,
) -> None:
    """Evaluate the stale ones of `slots`; a failure is kept as a `_Failed` and in `failed`."""
    for slot in slots:
        if values[slot] is _STALE:
            try:
                values[slot] = evaluators[slot](bag)
            except Exception as exc:
                values[slot] = _Failed(exc)
                failed.add(slot)


def _evaluate(evaluate: Callable[[Bag], object], bag: Bag) -> object:
    try:
        return evaluate(bag)
    except Exception as exc:
        return _Failed(exc)
