"""The denier adapter: one configured answer for every check, no quota."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters import denier
from adapters.base import (
    FAILED_PRECONDITION,
    OK,
    PERMISSION_DENIED,
    UNAUTHENTICATED,
    CheckHandler,
    DirectResponse,
    Env,
    Instance,
    ParamError,
    QuotaArgs,
    QuotaHandler,
)


def make_env() -> Env:
    return Env(
        handler_name="denyall.handler.istio-system",
        logger=logging.getLogger("test.denier"),
        registry=CollectorRegistry(),
        clock=time.monotonic,
    )


def build(raw: Mapping[str, Any]) -> denier.Denier:
    return denier.build(denier.parse_params(raw), make_env())


CHECKNOTHING = Instance("denyrequest.instance.istio-system", "checknothing", {})
LISTENTRY = Instance("e.instance.istio-system", "listentry", {"value": "anything"})
APIKEY = Instance("k.instance.istio-system", "apikey", {"api_key": "k"})
QUOTA = Instance("requestcount.instance.istio-system", "quota", {"dimensions": {}})


async def test_defaults_are_mixers() -> None:
    h = build({})
    result = await h.check(CHECKNOTHING)
    assert result.status_code == FAILED_PRECONDITION
    assert result.message == ""
    assert result.valid_duration == datetime.timedelta(seconds=5)
    assert result.valid_use_count == 1000
    assert result.direct_response is None


async def test_corpus_denyall_answers_every_check_template_alike() -> None:
    # mixer-testdata-config/deny.yaml
    h = build({"status": {"code": 7, "message": "Not allowed"}})
    for instance in (CHECKNOTHING, LISTENTRY, APIKEY):
        result = await h.check(instance)
        assert result.status_code == PERMISSION_DENIED
        assert result.message == "Not allowed"


async def test_quota_is_a_zero_grant_with_ok_status() -> None:
    h = build({"status": {"code": 7}})
    result = await h.quota(QUOTA, QuotaArgs(amount=5, dedup_id="d1"))
    assert result.granted == 0
    assert result.status_code == OK
    assert result.valid_duration == datetime.timedelta(0)


async def test_code_names_durations_and_snake_case() -> None:
    h = build(
        {
            "status": {"code": "UNAUTHENTICATED", "message": "who are you"},
            "valid_duration": "1m",
            "valid_use_count": "7",
        }
    )
    result = await h.check(CHECKNOTHING)
    assert result.status_code == UNAUTHENTICATED
    assert result.valid_duration == datetime.timedelta(minutes=1)
    assert result.valid_use_count == 7


async def test_direct_response_is_returned_with_the_denial() -> None:
    h = build(
        {
            "status": {"code": 7, "message": "go away"},
            "directResponse": {
                "code": 418,
                "body": "teapot",
                "headers": {"content-type": "text/plain", "retry-after": 30},
            },
        }
    )
    result = await h.check(CHECKNOTHING)
    assert result.direct_response == DirectResponse(
        code=418, body="teapot", headers={"content-type": "text/plain", "retry-after": "30"}
    )
    snake = denier.parse_params({"direct_response": {"body": "no"}})
    assert snake.direct_response == DirectResponse(code=0, body="no", headers={})


async def test_status_ok_is_allowed() -> None:
    # An "allow" handler is a denier with code 0; Mixer accepted that too.
    result = await build({"status": {"code": 0}}).check(CHECKNOTHING)
    assert result.status_code == OK


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"status": {"code": 17}}, "status.code", "between 0 and 16"),
        ({"status": {"code": "NOPE"}}, "status.code", "integer"),
        ({"status": {"code": True}}, "status.code", "integer"),
        ({"status": {"message": 5}}, "status.message", "string"),
        ({"status": {"details": []}}, "status.details", "directResponse"),
        ({"status": "denied"}, "status", "mapping"),
        ({"validDuration": "forever"}, "validDuration", "duration"),
        ({"validDuration": "-5s"}, "validDuration", ">= 0"),
        ({"validUseCount": -1}, "validUseCount", "between"),
        ({"directResponse": {"code": 99}}, "directResponse.code", "between 200 and 599"),
        ({"directResponse": {"body": 1}}, "directResponse.body", "string"),
        ({"directResponse": {"headers": ["x"]}}, "directResponse.headers", "mapping"),
        ({"directResponse": {"headers": {"x": None}}}, "directResponse.headers.x", "string"),
        ({"statuscode": 7}, "statuscode", "unknown field"),
        ({"validUseCount": 1, "valid_use_count": 2}, "validUseCount", "given twice"),
    ],
)
def test_param_errors_name_the_field(raw: Mapping[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        denier.parse_params(raw)
    assert info.value.path == path
    assert fragment in info.value.message


async def test_info_and_handler_contract() -> None:
    assert denier.INFO.name == "denier"
    assert denier.INFO.templates == frozenset(
        {"checknothing", "listentry", "apikey", "authorization", "quota"}
    )
    h = denier.INFO.build(denier.INFO.parse_params({}), make_env())
    assert isinstance(h, CheckHandler)
    assert isinstance(h, QuotaHandler)
    await h.close()
