"""The routing table: which rules apply to a request, and what each matching rule dispatches.

Built once per config snapshot (see `mixer.runtime.build`), immutable, and read by every request
that started while it was current.
"""

from __future__ import annotations

import contextlib
import enum
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from adapters.base import (
    AttributeGenerator,
    BatchQuotaHandler,
    CheckHandler,
    Handler,
    Instance,
    QuotaHandler,
    ReportHandler,
    SeriesReportHandler,
    answers_inline,
)
from mixer.attributes.bag import Bag
from mixer.attributes.shapes import ShapeSet, estimated_size
from mixer.attributes.tracking import TrackingBag
from mixer.errors import DispatchError
from mixer.expr.predicates import Equality
from mixer.runtime.sampling import Sampler
from mixer.templates import Variety

DEFAULT_NAMESPACE = "istio-system"


class Evaluable(Protocol):
    """A compiled expression (see `mixer.expr`)."""

    text: str

    def evaluate(self, activation: Mapping[str, object]) -> object: ...


class HeaderOp(enum.IntEnum):
    """Header operations, numbered as on the Mixer wire."""

    REPLACE = 0
    REMOVE = 1
    APPEND = 2


class HeaderOperationResult(NamedTuple):
    """An evaluated header operation for the route directive."""

    name: str
    value: str
    operation: HeaderOp


@dataclass(frozen=True, slots=True)
class HeaderOperationTemplate:
    """A rule's header operation: values are expressions evaluated on a matching, allowed check."""

    name: str
    values: tuple[Evaluable, ...]
    operation: HeaderOp
    # The results, when they cannot depend on the request (a removal, constant values).
    _fixed: tuple[HeaderOperationResult, ...] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        constants = [getattr(v, "constant", None) for v in self.values]
        fixed: tuple[HeaderOperationResult, ...] | None = None
        if self.operation is HeaderOp.REMOVE:
            fixed = (HeaderOperationResult(self.name, "", self.operation),)
        elif all(c is not None for c in constants):
            fixed = tuple(self._results(constants))
        object.__setattr__(self, "_fixed", fixed)

    def evaluate(
        self, activation: Mapping[str, object], rule: str
    ) -> Iterable[HeaderOperationResult]:
        """The operations to apply for a request; DispatchError if a value fails."""
        if self._fixed is not None:
            return self._fixed
        values = []
        for program in self.values:
            try:
                values.append(program.evaluate(activation))
            except Exception as exc:
                raise DispatchError(
                    f"rule {rule}: header {self.name}: expression {program.text!r} failed: {exc}"
                ) from exc
        return self._results(values)

    def _results(self, values: Iterable[object]) -> list[HeaderOperationResult]:
        out = []
        for value in values:
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if text:  # Mixer skips an operation whose value evaluates to ""
                out.append(HeaderOperationResult(self.name, text, self.operation))
        return out


FieldTree = Mapping[str, "Evaluable | FieldTree"]


# One step of an instance's build plan: field name, program id (the memo key), the program's
# evaluate, or (for a map field) the plan of the nested fields and, for a large one, its memo.
_Step = tuple[
    str,
    int,
    "Callable[[Mapping[str, object]], object] | None",
    "tuple[_Step, ...]",
    "MapFieldMemo | None",
]
_MISSING = object()
# A map field with at least this many expressions (a metric's dimensions) is remembered by the
# values it read; smaller ones cost less to evaluate than to look up.
_MEMO_MIN_PROGRAMS = 4
# Per map field: distinct read shapes, and remembered results (all dropped when full).
_MEMO_MAX_SHAPES = 16
_MEMO_MAX_ENTRIES = 4096
# A result read from values larger than this is not remembered: values come from requests, and
# 4,096 of 64 KiB each would hold hundreds of MiB. Real series repeat short values.
_MEMO_MAX_KEY_BYTES = 4096


class MapFieldMemo:
    """A map field's evaluated values (a metric's dimensions), remembered by the values of the
    attributes its evaluation read (`mixer.attributes.shapes`).

    Reported requests repeat a few series over and over: the dimensions of request k are
    usually those of an earlier request, while its value (a duration, a size) is new. Shared by
    every instance builder with the same field plan (Istio's standard metrics share their
    dimensions), and only for plain bags: a check's `TrackingBag` must see every read.
    """

    __slots__ = ("__weakref__", "_plan", "_shapes", "_table")

    def __init__(self, plan: tuple[_Step, ...]) -> None:
        self._plan = plan
        self._shapes = ShapeSet(_MEMO_MAX_SHAPES)
        self._table: dict[tuple[object, ...], Mapping[str, Any]] = {}

    def build(self, bag: Bag) -> Mapping[str, Any]:
        """The field's value for `bag`: remembered, or evaluated (and remembered)."""
        data = bag._data
        found = self._shapes.first(self._table, data)
        if found is not None:
            return found
        tracking = TrackingBag(bag)
        value = MappingProxyType(_run(self._plan, tracking, None))
        learned = self._shapes.of(tracking.refs)
        key = learned.key(data) if learned is not None else None
        if key is not None and estimated_size(key) <= _MEMO_MAX_KEY_BYTES:
            if len(self._table) >= _MEMO_MAX_ENTRIES:
                self._table.clear()
            with contextlib.suppress(TypeError):  # an unhashable value read
                self._table[key] = value
        return value


# Field plans -> their memo, while some builder uses it. Program ids in a plan stay unique as
# long as the plan (and so the memo) is alive, so a new config never meets an old entry.
_memos: weakref.WeakValueDictionary[tuple[object, ...], MapFieldMemo] = (
    weakref.WeakValueDictionary()
)


def _signature(plan: tuple[_Step, ...]) -> tuple[object, ...]:
    return tuple((key, pid, _signature(nested)) for key, pid, _, nested, _ in plan)


def _count_programs(plan: tuple[_Step, ...]) -> int:
    return sum(1 if ev is not None else _count_programs(nested) for _, _, ev, nested, _ in plan)


def _plan(tree: FieldTree) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    for key, node in tree.items():
        if isinstance(node, Mapping):
            nested = _plan(node)
            memo = None
            if _count_programs(nested) >= _MEMO_MIN_PROGRAMS:
                signature = _signature(nested)
                memo = _memos.get(signature)
                if memo is None:
                    memo = _memos[signature] = MapFieldMemo(nested)
            steps.append((key, 0, None, nested, memo))
        else:
            steps.append((key, id(node), node.evaluate, (), None))
    return tuple(steps)


def _run(
    plan: tuple[_Step, ...], activation: Mapping[str, object], memo: dict[int, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, program_id, evaluate, nested, field_memo in plan:
        if evaluate is None:
            if field_memo is not None and memo is not None and activation.__class__ is Bag:
                # One lookup per request for all builders sharing the field memo.
                value = memo.get(id(field_memo), _MISSING)
                if value is _MISSING:
                    value = memo[id(field_memo)] = field_memo.build(activation)
                out[key] = value
            else:
                out[key] = _run(nested, activation, memo)
        elif memo is None:
            out[key] = evaluate(activation)
        else:
            value = memo.get(program_id, _MISSING)
            if value is _MISSING:
                value = memo[program_id] = evaluate(activation)
            out[key] = value
    return out


class FieldEvaluator(NamedTuple):
    """One top-level field of an instance, evaluated whole from a plain `Bag`: a program's
    value, or a map field's map (the same value, of the same type, as `InstanceBuilder.build`
    gives). `identity` is shared by every builder evaluating the same thing; `names` is every
    attribute the evaluation may read."""

    key: str
    identity: int
    evaluate: Callable[[Bag], object]
    names: frozenset[str]


def _names_of(node: object) -> frozenset[str] | None:
    if isinstance(node, Mapping):
        names: set[str] = set()
        for child in node.values():
            found = _names_of(child)
            if found is None:
                return None
            names |= found
        return frozenset(names)
    found = getattr(node, "names", None)
    return found if isinstance(found, frozenset) else None


def _map_field(nested: tuple[_Step, ...]) -> Callable[[Bag], object]:
    def evaluate(bag: Bag) -> object:
        return _run(nested, bag, None)

    return evaluate


@dataclass(frozen=True, slots=True)
class InstanceBuilder:
    """Builds one instance from a bag: a compiled expression per template field.

    The field tree is flattened once into a plan; `build` with a `memo` evaluates each distinct
    program once per bag (Istio's standard metrics share most of their dimension expressions,
    and a config load compiles each distinct expression text once).
    """

    name: str
    short_name: str
    template: str
    fields: FieldTree
    plan: tuple[_Step, ...] = ()
    bindings: tuple[tuple[str, Evaluable], ...] = ()
    """ATTRIBUTE_GENERATOR instances: (attribute, program) in config order; each program reads
    the handler's output under `mixer.templates.output_prefix`, other names from the bag."""

    def __post_init__(self) -> None:
        if not self.plan:
            object.__setattr__(self, "plan", _plan(self.fields))

    def build(
        self, activation: Mapping[str, object], memo: dict[int, Any] | None = None
    ) -> Instance:
        return Instance(self.name, self.template, _run(self.plan, activation, memo))

    def field_evaluators(self) -> tuple[FieldEvaluator, ...] | None:
        """The top-level fields one by one, in `build`'s order; None when some program cannot
        say what it reads."""
        out: list[FieldEvaluator] = []
        for step, node in zip(self.plan, self.fields.values(), strict=True):
            key, program_id, evaluate, nested, memo = step
            names = _names_of(node)
            if names is None:
                return None
            if evaluate is not None:
                out.append(FieldEvaluator(key, program_id, evaluate, names))
            elif memo is not None:
                out.append(FieldEvaluator(key, id(memo), memo.build, names))
            else:
                out.append(FieldEvaluator(key, id(nested), _map_field(nested), names))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class HandlerEntry:
    """A built handler, what it is (adapter name, handler FQN, config signature) and what it can
    do, resolved once when the entry is made: the request path reads these fields and never asks
    the handler again. A capability the handler lacks is None."""

    name: str
    adapter: str
    handler: Handler
    signature: str
    checker: CheckHandler | None = field(init=False)
    quotas: QuotaHandler | None = field(init=False)
    batch: BatchQuotaHandler | None = field(init=False)
    reporter: ReportHandler | None = field(init=False)
    generator: AttributeGenerator | None = field(init=False)
    inline: bool = field(init=False)
    """The handler answers from memory (`adapters.base.answers_inline`): no timer, no task."""
    series: SeriesReportHandler | None = field(init=False)
    """The handler takes prepared series (`adapters.base.SeriesReportHandler`; inline only)."""

    def __post_init__(self) -> None:
        h = self.handler
        object.__setattr__(self, "checker", h if isinstance(h, CheckHandler) else None)
        object.__setattr__(self, "quotas", h if isinstance(h, QuotaHandler) else None)
        object.__setattr__(self, "batch", h if isinstance(h, BatchQuotaHandler) else None)
        object.__setattr__(self, "reporter", h if isinstance(h, ReportHandler) else None)
        object.__setattr__(self, "generator", h if isinstance(h, AttributeGenerator) else None)
        object.__setattr__(self, "inline", answers_inline(h))
        series = h if self.inline and isinstance(h, SeriesReportHandler) else None
        object.__setattr__(self, "series", series)


@dataclass(frozen=True, slots=True)
class Action:
    """Instances of one variety a matching rule sends to one handler."""

    handler: HandlerEntry
    instances: tuple[InstanceBuilder, ...]
    variety: Variety
    name: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule. `match` None means always."""

    name: str
    namespace: str
    match: Evaluable | None
    actions: tuple[Action, ...]
    request_header_operations: tuple[HeaderOperationTemplate, ...] = ()
    response_header_operations: tuple[HeaderOperationTemplate, ...] = ()
    sampler: Sampler | None = None
    # The equality conjuncts the match requires (`mixer.expr.predicates.required_equalities`),
    # and whether the first of them is the match's leading conjunct.
    requires: tuple[Equality, ...] = ()
    leading: bool = False
    # Dry-run (``istio.io/dry-run``): check results are counted, never combined into the answer.
    dry_run: bool = False
    # actions by variety, grouped once: every request asks for them
    _by_variety: dict[Variety, tuple[Action, ...]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for variety in Variety:
            grouped = tuple(a for a in self.actions if a.variety is variety)
            if grouped:
                self._by_variety[variety] = grouped

    def actions_of(self, variety: Variety) -> tuple[Action, ...]:
        """This rule's actions of `variety`, in config order."""
        return self._by_variety.get(variety, ())


# Below this many rules, evaluating every match is cheaper than consulting an index.
_INDEX_THRESHOLD = 8


class RuleIndex:
    """Rules (in config order) indexed by an equality their match requires.

    `select` returns the rules that can match a request: those without such an equality, plus
    those whose equality holds. A rule is indexed by its leading equality, the first thing its
    evaluation reads. A rule whose match starts otherwise is indexed by a later equality whose
    attribute the index reads for every request anyway (another rule's leading one), so that
    `select` reads what evaluating every match would have read, or less: skipping a rule saves
    reading its other conjuncts, which cannot change that it does not match (a failure among
    them, which would not have matched either, then goes uncounted).
    """

    __slots__ = ("_always", "_keys", "rules")

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._always: list[int] = []
        self._keys: dict[tuple[str, str | None], dict[str, list[int]]] = {}
        if len(rules) < _INDEX_THRESHOLD:
            return
        read = {
            (r.requires[0].attribute, r.requires[0].key)
            for r in rules
            if r.match is not None and r.leading
        }
        for position, rule in enumerate(rules):
            eq = _indexed_by(rule, read) if rule.match is not None else None
            if eq is None:
                self._always.append(position)
            else:
                table = self._keys.setdefault((eq.attribute, eq.key), {})
                table.setdefault(eq.value, []).append(position)

    @property
    def names(self) -> frozenset[str]:
        """The attributes `select` reads."""
        return frozenset(attribute for attribute, _ in self._keys)

    def select(self, activation: Mapping[str, object]) -> tuple[Rule, ...] | list[Rule]:
        """The rules worth evaluating for `activation`, in config order."""
        if not self._keys:
            return self.rules
        positions = list(self._always)
        tracking = activation.__class__ is TrackingBag
        for (attribute, key), table in self._keys.items():
            if tracking:
                value = activation.value_at(attribute, key)  # type: ignore[attr-defined]
            else:
                value = activation.get(attribute)
                if key is not None:
                    value = value.get(key) if isinstance(value, Mapping) else None
            if isinstance(value, str):
                hit = table.get(value)
                if hit:
                    positions.extend(hit)
        positions.sort()
        rules = self.rules
        return [rules[p] for p in positions]


def _indexed_by(rule: Rule, read: set[tuple[str, str | None]]) -> Equality | None:
    if rule.leading:
        return rule.requires[0]
    for eq in rule.requires:
        if (eq.attribute, eq.key) in read:
            return eq
    return None


# What `request_namespace` reads.
_NAMESPACE_NAMES = frozenset({"context.reporter.kind", "source.namespace", "destination.namespace"})


def _tree_programs(tree: FieldTree) -> list[object]:
    out: list[object] = []
    for node in tree.values():
        out.extend(_tree_programs(node) if isinstance(node, Mapping) else [node])
    return out


def names_read(rules: tuple[Rule, ...], variety: Variety) -> frozenset[str] | None:
    """Every attribute name routing `rules` for `variety` might read: the namespace, rule
    matches, samplers and instance fields (`Program.names`); None if a program cannot say."""
    programs: list[object] = []
    for rule in rules:
        if not rule.actions_of(variety):
            continue
        programs.append(rule.match)
        if rule.sampler is not None:
            programs.extend(rule.sampler.programs())
        for action in rule.actions_of(variety):
            for builder in action.instances:
                programs.extend(_tree_programs(builder.fields))
                programs.extend(program for _, program in builder.bindings)
    names = set(_NAMESPACE_NAMES)
    for program in programs:
        if program is None:
            continue
        found = getattr(program, "names", None)
        if not isinstance(found, frozenset):
            return None
        names |= found
    return frozenset(names)


@dataclass(frozen=True)
class RoutingTable:
    """Rules per variety, scoped by namespace as Mixer did.

    Rules in the default namespace apply to all traffic; rules in namespace X apply only to
    traffic whose namespace (destination's, or source's for outbound reports) is X.
    """

    default_namespace: str = DEFAULT_NAMESPACE
    rules: tuple[Rule, ...] = ()
    _by_ns: dict[tuple[Variety, str], tuple[Rule, ...]] = field(default_factory=dict)
    _default: dict[Variety, tuple[Rule, ...]] = field(default_factory=dict)
    _index_by_ns: dict[tuple[Variety, str], RuleIndex] = field(default_factory=dict)
    _index_default: dict[Variety, RuleIndex] = field(default_factory=dict)
    # What reports may read: the Report path decodes only these attributes.
    report_names: frozenset[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # Generated attributes are added after decoding; what generation reads must be decoded.
        wanted = names_read(self.rules, Variety.REPORT)
        generation = names_read(self.rules, Variety.ATTRIBUTE_GENERATOR)
        if wanted is not None:
            wanted = None if generation is None else wanted | generation
        object.__setattr__(self, "report_names", wanted)
        for variety in Variety:
            relevant = [
                r
                for r in self.rules
                if r.actions_of(variety)
                or (
                    variety is Variety.CHECK
                    and (r.request_header_operations or r.response_header_operations)
                )
            ]
            base = tuple(r for r in relevant if r.namespace == self.default_namespace)
            self._default[variety] = base
            self._index_default[variety] = RuleIndex(base)
            namespaces = {r.namespace for r in relevant} - {self.default_namespace}
            for ns in namespaces:
                scoped = tuple(r for r in relevant if r.namespace in (self.default_namespace, ns))
                self._by_ns[(variety, ns)] = scoped
                self._index_by_ns[(variety, ns)] = RuleIndex(scoped)

    def rules_for(self, variety: Variety, namespace: str | None) -> tuple[Rule, ...]:
        """The rules of `variety` that apply to traffic of `namespace`, in config order."""
        if namespace is not None:
            scoped = self._by_ns.get((variety, namespace))
            if scoped is not None:
                return scoped
        return self._default.get(variety, ())

    def selection_names(self, variety: Variety) -> frozenset[str]:
        """Every attribute choosing the candidates of `variety` may read: the namespace's and
        the rule indexes'. Candidates stay the same while none of these changes."""
        names = set(_NAMESPACE_NAMES)
        for (kind, _), index in self._index_by_ns.items():
            if kind is variety:
                names |= index.names
        default = self._index_default.get(variety)
        if default is not None:
            names |= default.names
        return frozenset(names)

    def candidates(
        self, variety: Variety, namespace: str | None, activation: Mapping[str, object]
    ) -> tuple[Rule, ...] | list[Rule]:
        """Like `rules_for`, without the rules whose indexed equality cannot hold."""
        index = None
        if namespace is not None:
            index = self._index_by_ns.get((variety, namespace))
        if index is None:
            index = self._index_default.get(variety)
        return index.select(activation) if index is not None else ()


def request_namespace(activation: Mapping[str, object]) -> str | None:
    """The namespace a request belongs to: the source's for outbound, else the destination's."""
    kind = activation.get("context.reporter.kind")
    ns = activation.get("source.namespace" if kind == "outbound" else "destination.namespace")
    return ns if isinstance(ns, str) else None
