"""The ``denier`` adapter: answers every check with one configured status, and grants no quota.

Params (camelCase or snake_case keys), with Mixer's defaults:

- ``status: {code, message}``: the gRPC status of every check; default ``FAILED_PRECONDITION``
  (9). ``code`` is a number or a code name (``PERMISSION_DENIED``).
- ``validDuration`` (default ``5s``), ``validUseCount`` (default 1000): how long and how often
  a client may reuse the answer.
- ``directResponse: {code, body, headers}`` (our extension, in place of Mixer's
  ``DirectHttpResponse`` status detail): the HTTP answer a proxy should send for a denial,
  returned in `CheckResult.direct_response`.

Templates: ``checknothing``, ``listentry``, ``apikey``, ``authorization`` (all answered alike:
Mixer meant the denier to cover every check template) and ``quota``, which is granted 0 with an OK
status and no valid duration, as Mixer did: a quota denial.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from adapters.base import (
    FAILED_PRECONDITION,
    OK,
    AdapterInfo,
    CheckResult,
    DirectResponse,
    Env,
    Instance,
    ParamError,
    QuotaArgs,
    QuotaResult,
)
from adapters.toolkit.params import canonical_fields, duration_param, int_range_param

__all__ = ["INFO", "Denier", "DenierParams", "build", "parse_params"]

_MAX_INT32: Final = 2**31 - 1

# google.rpc.Code names, so configs may write ``code: PERMISSION_DENIED``.
_CODES: Final = {
    name: number
    for number, name in enumerate(
        (
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        )
    )
}


@dataclass(frozen=True, slots=True)
class DenierParams:
    """Parsed ``denier`` params."""

    status_code: int = FAILED_PRECONDITION
    status_message: str = ""
    valid_duration: datetime.timedelta = datetime.timedelta(seconds=5)
    valid_use_count: int = 1000
    direct_response: DirectResponse | None = None


_FIELDS: Final = {
    "status": "status",
    "validDuration": "valid_duration",
    "validUseCount": "valid_use_count",
    "directResponse": "direct_response",
}
_STATUS_FIELDS: Final = {"code": "code", "message": "message"}
_DIRECT_FIELDS: Final = {"code": "code", "body": "body", "headers": "headers"}
# Mixer's denier took HTTP answers as status ``details``; point users to our field instead.
_HINTS: Final = {"details": " (use directResponse for an HTTP answer)"}


def _code_param(value: Any, path: str) -> int:
    if isinstance(value, str) and value.strip().upper() in _CODES:
        return _CODES[value.strip().upper()]
    return int_range_param(value, path, 0, len(_CODES) - 1)


def _direct_response_param(raw: Any) -> DirectResponse:
    fields = canonical_fields(raw, _DIRECT_FIELDS, "directResponse.", _HINTS)
    code = 0
    if "code" in fields:
        code = int_range_param(fields["code"], "directResponse.code", 200, 599)
    body = fields.get("body", "")
    if not isinstance(body, str):
        raise ParamError("directResponse.body", f"expected a string, got {body!r}")
    raw_headers = fields.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise ParamError("directResponse.headers", f"expected a mapping, got {raw_headers!r}")
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        path = f"directResponse.headers.{name}"
        if not isinstance(name, str) or not name:
            raise ParamError(path, "header names must be non-empty strings")
        # YAML turns ``retry-after: 30`` into an int; a header value is its text.
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ParamError(path, f"expected a string, got {value!r}")
        headers[name] = str(value)
    return DirectResponse(code=code, body=body, headers=headers)


def parse_params(raw: Mapping[str, Any]) -> DenierParams:
    """Validate ``denier`` params (camelCase or snake_case keys); pure, no I/O."""
    fields = canonical_fields(raw, _FIELDS, "", _HINTS)
    defaults = DenierParams()

    status = canonical_fields(fields.get("status"), _STATUS_FIELDS, "status.", _HINTS)
    code = defaults.status_code
    if "code" in status:
        code = _code_param(status["code"], "status.code")
    message = status.get("message", "")
    if not isinstance(message, str):
        raise ParamError("status.message", f"expected a string, got {message!r}")

    valid_duration = defaults.valid_duration
    if "validDuration" in fields:
        valid_duration = duration_param(fields["validDuration"], "validDuration")
        if valid_duration < datetime.timedelta(0):
            raise ParamError("validDuration", f"must be >= 0, got {valid_duration}")
    valid_use_count = defaults.valid_use_count
    if "validUseCount" in fields:
        valid_use_count = int_range_param(fields["validUseCount"], "validUseCount", 0, _MAX_INT32)

    direct = None
    if fields.get("directResponse") is not None:
        direct = _direct_response_param(fields["directResponse"])

    return DenierParams(
        status_code=code,
        status_message=message,
        valid_duration=valid_duration,
        valid_use_count=valid_use_count,
        direct_response=direct,
    )


class Denier:
    """A built ``denier`` handler: the same answer every time."""

    answers_inline = True

    def __init__(self, params: DenierParams) -> None:
        self._result = CheckResult(
            status_code=params.status_code,
            message=params.status_message,
            valid_duration=params.valid_duration,
            valid_use_count=params.valid_use_count,
            direct_response=params.direct_response,
        )
        self._quota = QuotaResult(granted=0, valid_duration=datetime.timedelta(0), status_code=OK)

    async def check(self, instance: Instance) -> CheckResult:
        """Answer any check instance with the configured status."""
        return self._result

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        """Grant nothing (status OK), which denies the quota."""
        return self._quota

    async def close(self) -> None:
        """Nothing to release."""


def build(params: DenierParams, env: Env) -> Denier:
    """Build a handler; it needs nothing from `env`."""
    return Denier(params)


INFO: Final = AdapterInfo(
    name="denier",
    description="Rejects any check and quota request with a configurable error",
    templates=frozenset({"checknothing", "listentry", "apikey", "authorization", "quota"}),
    parse_params=parse_params,
    build=build,
)
