"""ext_authz responses: the dynamic metadata Envoy's filters read after a decision."""

from __future__ import annotations

from google.protobuf import struct_pb2

from mixer.api.authz_servicer import authz_response
from mixer.runtime.dispatcher import CheckOutcome


def expected(rule: str, code: int, message: str) -> struct_pb2.Struct:
    meta = struct_pb2.Struct()
    meta.update({"mixer": {"rule": rule, "status_code": code, "message": message}})
    return meta


def test_a_denial_carries_rule_code_and_message() -> None:
    outcome = CheckOutcome(status_code=7, message="h:not allowed", decided_by="deny.rule.ns")
    resp = authz_response(outcome)
    assert resp.dynamic_metadata == expected("deny.rule.ns", 7, "h:not allowed")
    assert (resp.status.code, resp.status.message) == (7, "h:not allowed")
    assert resp.denied_response.status.code == 403


def test_an_allowed_request_carries_empty_fields() -> None:
    resp = authz_response(CheckOutcome())
    assert resp.dynamic_metadata == expected("", 0, "")
    assert resp.status.code == 0 and not resp.HasField("denied_response")
