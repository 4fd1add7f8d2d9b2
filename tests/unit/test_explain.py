"""Explained decisions: per rule, matched or not and the first failing conjunct with the values it
read; referenced attributes; the handler that answered. On the shipped rules, built for real."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mixer.cli import main as cli_main
from mixer.config.values import bag_from_data
from mixer.runtime.build import build_runtime, load_snapshot
from mixer.runtime.explain import Explanation, conjuncts, explain_check
from mixer.runtime.runtime import RuntimeHolder
from mixer.telemetry import ServerMetrics

ROOT = Path(__file__).resolve().parents[2]


def _explain(attributes: Mapping[str, object]) -> Explanation:
    async def run() -> Explanation:
        snapshot = load_snapshot(ROOT / "rules")
        runtime = await build_runtime(
            snapshot, ServerMetrics.create(), revision="t", metrics_registry=CollectorRegistry()
        )
        holder = RuntimeHolder(runtime)
        try:
            bag = bag_from_data(attributes, snapshot.vocabulary)
            return explain_check(runtime, bag, await runtime.dispatcher.check(bag))
        finally:
            await holder.close()

    return asyncio.run(run())


def test_conjuncts_respect_quotes_and_parentheses() -> None:
    text = 'a == "x && y" && (b || c && d) && f(g, "h)") && e'
    assert conjuncts(text) == ['a == "x && y"', "(b || c && d)", 'f(g, "h)")', "e"]
    assert conjuncts("a || b") == ["a || b"]


def test_a_denial_names_its_rule_and_handler() -> None:
    why = _explain(
        {
            "context.protocol": "http",
            "destination.labels": {"app": "ratings"},
            "source.labels": {"version": "v3"},
        }
    )
    assert why.code == "PERMISSION_DENIED"
    assert why.decided_by == "denyreviewsv3.rule.istio-system"
    assert why.handlers == ["denyreviewsv3handler.handler.istio-system"]
    rules = {r.rule: r for r in why.rules}
    assert rules["denyreviewsv3.rule.istio-system"].matched
    assert "destination.labels[app]" in why.referenced
    assert "source.labels[version]" in why.referenced


def test_a_rule_that_did_not_match_shows_the_failing_conjunct() -> None:
    why = _explain(
        {
            "context.protocol": "http",
            "destination.labels": {"app": "ratings"},
            "source.labels": {"version": "v2"},
            "request.path": "/static/x",
        }
    )
    assert why.code == "OK" and why.decided_by == ""
    rules = {r.rule: r for r in why.rules}
    deny = rules["denyreviewsv3.rule.istio-system"]
    assert not deny.matched
    # The first conjunct held; the second is the one that failed, with what it read.
    assert deny.failed_conjunct == 'source.labels["version"] == "v3"'
    assert deny.values == {"source.labels": {"version": "v2"}}
    tag = rules["tagallowed.rule.istio-system"]
    assert not tag.matched and tag.values == {"request.path": "/static/x"}
    assert rules["blockagents.rule.istio-system"].matched
    text = why.to_text()
    assert "not matched denyreviewsv3.rule.istio-system: " in text
    assert "source.labels={'version': 'v2'}" in text


def test_an_absent_attribute_is_shown_absent() -> None:
    why = _explain({"context.protocol": "tcp"})
    deny = {r.rule: r for r in why.rules}["denyreviewsv3.rule.istio-system"]
    assert deny.failed_conjunct == 'destination.labels["app"] == "ratings"'
    assert deny.values == {"destination.labels": "<absent>"}
    assert "context.protocol" in why.referenced


def test_check_explain_command(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        [
            "check",
            "--explain",
            "--config-dir",
            str(ROOT / "rules"),
            "--attr",
            "context.protocol=http",
            "--attr",
            "request.useragent=sqlmap",
        ]
    )
    out = capsys.readouterr().out
    assert code == 3
    assert out.startswith("answer: PERMISSION_DENIED")
    assert "decided by: blockagents.rule.istio-system" in out
    assert "handlers: blockedagents.handler.istio-system" in out
    assert "request.useragent" in out.splitlines()[-1]


def test_mixer_test_verbose_explains(capsys: pytest.CaptureFixture[str]) -> None:
    policy = ROOT / "rules" / "tests" / "policy_test.yaml"
    assert cli_main(["test", str(ROOT / "rules"), str(policy), "-v", "--run", "v3 may not"]) == 0
    out = capsys.readouterr().out
    assert "decided by: denyreviewsv3.rule.istio-system" in out
    assert "not matched tagallowed.rule.istio-system" in out
