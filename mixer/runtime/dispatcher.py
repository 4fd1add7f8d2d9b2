"""Check, quota and report dispatch over one runtime snapshot.

request bag -> matching rules -> instances -> handlers -> combined result. Check combines
handler results deterministically: the first denial in rule order decides the status, valid
duration and use count are the minimum over all results.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from adapters.base import CheckHandler, CheckResult, Instance, QuotaArgs, QuotaResult
from mixer.attributes.bag import Bag
from mixer.attributes.tracking import References, TrackingBag
from mixer.codes import INTERNAL, OK, RESOURCE_EXHAUSTED
from mixer.errors import DispatchError
from mixer.runtime.check_cache import CheckCache
from mixer.runtime.generation import Generation
from mixer.runtime.handler_calls import HandlerCalls
from mixer.runtime.quota_choices import QuotaChoices
from mixer.runtime.report_plan import ReportPlan, ReportSession
from mixer.runtime.reporting import ReportWorker
from mixer.runtime.routing import (
    Action,
    HandlerEntry,
    HeaderOperationResult,
    RoutingTable,
    Rule,
    request_namespace,
)
from mixer.telemetry import Children, ServerMetrics
from mixer.templates import Variety

logger = logging.getLogger(__name__)

DEFAULT_VALID_DURATION = datetime.timedelta(minutes=1)
DEFAULT_VALID_USE_COUNT = 10000
# Quota rule sets kept per request namespace; bounded because namespaces come from requests.
_MAX_NAMESPACES = 1024


@dataclass(slots=True)
class RouteResult:
    """Header rewrites for an allowed request, or a direct response for a denied one."""

    request_header_operations: list[HeaderOperationResult] = field(default_factory=list)
    response_header_operations: list[HeaderOperationResult] = field(default_factory=list)
    direct_response_code: int = 0
    direct_response_body: str = ""
    direct_response_headers: dict[str, str] = field(default_factory=dict)

    def key(self) -> tuple[object, ...]:
        """The whole route as a hashable value: equal routes have equal keys (responses are
        remembered by it)."""
        return (
            tuple(self.request_header_operations),
            tuple(self.response_header_operations),
            self.direct_response_code,
            self.direct_response_body,
            tuple(self.direct_response_headers.items()),
        )


@dataclass(slots=True)
class QuotaOutcome:
    """The result of one requested quota."""

    granted: int
    valid_duration: datetime.timedelta
    status_code: int = OK
    message: str = ""
    limit: int | None = None
    remaining: int | None = None
    reset_after: datetime.timedelta | None = None
    references: References = field(default_factory=References)


@dataclass(slots=True)
class CheckOutcome:
    """The combined answer to a Check."""

    status_code: int = OK
    message: str = ""
    valid_duration: datetime.timedelta = DEFAULT_VALID_DURATION
    valid_use_count: int = DEFAULT_VALID_USE_COUNT
    references: References = field(default_factory=References)
    route: RouteResult = field(default_factory=RouteResult)
    quotas: dict[str, QuotaOutcome] = field(default_factory=dict)
    decided_by: str = ""
    dry_run: tuple[tuple[str, str], ...] = ()
    """(rule, result) of each check action of a dry-run rule: counted on every use of the
    outcome, a cached one included, so the count is per request."""

    def without_quotas(self) -> CheckOutcome:
        """A copy for a new request (a cached precondition gets that request's quotas); spelled
        out because `dataclasses.replace` inspects the fields on every call."""
        return CheckOutcome(
            self.status_code,
            self.message,
            self.valid_duration,
            self.valid_use_count,
            self.references,
            self.route,
            {},
            self.decided_by,
            self.dry_run,
        )


class QuotaRequest(NamedTuple):
    """One entry of a Check's quota map."""

    amount: int
    best_effort: bool = False


class Dispatcher:
    """Runs requests against one immutable routing table and its handlers."""

    def __init__(
        self,
        routes: RoutingTable,
        report_workers: Mapping[str, ReportWorker],
        metrics: ServerMetrics,
        *,
        handler_timeout: float = 1.0,
        cache: CheckCache | None = None,
    ) -> None:
        self.routes = routes
        self.cache = cache
        self._cache_hit = metrics.check_cache.labels("hit")
        self._cache_miss = metrics.check_cache.labels("miss")
        self._cache_skipped = metrics.check_cache.labels("skipped")
        self.report_workers = report_workers
        self._metrics = metrics
        self._quota_index = _index_quota_actions(routes)
        self._shadow_index = _index_quota_actions(routes, dry_run=True)
        self._quota_dry_run = Children(metrics.quota_dry_run)
        self._quota_choices = QuotaChoices()
        self.calls = HandlerCalls(metrics, handler_timeout)
        self.generation = Generation(routes, self.calls, metrics)
        self._report_plan = ReportPlan(routes)
        self._quota_results = Children(metrics.quota_results)
        self._dry_run = Children(metrics.check_dry_run)
        self._any_dry_run = any(r.dry_run for r in routes.rules)
        # When each dry-run rule last logged a would-be denial: at most one line per second each.
        self._dry_run_logged: dict[str, float] = {}
        # The quota rules that apply per request namespace (names come from requests: bounded).
        self._quota_rule_ids: dict[str | None, frozenset[int]] = {}

    # -- matching -------------------------------------------------------------------------

    def _matches(self, rule: Rule, activation: Mapping[str, object]) -> bool:
        return self._match(rule, activation) is True

    def _match(self, rule: Rule, activation: Mapping[str, object]) -> bool | None:
        """Whether `rule` matches; None when its match failed to evaluate."""
        if rule.match is None:
            return True
        try:
            result = rule.match.evaluate(activation)
        except Exception as exc:
            # Mixer: a match that fails to evaluate does not match; it is counted, not fatal.
            self._metrics.rule_match_errors.labels(rule.name).inc()
            logger.debug("rule %s: match failed: %s", rule.name, exc)
            return None
        return result is True

    def _build(self, action: Action, activation: Mapping[str, object]) -> list[Instance]:
        out = []
        for builder in action.instances:
            try:
                out.append(builder.build(activation))
            except Exception as exc:
                raise DispatchError(
                    f"performing check operation failed: instance {builder.name}: {exc}"
                ) from exc
        return out

    # -- check ----------------------------------------------------------------------------

    async def check(
        self,
        bag: Bag,
        quotas: Mapping[str, QuotaRequest] | None = None,
        dedup_id: str = "",
    ) -> CheckOutcome:
        """Evaluate the check rules for `bag`, then (if allowed) the requested quotas; first the
        attribute generation phase, when some rule generates attributes (`Generation`)."""
        if self.generation.active:
            generated = await self.generation.run(bag)
            outcome = await self._check(generated.bag, quotas, dedup_id)
            # A copy: the outcome may be the check cache's, shared with other requests.
            return dataclasses.replace(
                outcome, references=generated.caller_references(outcome.references)
            )
        return await self._check(bag, quotas, dedup_id)

    async def _check(
        self,
        bag: Bag,
        quotas: Mapping[str, QuotaRequest] | None,
        dedup_id: str,
    ) -> CheckOutcome:
        cache = self.cache if self.cache is not None and self.cache.in_use() else None
        cached = cache.get(bag) if cache is not None else None
        if isinstance(cached, CheckOutcome):
            self._cache_hit.inc()
            outcome = cached.without_quotas()
        else:
            (self._cache_miss if cache is not None else self._cache_skipped).inc()
            outcome = await self._precondition(bag)
            if cache is not None:
                cache.put(
                    outcome.references,
                    bag,
                    outcome,
                    outcome.valid_duration.total_seconds(),
                    outcome.valid_use_count,
                )
        if outcome.dry_run:
            self._count_dry_run(outcome.dry_run)
        if quotas and outcome.status_code == OK:
            outcome.quotas = await self.quota(bag, quotas, dedup_id)
            for name, q in outcome.quotas.items():
                if q.status_code != OK or q.granted <= 0 < quotas[name].amount:
                    # An exhausted quota denies with 429; a failing backend keeps its own
                    # status (UNAVAILABLE under fail-closed), so the caller sees an outage.
                    code = q.status_code if q.status_code != OK else RESOURCE_EXHAUSTED
                    outcome = dataclasses.replace(
                        outcome,
                        status_code=code,
                        message=q.message or f"quota {name} exhausted",
                        route=RouteResult(
                            direct_response_code=429 if code == RESOURCE_EXHAUSTED else 0
                        ),
                        decided_by=name,
                    )
                    break
        return outcome

    async def _precondition(self, bag: Bag) -> CheckOutcome:
        tracking = TrackingBag(bag)
        outcome = CheckOutcome(references=tracking.refs)
        namespace = request_namespace(tracking)
        rules = self.routes.candidates(Variety.CHECK, namespace, tracking)
        calls: list[tuple[Rule, HandlerEntry, CheckHandler, Instance]] = []
        matched: list[Rule] = []
        for rule in rules:
            if not self._matches(rule, tracking):
                continue
            matched.append(rule)
            for action in rule.actions_of(Variety.CHECK):
                checker = action.handler.checker
                if checker is None:
                    continue
                for instance in self._build(action, tracking):
                    calls.append((rule, action.handler, checker, instance))
        if calls:
            results = await self.calls.run_all(
                [(entry, h.check(inst)) for _, entry, h, inst in calls]
            )
            self._combine(outcome, calls, results)
        if outcome.status_code == OK:
            if self._any_dry_run:
                matched = [r for r in matched if not r.dry_run]
            self._header_operations(outcome, matched, tracking)
        return outcome

    def _count_dry_run(self, results: Sequence[tuple[str, str]]) -> None:
        now = time.monotonic()
        for rule, result in results:
            self._dry_run.get(rule, result).inc()
            if result == "would_deny" and now - self._dry_run_logged.get(rule, 0.0) >= 1.0:
                self._dry_run_logged[rule] = now
                logger.info(
                    "dry-run rule %s would have denied a request",
                    rule,
                    extra={"rule": rule, "dry_run": True},
                )

    def _combine(
        self,
        outcome: CheckOutcome,
        calls: Sequence[tuple[Rule, HandlerEntry, CheckHandler, Instance]],
        results: Sequence[object],
    ) -> None:
        first = True
        messages: list[str] = []
        dry_run: list[tuple[str, str]] = []
        for (rule, entry, _, _), result in zip(calls, results, strict=True):
            if rule.dry_run:
                # Counted, never part of the answer: a failing dry-run handler fails nothing.
                if isinstance(result, CheckResult):
                    dry_run.append(
                        (rule.name, "allow" if result.status_code == OK else "would_deny")
                    )
                else:
                    dry_run.append((rule.name, "error"))
                continue
            if isinstance(result, BaseException):
                if isinstance(result, TimeoutError):
                    raise DispatchError(
                        f"performing check operation failed: {entry.name}: timed out"
                    ) from result
                raise DispatchError(
                    f"performing check operation failed: {entry.name}: {result}"
                ) from result
            assert isinstance(result, CheckResult)
            if first:
                outcome.valid_duration = result.valid_duration
                outcome.valid_use_count = result.valid_use_count
                first = False
            else:
                outcome.valid_duration = min(outcome.valid_duration, result.valid_duration)
                outcome.valid_use_count = min(outcome.valid_use_count, result.valid_use_count)
            if result.status_code != OK:
                messages.append(f"{entry.name}:{result.message}")
                if outcome.status_code == OK:
                    outcome.status_code = result.status_code
                    outcome.decided_by = rule.name
                    if result.direct_response is not None:
                        outcome.route.direct_response_code = result.direct_response.code
                        outcome.route.direct_response_body = result.direct_response.body
                        outcome.route.direct_response_headers = dict(result.direct_response.headers)
        if messages:
            outcome.message = ", ".join(messages)
        if dry_run:
            outcome.dry_run = tuple(dry_run)

    def _header_operations(
        self, outcome: CheckOutcome, matched: Sequence[Rule], activation: Mapping[str, object]
    ) -> None:
        route = outcome.route
        for rule in matched:
            on_request = rule.request_header_operations
            on_response = rule.response_header_operations
            if not on_request and not on_response:
                continue
            for op in on_request:
                route.request_header_operations.extend(op.evaluate(activation, rule.name))
            for op in on_response:
                route.response_header_operations.extend(op.evaluate(activation, rule.name))
            if not outcome.decided_by:
                outcome.decided_by = rule.name

    # -- quota ----------------------------------------------------------------------------

    async def quota(
        self,
        bag: Bag,
        quotas: Mapping[str, QuotaRequest],
        dedup_id: str,
    ) -> dict[str, QuotaOutcome]:
        """Allocate each requested quota; unconfigured or unmatched ones are granted in full."""
        results: dict[str, QuotaOutcome] = {}
        namespace = request_namespace(bag)
        pending: dict[int, list[tuple[str, HandlerEntry, Instance, QuotaArgs, References]]] = {}
        allowed_ids = self._quota_rule_ids.get(namespace)
        if allowed_ids is None:
            allowed_ids = frozenset(id(r) for r in self.routes.rules_for(Variety.QUOTA, namespace))
            if len(self._quota_rule_ids) < _MAX_NAMESPACES:
                self._quota_rule_ids[namespace] = allowed_ids
        if self._shadow_index:
            await self._shadow_quotas(bag, quotas, dedup_id, allowed_ids)
        for name, req in quotas.items():
            found, refs = self._choose_quota(name, namespace, allowed_ids, bag)
            if found is None:
                results[name] = QuotaOutcome(req.amount, DEFAULT_VALID_DURATION, references=refs)
                continue
            entry, instance = found
            args = QuotaArgs(req.amount, req.best_effort, dedup_id + name if dedup_id else "")
            pending.setdefault(id(entry), []).append((name, entry, instance, args, refs))
        if pending:
            groups = list(pending.values())
            answers: list[Any]
            if len(groups) == 1 or all(g[0][1].inline for g in groups):
                answers = []
                for group in groups:
                    try:
                        answers.append(await self._quota_group(group))
                    except Exception as exc:
                        answers.append(exc)
            else:
                answers = await asyncio.gather(
                    *(self._quota_group(group) for group in groups), return_exceptions=True
                )
            for group, answer in zip(groups, answers, strict=True):
                for i, (name, entry, _, _, refs) in enumerate(group):
                    if isinstance(answer, BaseException):
                        logger.warning("quota handler %s failed: %s", entry.name, answer)
                        self._count_quota(name, INTERNAL, 0, quotas[name].amount)
                        results[name] = QuotaOutcome(
                            0,
                            datetime.timedelta(0),
                            INTERNAL,
                            f"{entry.name}: {answer}",
                            references=refs,
                        )
                        continue
                    r = answer[i]
                    self._count_quota(name, r.status_code, r.granted, quotas[name].amount)
                    results[name] = QuotaOutcome(
                        r.granted,
                        r.valid_duration,
                        r.status_code,
                        r.message,
                        r.limit,
                        r.remaining,
                        r.reset_after,
                        refs,
                    )
        return results

    def _count_quota(self, name: str, status_code: int, granted: int, amount: int) -> None:
        """Count an allocation that a handler answered (unconfigured names, which come from
        requests, are granted without a series of their own)."""
        result = (
            "granted" if status_code == OK and (granted > 0 or amount <= 0)
            else "exhausted" if status_code in (OK, RESOURCE_EXHAUSTED)
            else "error"
        )  # fmt: skip
        self._quota_results.get(name, result).inc()

    def _choose_quota(
        self, name: str, namespace: str | None, allowed_ids: frozenset[int], bag: Bag
    ) -> tuple[tuple[HandlerEntry, Instance] | None, References]:
        """The handler and instance that answer quota `name` (None: no rule, granted in full),
        and what choosing read. Remembered by those reads (`QuotaChoices`) unless a match
        failed, so that every failure is counted."""
        scope = (namespace, name)
        if bag.__class__ is Bag:
            remembered = self._quota_choices.find(scope, bag)
            if remembered is not None:
                return remembered
        tracking = TrackingBag(bag)
        found = None
        failed = False
        for rule, action, builder in self._quota_index.get(name.lower(), ()):
            if id(rule) not in allowed_ids:
                continue
            matched = self._match(rule, tracking)
            if not matched:
                failed = failed or matched is None
                continue
            try:
                instance = builder.build(tracking)
            except Exception as exc:
                raise DispatchError(
                    f"performing quota operation failed: instance {builder.name}: {exc}"
                ) from exc
            found = (action.handler, instance)
            break
        if not failed and bag.__class__ is Bag:
            self._quota_choices.remember(scope, bag, tracking.refs, found)
        return found, tracking.refs

    async def _shadow_quotas(
        self,
        bag: Bag,
        quotas: Mapping[str, QuotaRequest],
        dedup_id: str,
        allowed_ids: frozenset[int],
    ) -> None:
        """Charge the quotas of matching dry-run rules against shadow buckets (the instance's
        dimensions plus ``dry_run: <rule>``, so the real bucket is never touched) and count the
        answers; nothing here changes the Check's answer, and a failure is only counted."""
        for name, req in quotas.items():
            for rule, action, builder in self._shadow_index.get(name.lower(), ()):
                if id(rule) not in allowed_ids or self._match(rule, bag) is not True:
                    continue
                result = "error"
                try:
                    instance = builder.build(bag)
                    fields = dict(instance.fields)
                    fields["dimensions"] = {
                        **(fields.get("dimensions") or {}),
                        "dry_run": rule.name,
                    }
                    shadow = instance._replace(fields=fields)
                    args = QuotaArgs(
                        req.amount, req.best_effort, f"{dedup_id}{name}#dry-run" if dedup_id else ""
                    )
                    (answer,) = await self.calls.allocate(action.handler, [(shadow, args)])
                    if answer.status_code == OK and (answer.granted > 0 or req.amount <= 0):
                        result = "granted"
                    elif answer.status_code in (OK, RESOURCE_EXHAUSTED):
                        result = "exhausted"
                except Exception as exc:
                    logger.debug("dry-run quota %s of rule %s failed: %s", name, rule.name, exc)
                self._quota_dry_run.get(rule.name, result).inc()
                break  # as for real quotas: the first matching rule answers a name

    async def _quota_group(
        self, group: list[tuple[str, HandlerEntry, Instance, QuotaArgs, References]]
    ) -> list[QuotaResult]:
        return await self.calls.allocate(
            group[0][1], [(inst, args) for _, _, inst, args, _ in group]
        )

    # -- report ---------------------------------------------------------------------------

    async def generate_report(self, bags: Sequence[Bag]) -> Sequence[Bag]:
        """`bags` after the attribute generation phase (unchanged when no rule generates
        attributes); what `report` takes."""
        if not self.generation.active:
            return bags
        return await self.generation.run_all(bags)

    def report_session(self) -> ReportSession | None:
        """A session evaluating one batch's entries incrementally (`ReportSession`), or None
        when this config needs the reference path (`generate_report`, then `report`): some
        rule generates attributes, or some program cannot say what it reads."""
        if self.generation.active or not self._report_plan.usable:
            return None
        return ReportSession(self._report_plan, self.report_workers, self._metrics)

    def report(self, bags: Sequence[Bag]) -> int:
        """Match report rules for each bag and enqueue instances; returns instances accepted.
        Generation is not run here: callers pass bags through `generate_report` first.

        An instance that fails to build is counted and skipped (the rest of the batch goes on).
        """
        per_worker: dict[str, list[Instance]] = {}
        for bag in bags:
            memo: dict[int, Any] = {}
            namespace = request_namespace(bag)
            for rule in self.routes.candidates(Variety.REPORT, namespace, bag):
                if not self._matches(rule, bag):
                    continue
                if rule.sampler is not None and not rule.sampler.keep(bag):
                    continue
                for action in rule.actions_of(Variety.REPORT):
                    for builder in action.instances:
                        try:
                            instance = builder.build(bag, memo)
                        except Exception as exc:
                            self._metrics.report_dropped.labels(
                                action.handler.name, "build_error"
                            ).inc()
                            logger.debug("instance %s failed to build: %s", builder.name, exc)
                            continue
                        per_worker.setdefault(action.handler.name, []).append(instance)
        accepted = 0
        for handler_name, instances in per_worker.items():
            worker = self.report_workers.get(handler_name)
            if worker is None:
                continue
            accepted += len(instances) - worker.offer(instances)
        return accepted


def _index_quota_actions(
    routes: RoutingTable, *, dry_run: bool = False
) -> dict[str, list[tuple[Rule, Action, Any]]]:
    """Quota name -> the (rule, action, instance builder) that may answer it, in rule order:
    of the rules that decide, or with `dry_run` of the dry-run rules (shadow buckets)."""
    index: dict[str, list[tuple[Rule, Action, Any]]] = {}
    for rule in routes.rules:
        if rule.dry_run is not dry_run:
            continue
        for action in rule.actions_of(Variety.QUOTA):
            for builder in action.instances:
                index.setdefault(builder.short_name.lower(), []).append((rule, action, builder))
    return index
