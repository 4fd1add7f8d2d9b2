"""The adapter contract: everything an adapter needs from mixer, and all it must provide.

An adapter is one module exposing an `AdapterInfo`. Mixer calls `parse_params` at load time (pure:
no I/O, so `mixer validate` never dials a network service), then `build` once per handler config.
The handler it returns implements one or more of `CheckHandler`, `QuotaHandler` (optionally
`BatchQuotaHandler`), `ReportHandler`, `AttributeGenerator` for the templates the adapter
declares, and `close()`.
Mixer resolves which of these a handler implements once, when it builds the runtime; a handler
cannot change its capabilities afterwards.

An adapter imports this module and, if it wants them, the helpers in `adapters.toolkit`
(parsing params, instance values as text, quota config); never another adapter.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry

from mixer.attributes.bag import StringMap
from mixer.codes import (
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    OK,
    PERMISSION_DENIED,
    RESOURCE_EXHAUSTED,
    UNAUTHENTICATED,
    UNAVAILABLE,
)
from mixer.redact import mask_credentials
from mixer.templates import TEMPLATES, Template, Variety

__all__ = [
    "FAILED_PRECONDITION",
    "INTERNAL",
    "INVALID_ARGUMENT",
    "OK",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "TEMPLATES",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "AdapterInfo",
    "AttributeGenerator",
    "BatchQuotaHandler",
    "CheckHandler",
    "CheckResult",
    "DirectResponse",
    "Env",
    "Handler",
    "Instance",
    "ParamError",
    "QuotaArgs",
    "QuotaHandler",
    "QuotaResult",
    "ReportHandler",
    "SeriesReportHandler",
    "StringMap",
    "Template",
    "Variety",
    "answers_inline",
]

# Status codes (google.rpc.Code numbers, from `mixer.codes`) are what handlers put in
# `CheckResult.status_code` and `QuotaResult.status_code`.


class ParamError(ValueError):
    """A handler's params are invalid. `path` names the field, e.g. ``quotas[0].maxAmount``."""

    def __init__(self, path: str, message: str) -> None:
        # A param may be a URL with a password (redisServerUrl, providerUrl, endpoint); the
        # message goes to logs, `mixer validate` and /debug/config.
        message = mask_credentials(message)
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class Instance(NamedTuple):
    """One built instance: its fully-qualified name, template and evaluated fields.

    Field values are bag values (see `mixer.attributes.bag`); map fields (``dimensions``,
    ``variables`` …) are plain dicts of such values.
    """

    name: str
    template: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DirectResponse:
    """An HTTP answer a denial asks the proxy to send instead of forwarding."""

    code: int = 0
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


class CheckResult(NamedTuple):
    """The answer of a check handler. status_code 0 is OK; anything else denies."""

    status_code: int = OK
    message: str = ""
    valid_duration: datetime.timedelta = datetime.timedelta(seconds=60)
    valid_use_count: int = 10000
    direct_response: DirectResponse | None = None


class QuotaArgs(NamedTuple):
    """One quota allocation request. `dedup_id` is unique per logical call (reused on retries).

    `max_amount`, when set, replaces the configured (or overridden) ``maxAmount`` for this call
    and counts in a bucket of its own (each distinct value has one), as a per-request limit
    such as Envoy's ``RateLimitDescriptor.limit`` needs. Adapters without limits ignore it.
    """

    amount: int
    best_effort: bool = False
    dedup_id: str = ""
    max_amount: int | None = None


class QuotaResult(NamedTuple):
    """The answer of a quota handler.

    `granted` 0 with an OK status is a denial, as in Mixer. `limit`, `remaining` and
    `reset_after` describe the bucket for rate-limit headers when the adapter knows them.
    """

    granted: int
    valid_duration: datetime.timedelta = datetime.timedelta(0)
    status_code: int = OK
    message: str = ""
    limit: int | None = None
    remaining: int | None = None
    reset_after: datetime.timedelta | None = None


@dataclass(frozen=True)
class Env:
    """What mixer hands an adapter when building a handler."""

    handler_name: str
    logger: logging.Logger
    registry: CollectorRegistry
    clock: Callable[[], float]
    max_series: int = 2000
    """Most label sets one metric of the handler may hold (``--max-series``); the rest share
    one series whose every label is empty but ``overflow="true"`` (as OpenTelemetry's
    cardinality limit)."""
    max_quota_bytes: int = 64 * 1024 * 1024
    """Most bytes of quota buckets an in-memory quota handler may hold
    (``--max-quota-bucket-bytes``); past it a new bucket is refused, never an old one reset."""


@runtime_checkable
class Handler(Protocol):
    """A built handler. `close` releases connections, threads and registered metrics.

    A handler whose `check`/`quota`/`report` coroutines never wait (they answer from process
    memory) may set ``answers_inline = True`` (class or instance attribute): mixer then awaits
    them in place, without a task or a timer per call (reports without a queue: a report that
    waits anyway is dropped and counted as a handler error). A timeout could not interrupt such
    a handler anyway; a handler that does I/O must leave it unset, so that a hang is cut off by
    the handler timeout. See `answers_inline`.
    """

    async def close(self) -> None: ...


def answers_inline(handler: Handler) -> bool:
    """Whether `handler` declared ``answers_inline = True``, as a class attribute or an instance
    attribute set before `AdapterInfo.build` returns. Mixer reads it once, when it builds the
    runtime."""
    declared: object = getattr(handler, "answers_inline", False)
    return declared is True


@runtime_checkable
class CheckHandler(Handler, Protocol):
    """Answers CHECK instances (checknothing, listentry, apikey, authorization)."""

    async def check(self, instance: Instance) -> CheckResult: ...


@runtime_checkable
class QuotaHandler(Handler, Protocol):
    """Allocates QUOTA instances."""

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult: ...


@runtime_checkable
class BatchQuotaHandler(QuotaHandler, Protocol):
    """A quota handler that also allocates many quotas in one call (one backend round trip).

    `quota_many` answers one `QuotaResult` per request, in order; mixer uses it whenever a
    request allocates more than one quota on the handler, and `quota` for a single one.
    """

    async def quota_many(
        self, requests: Sequence[tuple[Instance, QuotaArgs]]
    ) -> Sequence[QuotaResult]: ...


@runtime_checkable
class ReportHandler(Handler, Protocol):
    """Takes REPORT instances (metric, logentry, tracespan) in batches."""

    async def report(self, instances: Sequence[Instance]) -> None: ...


@runtime_checkable
class SeriesReportHandler(ReportHandler, Protocol):
    """A report handler that records instances into series (metrics), answers inline, and can
    take an instance as a prepared series and a value.

    Consecutive reports of one series differ in their `series_value` field only. Mixer calls
    `prepare` with a whole instance and keeps the handle it returns while the instance's other
    fields stay the same; it then hands `record` pairs of ``(handle, value)`` instead of
    instances, in the order a `report` of the same instances would have seen them, where
    ``value`` is that field's value. A pair ``(None, instance)`` is a whole instance (one
    `prepare` declined). `record` must leave the series exactly as `report` of the same
    instances would, and fail as it would: all applicable values applied, then one exception.
    """

    series_value: str
    """The field that varies within one series (a metric's ``value``)."""

    def prepare(self, instance: Instance) -> object | None:
        """A handle for the series of `instance`, or None to be given whole instances. It must
        not record anything (the value may still fail to convert)."""
        ...

    def record(self, items: Sequence[tuple[object | None, Any]]) -> None:
        """Apply `items` (``(handle, value)`` or ``(None, instance)``) in order; raise once, at
        the end, if some could not be applied."""
        ...


@runtime_checkable
class AttributeGenerator(Handler, Protocol):
    """Answers ATTRIBUTE_GENERATOR instances (kubernetes) before a request is dispatched.

    `generate` returns the template's output fields that it set (`Template.outputs`: name ->
    bag value); a field it leaves out is unset, and a binding that reads it takes its ``|``
    default. Mixer turns the output into attributes through the instance's bindings, and
    they only fill attributes the caller did not send. Raising fails the request's
    generation phase: return what is known instead (an empty mapping when nothing is).
    """

    async def generate(self, instance: Instance) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter module exports.

    `parse_params` turns the YAML params into the adapter's own typed params object, raising
    `ParamError`; it must not do I/O. `build` makes a handler from those params.
    """

    name: str
    description: str
    templates: frozenset[str]
    parse_params: Callable[[Mapping[str, Any]], Any]
    build: Callable[[Any, Env], Handler]
