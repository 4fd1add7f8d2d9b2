"""Envoy's ext_authz v3 (`envoy.service.auth.v3.Authorization/Check`) on the Mixer engine.

AttributeContext -> attribute bag (`mixer.attributes.envoy`) -> the same check pipeline as the
Mixer API, including the quotas chosen by QuotaSpec/QuotaSpecBinding -> an Envoy answer: OK
with headers to set (overwriting, never duplicating), remove and add to the response; or a
denial with an HTTP status derived from the gRPC code, headers, body and dynamic metadata
naming the rule that decided.
"""

from __future__ import annotations

import time

import grpc

from mixer import codes
from mixer.api.check_encoding import PartTable
from mixer.api.identity import with_peer_principal
from mixer.api.status import unary_handler
from mixer.api.threaded import LoopBridge
from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.envoy import bag_from_check_request
from mixer.attributes.limits import DEFAULT_LIMITS, Limits, check_bag
from mixer.envoy.config.core.v3 import base_pb2
from mixer.envoy.service.auth.v3 import external_auth_pb2
from mixer.runtime.decision_log import DecisionLog
from mixer.runtime.dispatcher import CheckOutcome, QuotaRequest
from mixer.runtime.routing import HeaderOp, HeaderOperationResult
from mixer.runtime.runtime import RuntimeHolder
from mixer.telemetry import Children, ServerMetrics

SERVICE = "envoy.service.auth.v3.Authorization"

# gRPC code -> HTTP status for denials, as Mixer's route directive mapped them.
HTTP_STATUS = {
    1: 408,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 412,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}

_Action = base_pb2.HeaderValueOption.HeaderAppendAction


def http_status_for(outcome: CheckOutcome) -> int:
    """The HTTP status of a denial: a direct response code wins, else the gRPC code's."""
    if outcome.route.direct_response_code:
        return outcome.route.direct_response_code
    return HTTP_STATUS.get(outcome.status_code, 403)


def _header(op: HeaderOperationResult) -> base_pb2.HeaderValueOption:
    action = (
        _Action.APPEND_IF_EXISTS_OR_ADD
        if op.operation is HeaderOp.APPEND
        else _Action.OVERWRITE_IF_EXISTS_OR_ADD
    )
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=op.name, value=op.value), append_action=action
    )


def authz_response(outcome: CheckOutcome) -> external_auth_pb2.CheckResponse:
    """Build Envoy's answer for a check outcome."""
    resp = external_auth_pb2.CheckResponse()
    resp.status.code = outcome.status_code
    if outcome.message:
        resp.status.message = outcome.message
    # dynamic_metadata {"mixer": {"rule", "status_code", "message"}}, filled in place: Struct's
    # update() converts Python values in Python.
    mixer = resp.dynamic_metadata.fields["mixer"].struct_value.fields
    mixer["rule"].string_value = outcome.decided_by
    mixer["status_code"].number_value = outcome.status_code
    mixer["message"].string_value = outcome.message
    route = outcome.route
    if outcome.status_code == 0:
        ok = resp.ok_response
        for op in route.request_header_operations:
            if op.operation is HeaderOp.REMOVE:
                ok.headers_to_remove.append(op.name)
            else:
                ok.headers.append(_header(op))
        for op in route.response_header_operations:
            if op.operation is not HeaderOp.REMOVE:
                ok.response_headers_to_add.append(_header(op))
        return resp
    denied = resp.denied_response
    denied.status.code = http_status_for(outcome)  # type: ignore[assignment]
    denied.body = route.direct_response_body or outcome.message
    for name, value in route.direct_response_headers.items():
        denied.headers.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=name, value=value),
                append_action=_Action.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
    return resp


def _response_key(outcome: CheckOutcome) -> tuple[object, ...]:
    """Everything `authz_response` reads from an outcome."""
    return (outcome.status_code, outcome.message, outcome.decided_by, outcome.route.key())


class AuthorizationService:
    """ext_authz v3 served from the current runtime."""

    def __init__(
        self,
        holder: RuntimeHolder,
        metrics: ServerMetrics,
        *,
        limits: Limits = DEFAULT_LIMITS,
        peer_identity: bool = False,
        dedup_header: str = "",
        decisions: DecisionLog | None = None,
    ) -> None:
        """`dedup_header` (lower case) names the request header whose value deduplicates quota
        charges; empty: none, every check is charged."""
        self._holder = holder
        self._dedup_header = dedup_header
        self._decisions = decisions
        self._metrics = metrics
        self._limits = limits
        self._peer_identity = peer_identity
        self._results = Children(metrics.check_results)
        # Answers repeat (the same rule, headers and status): each is encoded once.
        self._encoded = PartTable()

    def _dedup_id(self, bag: Bag) -> str:
        """The configured header's value, or "" (no deduplication). Only the operator knows
        whether the proxy sets that header itself: Envoy keeps an ``x-request-id`` that an edge
        client sent unless told otherwise, and a client choosing its id would have every
        request after the first answered from the first, uncharged."""
        if not self._dedup_header:
            return ""
        headers = bag.get("request.headers")
        value = headers.get(self._dedup_header) if isinstance(headers, StringMap) else None
        return value if isinstance(value, str) else ""

    def handler(self, bridge: LoopBridge | None = None) -> grpc.GenericRpcHandler:
        """The generic handler serving /envoy.service.auth.v3.Authorization/Check."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": unary_handler(
                    self._metrics,
                    SERVICE,
                    "Check",
                    self.check,
                    external_auth_pb2.CheckRequest,
                    encoded=True,
                    bridge=bridge,
                )
            },
        )

    async def check(
        self,
        request: external_auth_pb2.CheckRequest,
        context: grpc.aio.ServicerContext[external_auth_pb2.CheckRequest, bytes],
    ) -> bytes:
        """The serialized CheckResponse (`authz_response`, remembered per distinct answer)."""
        bag = bag_from_check_request(request)
        check_bag(bag, self._limits, "attributes")
        if self._peer_identity:
            bag = with_peer_principal(bag, context)
        with self._holder.use() as rt:
            quotas = {
                name: QuotaRequest(amount)
                for name, amount in rt.quota_selector.quotas_for(bag).items()
            }
            dedup = self._dedup_id(bag) if quotas else ""
            if self._decisions is None:
                outcome = await rt.dispatcher.check(bag, quotas, dedup)
            else:
                start = time.perf_counter()
                outcome = await rt.dispatcher.check(bag, quotas, dedup)
                self._decisions.record(rt, "ext_authz", bag, outcome, time.perf_counter() - start)
        self._results.get(
            "ext_authz",
            outcome.decided_by if outcome.status_code else "",
            codes.name(outcome.status_code),
        ).inc()
        key = _response_key(outcome)
        encoded = self._encoded.parts.get(key)
        if encoded is None:
            encoded = self._encoded.put(key, authz_response(outcome).SerializeToString())
        return encoded
