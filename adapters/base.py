"""The adapter contract: everything an adapter needs from mixer, and all it must provide.

An adapter is one module exposing an `AdapterInfo`. Mixer calls `parse_params` at load time (pure:
no I/O, so `mixer validate` never dials a network service), then `build` once per handler config.
The handler it returns implements one or more of `CheckHandler`, `QuotaHandler`, `ReportHandler`
for the templates the adapter declares, and `close()`.

Adapters import only this module.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry

from mixer.attributes.bag import StringMap
from mixer.templates import TEMPLATES, Template, Variety

__all__ = [
    "TEMPLATES",
    "AdapterInfo",
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
    "StringMap",
    "Template",
    "Variety",
    "duration_param",
]

# gRPC status codes, by number, as adapters report them (google.rpc.Code).
OK = 0
INVALID_ARGUMENT = 3
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16


class ParamError(ValueError):
    """A handler's params are invalid. `path` names the field, e.g. ``quotas[0].maxAmount``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Instance:
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


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer of a check handler. status_code 0 is OK; anything else denies."""

    status_code: int = OK
    message: str = ""
    valid_duration: datetime.timedelta = datetime.timedelta(seconds=60)
    valid_use_count: int = 10000
    direct_response: DirectResponse | None = None


@dataclass(frozen=True, slots=True)
class QuotaArgs:
    """One quota allocation request. `dedup_id` is unique per logical call (reused on retries)."""

    amount: int
    best_effort: bool = False
    dedup_id: str = ""


@dataclass(frozen=True, slots=True)
class QuotaResult:
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


@runtime_checkable
class Handler(Protocol):
    """A built handler. `close` releases connections, threads and registered metrics."""

    async def close(self) -> None: ...


@runtime_checkable
class CheckHandler(Handler, Protocol):
    """Answers CHECK instances (checknothing, listentry, apikey, authorization)."""

    async def check(self, instance: Instance) -> CheckResult: ...


@runtime_checkable
class QuotaHandler(Handler, Protocol):
    """Allocates QUOTA instances."""

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult: ...


@runtime_checkable
class ReportHandler(Handler, Protocol):
    """Takes REPORT instances (metric, logentry, tracespan) in batches."""

    async def report(self, instances: Sequence[Instance]) -> None: ...


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


def duration_param(value: Any, path: str) -> datetime.timedelta:
    """Parse a duration as Istio wrote them: ``"10s"``, ``"1.5s"``, ``"100ms"``, ``"1h2m"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.timedelta(seconds=value)
    if not isinstance(value, str) or not value:
        raise ParamError(path, f"expected a duration such as '10s', got {value!r}")
    units = {
        "ns": 1e-9,
        "us": 1e-6,
        "µs": 1e-6,
        "ms": 1e-3,
        "s": 1.0,
        "m": 60.0,
        "h": 3600.0,
    }
    text = value.strip()
    total = 0.0
    pos = 0
    sign = 1.0
    if text[:1] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        pos = 1
    if text[pos:] == "0":
        return datetime.timedelta(0)
    matched_any = False
    while pos < len(text):
        start = pos
        while pos < len(text) and (text[pos].isdigit() or text[pos] == "."):
            pos += 1
        number = text[start:pos]
        ustart = pos
        while pos < len(text) and not (text[pos].isdigit() or text[pos] == "."):
            pos += 1
        unit = text[ustart:pos]
        if not number or unit not in units:
            raise ParamError(path, f"expected a duration such as '10s', got {value!r}")
        try:
            total += float(number) * units[unit]
        except ValueError:
            raise ParamError(path, f"expected a duration such as '10s', got {value!r}") from None
        matched_any = True
    if not matched_any:
        raise ParamError(path, f"expected a duration such as '10s', got {value!r}")
    return datetime.timedelta(seconds=sign * total)
