"""A Mixer CheckResponse, encoded from remembered pieces.

Successive checks mostly get the same answers: the same status, durations and read sets, the same
header operations, the same quota grants. Building the protobuf message field by field is a large
share of a Check (docs/benchmarks.md, fifth round), so the response is encoded in parts, each one a
serialized CheckResponse that sets one part only: the precondition's status, durations and
referenced attributes; its route directive; one entry of the quota map. Protobuf parses
concatenated encodings of a message as their merge (singular sub-messages merge, map entries add
up), so the parts joined are the whole response. Each part is encoded once per distinct value and
remembered; every table is bounded (cleared when full), since values such as header texts come from
requests.
"""

from __future__ import annotations

import datetime
from collections.abc import Hashable

from google.protobuf import duration_pb2

from mixer.attributes.compressed import Encoder
from mixer.attributes.tracking import References
from mixer.runtime.dispatcher import CheckOutcome, QuotaOutcome, RouteResult
from mixer.v1 import mixer_pb2

_EXACT = mixer_pb2.ReferencedAttributes.EXACT
_ABSENCE = mixer_pb2.ReferencedAttributes.ABSENCE
_REPLACE = mixer_pb2.HeaderOperation.REPLACE

MAX_ENTRIES = 4096
"""Entries per table (read sets, preconditions, routes, quota entries) before it is cleared."""


def _ref_order(kv: tuple[tuple[str, str | None], bool]) -> tuple[str, str]:
    return (kv[0][0], kv[0][1] or "")


def encode_references(refs: References, global_word_count: int) -> bytes:
    """`refs` as an encoded ReferencedAttributes, words indexed as the client's dictionary of
    `global_word_count` words allows (the others in its own word list)."""
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


def _set_duration(d: duration_pb2.Duration, value: datetime.timedelta) -> None:
    d.seconds = value.days * 86400 + value.seconds
    d.nanos = value.microseconds * 1000


def _route_part(route: RouteResult) -> bytes:
    resp = mixer_pb2.CheckResponse()
    rd = resp.precondition.route_directive
    rd.direct_response_code = route.direct_response_code
    rd.direct_response_body = route.direct_response_body
    for op in route.request_header_operations:
        rd.request_header_operations.add(name=op.name, value=op.value, operation=int(op.operation))
    for op in route.response_header_operations:
        rd.response_header_operations.add(name=op.name, value=op.value, operation=int(op.operation))
    for name, value in route.direct_response_headers.items():
        rd.response_header_operations.add(name=name, value=value, operation=_REPLACE)
    rd.SetInParent()
    return resp.SerializeToString()


class PartTable:
    """One bounded table of encoded parts: look up in `parts`, add with `put`."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: dict[Hashable, bytes] = {}

    def put(self, key: Hashable, part: bytes) -> bytes:
        """Remember `part` under `key` (clearing the table first if it is full); returns it."""
        if len(self.parts) >= MAX_ENTRIES:
            self.parts.clear()
        self.parts[key] = part
        return part


class CheckEncoder:
    """Encodes check outcomes for one service (`encode`), remembering the parts it made."""

    __slots__ = ("_preconditions", "_quotas", "_references", "_routes")

    def __init__(self) -> None:
        self._references = PartTable()
        self._preconditions = PartTable()
        self._routes = PartTable()
        self._quotas = PartTable()

    def references(self, refs: References, global_word_count: int) -> bytes:
        """The encoded ReferencedAttributes of `refs` (the same rules read the same attributes
        request after request: keyed by names, keys and presence, never values)."""
        key = (global_word_count, *refs.reads.items())
        found = self._references.parts.get(key)
        if found is None:
            found = self._references.put(key, encode_references(refs, global_word_count))
        return found

    def encode(self, outcome: CheckOutcome, global_word_count: int) -> bytes:
        """The CheckResponse for `outcome`, serialized."""
        refs = self.references(outcome.references, global_word_count)
        key = (
            outcome.status_code,
            outcome.message,
            outcome.valid_duration,
            outcome.valid_use_count,
            refs,
        )
        precondition = self._preconditions.parts.get(key)
        if precondition is None:
            precondition = self._preconditions.put(key, _precondition_part(outcome, refs))
        parts = [precondition]
        route = outcome.route
        if (
            route.request_header_operations
            or route.response_header_operations
            or route.direct_response_code
            or route.direct_response_body
            or route.direct_response_headers
        ):
            parts.append(self._route(route))
        for name, quota in outcome.quotas.items():
            parts.append(self._quota(name, quota, global_word_count))
        return b"".join(parts)

    def _route(self, route: RouteResult) -> bytes:
        key = route.key()
        found = self._routes.parts.get(key)
        if found is None:
            found = self._routes.put(key, _route_part(route))
        return found

    def _quota(self, name: str, quota: QuotaOutcome, global_word_count: int) -> bytes:
        refs = self.references(quota.references, global_word_count)
        key = (name, quota.granted, quota.valid_duration, quota.status_code, quota.message, refs)
        found = self._quotas.parts.get(key)
        if found is None:
            found = self._quotas.put(key, _quota_part(name, quota, refs))
        return found


def _precondition_part(outcome: CheckOutcome, refs: bytes) -> bytes:
    resp = mixer_pb2.CheckResponse()
    pre = resp.precondition
    pre.status.code = outcome.status_code
    if outcome.message:
        pre.status.message = outcome.message
    _set_duration(pre.valid_duration, outcome.valid_duration)
    pre.valid_use_count = outcome.valid_use_count
    pre.referenced_attributes.MergeFromString(refs)
    return resp.SerializeToString()


def _quota_part(name: str, quota: QuotaOutcome, refs: bytes) -> bytes:
    resp = mixer_pb2.CheckResponse()
    qr = resp.quotas[name]
    qr.granted_amount = quota.granted
    _set_duration(qr.valid_duration, quota.valid_duration)
    qr.status.code = quota.status_code
    if quota.message:
        qr.status.message = quota.message
    qr.referenced_attributes.MergeFromString(refs)
    return resp.SerializeToString()
