"""Dry-run rules (``istio.io/dry-run: "true"``): validated, reported by `mixer validate`,
evaluated and counted but never part of the answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mixer.attributes.bag import Bag
from mixer.cli import main as cli_main
from mixer.runtime.build import build_runtime, load_snapshot, validate_directory
from mixer.runtime.dispatcher import CheckOutcome, QuotaRequest
from mixer.runtime.runtime import RuntimeHolder
from mixer.telemetry import ServerMetrics

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: nope, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: go away}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: newdeny
  namespace: istio-system
  annotations: {istio.io/dry-run: "DRY"}
spec:
  match: request.path == "/admin"
  actions:
  - handler: nope
    instances: [nothing]
  requestHeaderOperations:
  - name: x-denied-soon
    values: ['"yes"']
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: olddeny, namespace: istio-system}
spec:
  match: request.path == "/root"
  actions:
  - handler: nope
    instances: [nothing]
"""


def _dir(tmp_path: Path, value: str = "true", extra: str = "") -> Path:
    directory = tmp_path / "config"
    directory.mkdir(exist_ok=True)
    (directory / "c.yaml").write_text(CONFIG.replace('"DRY"', f'"{value}"') + extra)
    return directory


def test_annotation_values_are_checked(tmp_path: Path) -> None:
    problems = validate_directory(_dir(tmp_path, "yes"))
    assert len(problems) == 1
    assert 'istio.io/dry-run must be "true" or "false"' in str(problems[0])
    assert validate_directory(_dir(tmp_path, "false")) == []
    assert not any(r.dry_run for r in load_snapshot(_dir(tmp_path, "false")).rules)


def test_dry_run_quota_actions_are_refused(tmp_path: Path) -> None:
    quota = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: q, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params: {quotas: [{name: rq.instance.istio-system, maxAmount: 1, validDuration: 1s}]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: rq, namespace: istio-system}
spec: {compiledTemplate: quota, params: {dimensions: {}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: quotarule
  namespace: istio-system
  annotations: {istio.io/dry-run: "true"}
spec:
  actions: [{handler: q, instances: [rq]}]
"""
    problems = validate_directory(_dir(tmp_path, extra=quota))
    assert any("quotarule" in str(p) and "shadow bucket" in str(p) for p in problems), problems


def test_validate_lists_dry_run_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _dir(tmp_path)
    assert cli_main(["validate", str(directory)]) == 0
    assert "dry-run (never denies): newdeny.rule.istio-system" in capsys.readouterr().out
    assert cli_main(["validate", str(directory), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] == ["newdeny.rule.istio-system"]


def _checks(directory: Path, bags: list[Bag]) -> tuple[list[CheckOutcome], str]:
    async def run() -> tuple[list[CheckOutcome], str]:
        metrics = ServerMetrics.create()
        runtime = await build_runtime(
            load_snapshot(directory), metrics, revision="t", metrics_registry=CollectorRegistry()
        )
        holder = RuntimeHolder(runtime)
        try:
            quotas: dict[str, QuotaRequest] = {}
            outcomes = [await runtime.dispatcher.check(bag, quotas) for bag in bags]
        finally:
            await holder.close()
        return outcomes, generate_latest(metrics.registry).decode()

    return asyncio.run(run())


def test_a_dry_run_denial_is_counted_not_answered(tmp_path: Path) -> None:
    bags = [Bag({"request.path": "/admin"})] * 3 + [Bag({"request.path": "/root"})]
    outcomes, metrics = _checks(_dir(tmp_path), bags)
    admin = outcomes[0]
    assert admin.status_code == 0 and admin.decided_by == "" and admin.message == ""
    # Its header operations are not applied either: they would change the answer.
    assert admin.route.request_header_operations == []
    # The rule that is enforced still denies.
    assert outcomes[-1].status_code == 7
    assert outcomes[-1].decided_by == "olddeny.rule.istio-system"
    line = 'mixer_check_dry_run_total{result="would_deny",rule="newdeny.rule.istio-system"} 3.0'
    assert line in metrics
    # Enforced, the same rule denies.
    outcomes, _ = _checks(_dir(tmp_path, "false"), bags[:1])
    assert outcomes[0].status_code == 7
    assert outcomes[0].route.request_header_operations == []


def test_mixer_test_can_expect_a_dry_run_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _dir(tmp_path)
    (directory / "c_test.yaml").write_text(
        "tests:\n"
        "- name: admin would be denied\n"
        "  check: {attributes: {request.path: /admin}}\n"
        "  expect:\n"
        "    code: OK\n"
        "    dry_run: {newdeny.rule.istio-system: would_deny}\n"
    )
    assert cli_main(["test", str(directory)]) == 0
    assert "1 passed" in capsys.readouterr().out
    # Enforced, the case fails: the answer is a denial and no dry-run result is left.
    (directory / "c.yaml").write_text(
        (directory / "c.yaml").read_text().replace('"true"', '"false"')
    )
    assert cli_main(["test", str(directory)]) == 1
    out = capsys.readouterr().out
    assert "+code: PERMISSION_DENIED" in out
    assert "+  newdeny.rule.istio-system: null" in out
