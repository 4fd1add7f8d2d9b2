"""The istio.mixer.v1 Mixer service: Check and Report over compressed attributes."""

from __future__ import annotations

import asyncio
import datetime
import logging

import grpc
from google.protobuf import duration_pb2

from mixer.api.identity import with_peer_principal
from mixer.api.status import unary_handler
from mixer.attributes.compressed import Encoder, check_word_count, decode, decode_report
from mixer.attributes.limits import DEFAULT_LIMITS, Limits
from mixer.attributes.tracking import References
from mixer.errors import LimitExceeded
from mixer.runtime.dispatcher import CheckOutcome, QuotaRequest, RouteResult
from mixer.runtime.runtime import RuntimeHolder
from mixer.server.telemetry import Children, ServerMetrics
from mixer.v1 import mixer_pb2

logger = logging.getLogger(__name__)

SERVICE = "istio.mixer.v1.Mixer"

_REPORT_SLICE = 16
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


_EXACT = mixer_pb2.ReferencedAttributes.EXACT
_ABSENCE = mixer_pb2.ReferencedAttributes.ABSENCE


def _ref_order(kv: tuple[tuple[str, str | None], bool]) -> tuple[str, str]:
    return (kv[0][0], kv[0][1] or "")


def _encode_references(refs: References, global_word_count: int) -> bytes:
    out = mixer_pb2.ReferencedAttributes()
    encoder = Encoder(global_word_count)
    add = out.attribute_matches.add
    index = encoder.index
    for (name, key), present in sorted(refs.reads.items(), key=_ref_order):
        cond = _EXACT if present else _ABSENCE
        if key is None:
            add(name=index(name), condition=cond)
        else:
            add(name=index(name), condition=cond, map_key=index(key))
    out.words.extend(encoder.words)
    return out.SerializeToString()


# The same rules read the same attributes request after request: a read set (names, keys and
# presence only, never values) is encoded once. Bounded by the config's rules; cleared if full.
_MAX_ENCODED_REFERENCES = 4096
_encoded_references: dict[tuple[object, ...], bytes] = {}


def _fill_references(
    out: mixer_pb2.ReferencedAttributes, refs: References, global_word_count: int
) -> None:
    key = (global_word_count, *refs.reads.items())
    encoded = _encoded_references.get(key)
    if encoded is None:
        encoded = _encode_references(refs, global_word_count)
        if len(_encoded_references) >= _MAX_ENCODED_REFERENCES:
            _encoded_references.clear()
        _encoded_references[key] = encoded
    out.MergeFromString(encoded)


def _set_duration(d: duration_pb2.Duration, value: datetime.timedelta) -> None:
    d.seconds = value.days * 86400 + value.seconds
    d.nanos = value.microseconds * 1000


def _route(route: RouteResult) -> mixer_pb2.RouteDirective:
    rd = mixer_pb2.RouteDirective(
        direct_response_code=route.direct_response_code,
        direct_response_body=route.direct_response_body,
    )
    for op in route.request_header_operations:
        rd.request_header_operations.add(name=op.name, value=op.value, operation=int(op.operation))
    for op in route.response_header_operations:
        rd.response_header_operations.add(name=op.name, value=op.value, operation=int(op.operation))
    for name, value in route.direct_response_headers.items():
        rd.response_header_operations.add(
            name=name, value=value, operation=mixer_pb2.HeaderOperation.REPLACE
        )
    return rd


def check_response(outcome: CheckOutcome, global_word_count: int) -> mixer_pb2.CheckResponse:
    """Build the wire response for a check outcome."""
    resp = mixer_pb2.CheckResponse()
    pre = resp.precondition
    pre.status.code = outcome.status_code
    if outcome.message:
        pre.status.message = outcome.message
    _set_duration(pre.valid_duration, outcome.valid_duration)
    pre.valid_use_count = outcome.valid_use_count
    _fill_references(pre.referenced_attributes, outcome.references, global_word_count)
    route = outcome.route
    if (
        route.request_header_operations
        or route.response_header_operations
        or route.direct_response_code
        or route.direct_response_body
        or route.direct_response_headers
    ):
        pre.route_directive.CopyFrom(_route(route))
    for name, q in outcome.quotas.items():
        qr = resp.quotas[name]
        qr.granted_amount = q.granted
        _set_duration(qr.valid_duration, q.valid_duration)
        qr.status.code = q.status_code
        if q.message:
            qr.status.message = q.message
        _fill_references(qr.referenced_attributes, q.references, global_word_count)
    return resp


class MixerService:
    """Mixer v1: decode attributes, run the current runtime, encode the answer."""

    def __init__(
        self,
        holder: RuntimeHolder,
        metrics: ServerMetrics,
        *,
        limits: Limits = DEFAULT_LIMITS,
        peer_identity: bool = False,
    ) -> None:
        self._holder = holder
        self._metrics = metrics
        self._limits = limits
        self._peer_identity = peer_identity
        self._reports = metrics.reports_received.labels("mixer")
        self._results = Children(metrics.check_results)

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler serving /istio.mixer.v1.Mixer/{Check,Report}."""
        m = self._metrics
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": unary_handler(m, SERVICE, "Check", self.check, mixer_pb2.CheckRequest),
                "Report": unary_handler(m, SERVICE, "Report", self.report, mixer_pb2.ReportRequest),
            },
        )

    async def check(
        self,
        request: mixer_pb2.CheckRequest,
        context: grpc.aio.ServicerContext[mixer_pb2.CheckRequest, mixer_pb2.CheckResponse],
    ) -> mixer_pb2.CheckResponse:
        check_word_count(request.global_word_count)
        requested = request.quotas  # read key by key: a protobuf map's items() is Python-level
        quotas = {
            name: QuotaRequest(requested[name].amount, requested[name].best_effort)
            for name in requested
        }
        # Whole, unlike a Report's entries: a Check is one message, and a malformed value is
        # refused even where no rule reads it.
        bag = decode(request.attributes, limits=self._limits)
        if self._peer_identity:
            bag = with_peer_principal(bag, context)
        with self._holder.use() as rt:
            outcome = await rt.dispatcher.check(bag, quotas, request.deduplication_id)
        self._results.get(
            "mixer",
            outcome.decided_by if outcome.status_code else "",
            _CODE_NAMES.get(outcome.status_code, str(outcome.status_code)),
        ).inc()
        return check_response(outcome, request.global_word_count)

    async def report(
        self,
        request: mixer_pb2.ReportRequest,
        context: grpc.aio.ServicerContext[mixer_pb2.ReportRequest, mixer_pb2.ReportResponse],
    ) -> mixer_pb2.ReportResponse:
        if len(request.attributes) > self._limits.max_report_entries:
            raise LimitExceeded(
                f"attributes: {len(request.attributes)} report entries is more than the limit of "
                f"{self._limits.max_report_entries}"
            )
        with self._holder.use() as rt:
            debug = logger.isEnabledFor(logging.DEBUG)
            # Only what some report rule may read: Istio's proxies also send headers, times
            # and addresses that no metric looks at.
            bags = decode_report(
                request,
                wanted=None if debug else rt.dispatcher.routes.report_names,
                limits=self._limits,
            )
            if self._peer_identity:
                bags = [with_peer_principal(bag, context) for bag in bags]
            self._reports.inc(len(bags))
            if debug:
                for i, bag in enumerate(bags):
                    logger.debug("report entry %d: %s", i, dict(bag))
            # In slices, so that a large batch never holds the event loop (and the checks and
            # Redis replies waiting on it) for long.
            for start in range(0, len(bags), _REPORT_SLICE):
                if start:
                    await asyncio.sleep(0)
                rt.dispatcher.report(bags[start : start + _REPORT_SLICE])
        return mixer_pb2.ReportResponse()
