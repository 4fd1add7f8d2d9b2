"""Map fields (a metric's dimensions) are remembered by the values their evaluation read."""

from __future__ import annotations

from typing import Any

import mixer.expr
from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.runtime.routing import InstanceBuilder


def fields() -> dict[str, Any]:
    """A metric's fields, compiled afresh (as a new config would)."""

    def c(text: str) -> Any:
        return mixer.expr.compile(text, dialect="mixer")

    dims = {
        "source": c('source.workload.name | "unknown"'),
        "destination": c('destination.workload.name | destination.service.name | "unknown"'),
        "app": c('destination.labels["app"] | "unknown"'),
        "code": c("response.code | 200"),
        "mtls": c("connection.mtls | false"),
    }
    return {"value": c("response.size | 0"), "dimensions": dims}


def builder(name: str = "requestcount", tree: dict[str, Any] | None = None) -> InstanceBuilder:
    return InstanceBuilder(
        f"{name}.instance.istio-system", name, "metric", tree if tree is not None else fields()
    )


def bag(**attrs: object) -> Bag:
    base: dict[str, object] = {
        "source.workload.name": "productpage",
        "destination.workload.name": "ratings",
        "destination.labels": StringMap({"app": "ratings", "version": "v1"}),
        "response.code": 200,
        "response.size": 100,
        "request.path": "/a",
    }
    base.update(attrs)
    return Bag({k: v for k, v in base.items() if v is not None})  # type: ignore[misc]


def dims(b: InstanceBuilder, activation: Any) -> Any:
    return b.build(activation, {}).fields["dimensions"]


def test_same_read_values_give_the_remembered_dimensions_and_a_fresh_value() -> None:
    b = builder()
    first = b.build(bag(), {})
    second = b.build(bag(**{"response.size": 7, "request.path": "/other"}), {})
    assert second.fields["dimensions"] is first.fields["dimensions"]
    assert second.fields["value"] == 7
    assert dict(first.fields["dimensions"]) == {
        "source": "productpage",
        "destination": "ratings",
        "app": "ratings",
        "code": 200,
        "mtls": False,
    }


def test_a_different_read_value_is_evaluated_again() -> None:
    b = builder()
    first = dims(b, bag())
    other = dims(b, bag(**{"response.code": 503}))
    assert other is not first and other["code"] == 503
    labels = dims(b, bag(**{"destination.labels": StringMap({"app": "reviews"})}))
    assert labels["app"] == "reviews"
    assert dims(b, bag()) is first


def test_each_evaluation_path_is_its_own_shape() -> None:
    b = builder()
    by_workload = dims(b, bag())
    no_workload = bag(**{"destination.workload.name": None, "destination.service.name": "svc"})
    by_service = dims(b, no_workload)
    assert by_service["destination"] == "svc" and by_workload["destination"] == "ratings"
    assert dims(b, no_workload) is by_service
    assert dims(b, bag()) is by_workload
    other_service = no_workload.merged({"destination.service.name": "svc2"})
    assert dims(b, other_service)["destination"] == "svc2"


def test_equal_values_of_different_types_are_not_confused() -> None:
    b = builder()
    as_int = dims(b, bag(**{"response.code": 1}))
    as_bool = dims(b, bag(**{"response.code": True}))
    assert as_int["code"] == 1 and as_bool["code"] is True
    assert as_int is not as_bool


def test_builders_of_the_same_plan_share_the_memo_and_a_request_reads_it_once() -> None:
    # A config load compiles each distinct expression once: both metrics get the same programs.
    shared = fields()
    a, b = builder("requestcount", shared), builder("requestsize", dict(shared))
    request = bag()
    memo: dict[int, Any] = {}
    found = a.build(request, memo).fields["dimensions"]
    assert b.build(request, memo).fields["dimensions"] is found
    assert builder("other", dict(shared)).build(bag(), {}).fields["dimensions"] is found


def test_a_tracking_bag_sees_every_read() -> None:
    b = builder()
    dims(b, bag())
    tracking = TrackingBag(bag())
    b.build(tracking, {})
    assert tracking.refs.reads[("destination.labels", "app")] is True
    assert tracking.refs.reads[("source.workload.name", None)] is True


def test_a_new_config_does_not_meet_old_entries() -> None:
    old = builder()
    first = dims(old, bag())
    new = builder()
    assert dims(new, bag()) is not first


def test_the_memo_stays_bounded() -> None:
    from mixer.runtime import routing

    b = builder()
    for code in range(routing._MEMO_MAX_ENTRIES + 50):
        assert dims(b, bag(**{"response.code": code}))["code"] == code
    memo = b.plan[1][4]
    assert memo is not None
    assert 0 < len(memo._table) <= routing._MEMO_MAX_ENTRIES
