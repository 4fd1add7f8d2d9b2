"""ext_authz responses: the dynamic metadata Envoy's filters read after a decision."""

from __future__ import annotations

import copy

from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.api.authz_servicer import _response_key, authz_response
from mixer.attributes.tracking import References
from mixer.runtime.dispatcher import CheckOutcome, RouteResult
from mixer.runtime.routing import HeaderOp, HeaderOperationResult


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


ops = st.lists(
    st.builds(
        HeaderOperationResult,
        st.sampled_from(["x-a", "x-b"]),
        st.sampled_from(["", "v"]),
        st.sampled_from(list(HeaderOp)),
    ),
    max_size=2,
)
outcomes = st.builds(
    CheckOutcome,
    status_code=st.sampled_from([0, 7, 8]),
    message=st.sampled_from(["", "no"]),
    decided_by=st.sampled_from(["", "r1"]),
    route=st.builds(
        RouteResult,
        ops,
        ops,
        st.sampled_from([0, 429]),
        st.sampled_from(["", "body"]),
        st.dictionaries(st.sampled_from(["h"]), st.sampled_from(["1", "2"])),
    ),
)


@settings(max_examples=1000, deadline=None)
@given(outcomes, st.data())
def test_outcomes_with_one_key_have_one_answer(a: CheckOutcome, data: st.DataObject) -> None:
    """The service remembers encoded answers by `_response_key`: the key must say everything
    the answer depends on. `b` is `a` with one part drawn afresh (often an equal key)."""
    other = data.draw(outcomes)
    part = data.draw(st.sampled_from(["status_code", "message", "decided_by", "route", "rest"]))
    b = copy.deepcopy(a)
    if part == "rest":  # not part of Envoy's answer
        b.valid_use_count, b.references, b.quotas = 1, References({("a", None): True}), {}
    else:
        setattr(b, part, getattr(other, part))
    if _response_key(a) == _response_key(b):
        assert authz_response(a) == authz_response(b)
