"""One case against a freshly built runtime: the request, then the answer as plain data.

Every case gets its own runtime (so quota state and metric values start empty), a frozen clock
(so "after N requests" is the same state on every run) and a captured stdout (where the stdio
adapter writes log entries). Nothing listens and nothing is dialled.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mixer import codes
from mixer.api.authz_servicer import AuthorizationService
from mixer.api.ratelimit_servicer import RateLimitService
from mixer.api.status import status_code_for
from mixer.attributes.bag import Bag
from mixer.attributes.envoy import bag_from_check_request
from mixer.config.model import Snapshot
from mixer.config.values import bag_from_data
from mixer.envoy.service.auth.v3 import external_auth_pb2
from mixer.envoy.service.ratelimit.v3 import rls_pb2
from mixer.errors import MixerError
from mixer.rulestest.cases import Case, Kind
from mixer.runtime.build import build_runtime
from mixer.runtime.dispatcher import CheckOutcome, QuotaRequest
from mixer.runtime.explain import Explanation, explain_check, explain_rules
from mixer.runtime.routing import HeaderOperationResult
from mixer.runtime.runtime import Runtime, RuntimeHolder
from mixer.telemetry import ServerMetrics
from mixer.templates import Variety

FROZEN_TIME = 1_000_000.0
"""The handlers' monotonic clock during a case: it never moves."""
_FLUSH_TIMEOUT = 10.0
# The servicers read the grpc context only for peer identity, which tests do not use.
_NO_CONTEXT: Any = None


class RequestError(Exception):
    """A case's request that cannot be turned into a request (a bad attribute, bad JSON)."""


def bag_of(attributes: Mapping[str, object], vocabulary: Mapping[str, str]) -> Bag:
    """A bag from YAML attributes, typed as ``mixer check --attr`` types them."""
    try:
        return bag_from_data(attributes, vocabulary)
    except ValueError as exc:
        raise RequestError(f"attribute {exc}") from None


def _seconds(delta: datetime.timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds}s"


def _headers(ops: list[HeaderOperationResult]) -> list[dict[str, str]]:
    return [{"name": op.name, "value": op.value, "operation": op.operation.name} for op in ops]


def check_answer(outcome: CheckOutcome) -> dict[str, Any]:
    """A Mixer Check outcome as the keys a check case may expect."""
    route = outcome.route
    direct: dict[str, Any] | None = None
    if route.direct_response_code or route.direct_response_body or route.direct_response_headers:
        direct = {
            "code": route.direct_response_code,
            "body": route.direct_response_body,
            "headers": dict(route.direct_response_headers),
        }
    return {
        "code": codes.name(outcome.status_code),
        "message": outcome.message,
        "valid_duration": _seconds(outcome.valid_duration),
        "valid_use_count": outcome.valid_use_count,
        "rule": outcome.decided_by,
        "request_headers": _headers(route.request_header_operations),
        "response_headers": _headers(route.response_header_operations),
        "direct_response": direct,
        "quotas": {
            name: {
                "granted": q.granted,
                "code": codes.name(q.status_code),
                **({"remaining": q.remaining} if q.remaining is not None else {}),
            }
            for name, q in outcome.quotas.items()
        },
        "dry_run": dict(outcome.dry_run),
    }


def _json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _parse(kind: Kind, request: Mapping[str, Any]) -> Any:
    proto: Any = (
        external_auth_pb2.CheckRequest() if kind is Kind.AUTHZ else rls_pb2.RateLimitRequest()
    )
    try:
        return json_format.ParseDict(dict(request), proto)
    except json_format.ParseError as exc:
        raise RequestError(f"{kind.value}: not a {proto.DESCRIPTOR.name} in JSON: {exc}") from None


def metric_series(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """Every sample on `registry`, as {name, labels, value}, parsed from the text exposition."""
    text = generate_latest(registry).decode()
    return [
        {"name": s.name, "labels": dict(s.labels), "value": s.value}
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _series_key(sample: Mapping[str, Any]) -> tuple[object, ...]:
    return (sample["name"], tuple(sorted(sample["labels"].items())), sample["value"])


def log_entries(text: str) -> list[Any]:
    """The lines the stdio adapter wrote: JSON objects when it writes JSON, else the text."""
    entries: list[Any] = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append(line)
    return entries


async def run_case(
    case: Case, snapshot: Snapshot, explain: bool = False
) -> tuple[dict[str, Any], str]:
    """Send the case's request (``after`` times, then once more); the last answer and, with
    `explain`, why it was given (`mixer.runtime.explain`; checks and ext_authz only)."""
    request: Any
    if case.kind in (Kind.CHECK, Kind.REPORT):
        request = bag_of(case.request.get("attributes", {}), snapshot.vocabulary)
    else:
        request = _parse(case.kind, case.request)
    quotas = {str(k): QuotaRequest(int(v)) for k, v in dict(case.request.get("quotas", {})).items()}
    metrics = ServerMetrics.create()
    registry = CollectorRegistry()
    captured = io.StringIO()
    answer: dict[str, Any] = {}
    why = ""
    with contextlib.redirect_stdout(captured):
        runtime = await build_runtime(
            snapshot,
            metrics,
            revision="test",
            metrics_registry=registry,
            clock=lambda: FROZEN_TIME,
        )
        holder = RuntimeHolder(runtime)
        # Series the handlers expose before any request (bookkeeping such as overflow
        # counters at 0) are not what the case produced.
        standing = {_series_key(s) for s in metric_series(registry)}
        try:
            for _ in range(case.after + 1):
                answer = await _send(case, request, quotas, holder, metrics)
            if explain:
                why = _explain(case, request, answer, runtime)
            answer.pop("outcome", None)  # kept for the explanation only
            if case.kind is Kind.REPORT:
                for worker in runtime.workers.values():
                    await worker.flush(_FLUSH_TIMEOUT)
                # Before closing: a closed prometheus handler takes its series out.
                answer = {
                    "metrics": [
                        s for s in metric_series(registry) if _series_key(s) not in standing
                    ]
                }
        finally:
            await holder.close(flush_timeout=_FLUSH_TIMEOUT)
    if case.kind is Kind.REPORT:
        # After closing: the stdio adapter's writer thread has written everything.
        answer["logs"] = log_entries(captured.getvalue())
    return answer, why


def _explain(case: Case, request: Any, answer: Mapping[str, Any], runtime: Runtime) -> str:
    if case.kind is Kind.AUTHZ:
        request = bag_from_check_request(request)
    elif case.kind is not Kind.CHECK:
        return ""
    outcome = answer.get("outcome")
    if not isinstance(outcome, CheckOutcome):
        # ext_authz: the answer is Envoy's; explain the rules against its bag.
        rules = explain_rules(runtime, request, Variety.CHECK)
        handlers = next((r.handlers for r in rules if r.rule == answer.get("rule")), [])
        return Explanation(
            str(answer.get("code", "")),
            str(answer.get("message", "")),
            str(answer.get("rule", "")),
            handlers,
            [],
            rules,
        ).to_text()
    return explain_check(runtime, request, outcome).to_text()


async def _send(
    case: Case,
    request: Any,
    quotas: Mapping[str, QuotaRequest],
    holder: RuntimeHolder,
    metrics: ServerMetrics,
) -> dict[str, Any]:
    try:
        return await _call(case, request, quotas, holder, metrics)
    except MixerError as exc:
        # What a gRPC client would see: the call fails with this status (an RLS case then
        # has no overall_code, so any expectation of one fails and shows this).
        return {"code": status_code_for(exc).name, "message": str(exc)}


async def _call(
    case: Case,
    request: Any,
    quotas: Mapping[str, QuotaRequest],
    holder: RuntimeHolder,
    metrics: ServerMetrics,
) -> dict[str, Any]:
    if case.kind is Kind.CHECK:
        outcome = await holder.current.dispatcher.check(request, quotas)
        return {**check_answer(outcome), "outcome": outcome}
    if case.kind is Kind.REPORT:
        holder.current.dispatcher.report([request])
        return {}
    if case.kind is Kind.AUTHZ:
        raw = await AuthorizationService(holder, metrics).check(request, _NO_CONTEXT)
        response = external_auth_pb2.CheckResponse.FromString(raw)
        mixer = response.dynamic_metadata.fields["mixer"].struct_value.fields
        return {
            "code": codes.name(response.status.code),
            "message": response.status.message,
            "rule": mixer["rule"].string_value,
            "response": _json(response),
        }
    rls = await RateLimitService(holder, metrics).should_rate_limit(request, _NO_CONTEXT)
    return _json(rls)
