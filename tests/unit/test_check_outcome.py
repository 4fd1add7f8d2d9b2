"""A cached precondition is copied for each request that it answers."""

from __future__ import annotations

import dataclasses
import datetime

from mixer.attributes.tracking import References
from mixer.runtime.dispatcher import CheckOutcome, QuotaOutcome, RouteResult


def test_without_quotas_copies_every_other_field() -> None:
    cached = CheckOutcome(
        status_code=7,
        message="denied",
        valid_duration=datetime.timedelta(seconds=3),
        valid_use_count=4,
        references=References({("a", None): True}),
        route=RouteResult(direct_response_code=403),
        quotas={"q": QuotaOutcome(1, datetime.timedelta(seconds=1))},
        decided_by="rule",
        dry_run=(("other", "would_deny"),),
    )
    copy = cached.without_quotas()
    assert copy == dataclasses.replace(cached, quotas={})
    assert copy.quotas == {} and cached.quotas
    assert [f.name for f in dataclasses.fields(CheckOutcome)] == [
        "status_code",
        "message",
        "valid_duration",
        "valid_use_count",
        "references",
        "route",
        "quotas",
        "decided_by",
        "dry_run",
    ], "a new field must be copied by without_quotas too"
