"""Parsing ``kind: rule``: match, actions, header operations and sampling."""

from __future__ import annotations

import datetime
from typing import Any

from adapters.base import ParamError
from adapters.toolkit.params import duration_param
from mixer.config.drafts import (
    ActionDraft,
    ExprText,
    Header,
    HeaderOpDraft,
    RandomSamplingDraft,
    RuleDraft,
    SamplingDraft,
    expression,
)
from mixer.config.fields import Scope, describe, fields, get_bool, get_int, get_list, get_str
from mixer.config.model import HeaderOperation, RateLimitSampling
from mixer.config.problems import format_field
from mixer.config.source import Path_

_PERCENT = ("numerator", "denominator")
_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000}


def parse_rule(scope: Scope, header: Header, spec: Any, dialect: str) -> RuleDraft:
    """A ``kind: rule`` resource."""
    draft = RuleDraft(header, False, dialect=dialect)
    if spec is None:
        scope.error(("spec",), "missing (a rule needs actions)")
        return draft
    f = fields(
        scope,
        spec,
        ("spec",),
        ("match", "actions", "requestHeaderOperations", "responseHeaderOperations", "sampling"),
    )
    match = f.get("match")
    if isinstance(match, bool):
        match = str(match).lower()
    if match is not None and not isinstance(match, str):
        scope.error(f.path("match"), f"expected an expression string, got {describe(match)}")
    elif match is not None:
        draft.match = ExprText(match, f.path("match"))
    for index, item in enumerate(get_list(scope, f, "actions")):
        action = _action(scope, item, (*f.path("actions"), index))
        if action is not None:
            draft.actions.append(action)
    for key, target in (
        ("request_header_operations", draft.request_header_operations),
        ("response_header_operations", draft.response_header_operations),
    ):
        for index, item in enumerate(get_list(scope, f, key)):
            op = _header_operation(scope, item, (*f.path(key), index))
            if op is not None:
                target.append(op)
    if "sampling" in f:
        draft.sampling = _sampling(scope, f.get("sampling"), f.path("sampling"))
    if not (
        f.get("actions")
        or f.get("request_header_operations")
        or f.get("response_header_operations")
    ):
        scope.error(f.path("actions"), "missing (a rule needs actions or header operations)")
    draft.usable = True
    return draft


def _action(scope: Scope, item: Any, path: Path_) -> ActionDraft | None:
    errors = scope.errors
    f = fields(scope, item, path, ("handler", "instances", "name"))
    handler = get_str(scope, f, "handler", required=True)
    name = get_str(scope, f, "name")
    instances: list[tuple[str, Path_]] = []
    for index, ref in enumerate(get_list(scope, f, "instances")):
        ref_path = (*f.path("instances"), index)
        if not isinstance(ref, str) or not ref:
            scope.error(ref_path, f"expected an instance name, got {describe(ref)}")
        else:
            instances.append((ref, ref_path))
    if f.get("instances") is None:
        scope.error(f.path("instances"), "missing (an action needs instances)")
    elif f.get("instances") == []:
        scope.error(f.path("instances"), "empty (an action needs instances)")
    if scope.errors > errors:
        return None
    return ActionDraft(handler, tuple(instances), name, path)


def _header_operation(scope: Scope, item: Any, path: Path_) -> HeaderOpDraft | None:
    errors = scope.errors
    f = fields(scope, item, path, ("name", "values", "operation"))
    name = get_str(scope, f, "name", required=True)
    raw_operation = f.get("operation")
    operation = HeaderOperation.REPLACE
    if raw_operation is not None:
        # Proto JSON allows an enum's name or its number.
        found: HeaderOperation | None = None
        if isinstance(raw_operation, str):
            found = HeaderOperation.__members__.get(raw_operation.upper())
        elif isinstance(raw_operation, int) and not isinstance(raw_operation, bool):
            found = next((op for op in HeaderOperation if op.value == raw_operation), None)
        if found is None:
            scope.error(
                f.path("operation"),
                f"unknown operation {raw_operation!r} (expected REPLACE, APPEND or REMOVE)",
            )
        else:
            operation = found
    values: list[ExprText] = []
    for index, value in enumerate(get_list(scope, f, "values")):
        leaf = expression(scope, value, (*f.path("values"), index))
        if leaf is not None:
            values.append(leaf)
    if operation is not HeaderOperation.REMOVE and f.get("values") is None:
        scope.error(f.path("values"), f"missing ({operation.name} needs values)")
    if scope.errors > errors:
        return None
    return HeaderOpDraft(name, tuple(values), operation)


def _sampling(scope: Scope, value: Any, path: Path_) -> SamplingDraft:
    f = fields(scope, value, path, ("random", "rateLimit"))
    random: RandomSamplingDraft | None = None
    rate_limit: RateLimitSampling | None = None
    if "random" in f:
        r = fields(
            scope,
            f.get("random"),
            f.path("random"),
            ("attributeExpression", "percentSampled", "useIndependentRandomness"),
        )
        attribute_expression = r.get("attribute_expression")
        percent = fields(scope, r.get("percent_sampled"), r.path("percent_sampled"), _PERCENT)
        denominator_name = get_str(scope, percent, "denominator") or "HUNDRED"
        denominator = _DENOMINATORS.get(denominator_name)
        if denominator is None:
            scope.error(
                percent.path("denominator"),
                f"unknown denominator {denominator_name!r} (expected HUNDRED or TEN_THOUSAND)",
            )
            denominator = 100
        numerator = get_int(scope, percent, "numerator")
        if numerator > denominator:
            scope.error(percent.path("numerator"), f"must be at most {denominator}")
        random = RandomSamplingDraft(
            numerator,
            denominator,
            None
            if attribute_expression is None
            else expression(scope, attribute_expression, r.path("attribute_expression")),
            get_bool(scope, r, "use_independent_randomness"),
        )
    if "rate_limit" in f:
        rl = fields(
            scope,
            f.get("rate_limit"),
            f.path("rate_limit"),
            ("samplingDuration", "maxUnsampledEntries", "samplingRate"),
        )
        duration_path = rl.path("sampling_duration")
        try:
            duration = duration_param(rl.get("sampling_duration"), format_field(duration_path))
        except ParamError as err:
            scope.error(duration_path, err.message)
            duration = datetime.timedelta(0)
        rate_limit = RateLimitSampling(
            duration,
            get_int(scope, rl, "max_unsampled_entries"),
            get_int(scope, rl, "sampling_rate"),
        )
    return SamplingDraft(random, rate_limit)
