"""A Python client for the Mixer v1 API: plain dicts in, compressed attributes on the wire."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from mixer.attributes.compressed import Encoder, encode, encode_report
from mixer.attributes.dictionary import GLOBAL_WORD_COUNT, GLOBAL_WORDS
from mixer.v1 import mixer_pb2

CHECK_METHOD = "/istio.mixer.v1.Mixer/Check"
REPORT_METHOD = "/istio.mixer.v1.Mixer/Report"


@dataclass(frozen=True)
class QuotaAnswer:
    """The result of one quota in a Check."""

    granted: int
    valid_duration: datetime.timedelta
    status_code: int
    message: str


@dataclass(frozen=True)
class CheckAnswer:
    """A decoded CheckResponse."""

    status_code: int
    message: str
    valid_duration: datetime.timedelta
    valid_use_count: int
    referenced: list[dict[str, Any]]
    route_directive: dict[str, Any]
    quotas: dict[str, QuotaAnswer] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly view (durations in seconds)."""
        return {
            "status": {"code": self.status_code, "message": self.message},
            "valid_duration": self.valid_duration.total_seconds(),
            "valid_use_count": self.valid_use_count,
            "referenced_attributes": self.referenced,
            "route_directive": self.route_directive,
            "quotas": {
                name: {
                    "granted_amount": q.granted,
                    "valid_duration": q.valid_duration.total_seconds(),
                    "status": {"code": q.status_code, "message": q.message},
                }
                for name, q in self.quotas.items()
            },
        }


def _word(words: list[str], index: int) -> str:
    return GLOBAL_WORDS[index] if index >= 0 else words[-index - 1]


def decode_references(refs: mixer_pb2.ReferencedAttributes) -> list[dict[str, Any]]:
    """ReferencedAttributes as a list of {name, condition, map_key?}."""
    words = list(refs.words)
    out = []
    for m in refs.attribute_matches:
        entry: dict[str, Any] = {
            "name": _word(words, m.name),
            "condition": mixer_pb2.ReferencedAttributes.Condition.Name(m.condition),
        }
        if m.map_key:
            entry["map_key"] = _word(words, m.map_key)
        out.append(entry)
    return out


def decode_check_response(resp: mixer_pb2.CheckResponse) -> CheckAnswer:
    """Turn a CheckResponse into a CheckAnswer."""
    pre = resp.precondition
    rd = pre.route_directive
    op_name = mixer_pb2.HeaderOperation.Operation.Name
    route = {
        "request_header_operations": [
            {"name": o.name, "value": o.value, "operation": op_name(o.operation)}
            for o in rd.request_header_operations
        ],
        "response_header_operations": [
            {"name": o.name, "value": o.value, "operation": op_name(o.operation)}
            for o in rd.response_header_operations
        ],
        "direct_response_code": rd.direct_response_code,
        "direct_response_body": rd.direct_response_body,
    }
    return CheckAnswer(
        status_code=pre.status.code,
        message=pre.status.message,
        valid_duration=pre.valid_duration.ToTimedelta(),
        valid_use_count=pre.valid_use_count,
        referenced=decode_references(pre.referenced_attributes),
        route_directive=route,
        quotas={
            name: QuotaAnswer(
                q.granted_amount, q.valid_duration.ToTimedelta(), q.status.code, q.status.message
            )
            for name, q in resp.quotas.items()
        },
    )


class MixerClient:
    """A blocking client; one channel, reused across calls."""

    def __init__(
        self,
        address: str,
        *,
        global_word_count: int = GLOBAL_WORD_COUNT,
        timeout: float = 5.0,
        channel: grpc.Channel | None = None,
    ) -> None:
        self._channel = channel if channel is not None else grpc.insecure_channel(address)
        self._check = self._channel.unary_unary(
            CHECK_METHOD,
            request_serializer=mixer_pb2.CheckRequest.SerializeToString,
            response_deserializer=mixer_pb2.CheckResponse.FromString,
        )
        self._report = self._channel.unary_unary(
            REPORT_METHOD,
            request_serializer=mixer_pb2.ReportRequest.SerializeToString,
            response_deserializer=mixer_pb2.ReportResponse.FromString,
        )
        self._words = global_word_count
        self._timeout = timeout
        self._dedup_base = uuid.uuid4().hex
        self._counter = 0

    def check(
        self,
        attributes: Mapping[str, object],
        quotas: Mapping[str, int | tuple[int, bool]] | None = None,
        *,
        deduplication_id: str | None = None,
    ) -> CheckAnswer:
        """Send a Check; quotas map a name to an amount or (amount, best_effort)."""
        req = self.check_request(attributes, quotas, deduplication_id=deduplication_id)
        return decode_check_response(self._check(req, timeout=self._timeout))

    def check_request(
        self,
        attributes: Mapping[str, object],
        quotas: Mapping[str, int | tuple[int, bool]] | None = None,
        *,
        deduplication_id: str | None = None,
    ) -> mixer_pb2.CheckRequest:
        """The CheckRequest `check` would send."""
        if deduplication_id is None:
            self._counter += 1
            deduplication_id = f"{self._dedup_base}{self._counter}"
        req = mixer_pb2.CheckRequest(
            global_word_count=self._words, deduplication_id=deduplication_id
        )
        req.attributes.CopyFrom(encode(attributes, encoder=Encoder(self._words)))
        for name, spec in (quotas or {}).items():
            amount, best_effort = spec if isinstance(spec, tuple) else (spec, False)
            req.quotas[name].amount = amount
            req.quotas[name].best_effort = best_effort
        return req

    def report(self, entries: Iterable[Mapping[str, object]], *, delta: bool = False) -> None:
        """Send one Report batch (shared default_words; delta or independent encoding)."""
        req = encode_report(entries, global_word_count=self._words, delta=delta)
        self._report(req, timeout=self._timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> MixerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
