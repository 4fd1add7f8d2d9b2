"""`python -m bench.work`: work per call counted through the real servicers."""

from __future__ import annotations

from bench import work


def test_counts_grow_with_the_rules_a_check_runs_and_compare_as_ratios() -> None:
    empty, policy = work.count(["check-0", "check-50"], calls=5, warmup=5, top=3)
    assert 0 < empty.instructions < policy.instructions
    assert 0 < empty.python_calls < policy.python_calls
    assert policy.c_calls > 0
    assert len(policy.top) == 3
    assert policy.top[0][1] >= policy.top[-1][1]
    table = work.format_table([policy], [empty])
    assert f"{policy.instructions / empty.instructions:.3f}x" in table


def test_report_counts_are_per_entry() -> None:
    (report,) = work.count(["report-100"], calls=2, warmup=2)
    assert report.per == "entry"
    assert 0 < report.instructions < 50_000  # a whole batch would be 100 times more


def test_als_counts_are_per_entry_through_the_stream_servicer() -> None:
    (als,) = work.count(["als"], calls=2, warmup=2, top=40)
    assert als.per == "entry"
    assert 0 < als.instructions < 20_000  # a whole message would be 20 times more
    # The entries went through the ALS conversion and on to the report rules.
    functions = [where for where, _ in als.top]
    assert any(where.endswith("envoy.py:_entries") for where in functions), functions
    assert any(where.endswith("prometheus.py:record") for where in functions), functions
