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


SHADOW_QUOTA = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: q, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params: {quotas: [{name: rq.instance.istio-system, maxAmount: 2, validDuration: 60s}]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: rq, namespace: istio-system}
spec: {compiledTemplate: quota, params: {dimensions: {path: request.path}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: newquota
  namespace: istio-system
  annotations: {istio.io/dry-run: "DRYQUOTA"}
spec:
  actions: [{handler: q, instances: [rq]}]
"""


def _quota_checks(directory: Path, count: int) -> tuple[list[int], str]:
    async def run() -> tuple[list[int], str]:
        metrics = ServerMetrics.create()
        runtime = await build_runtime(
            load_snapshot(directory), metrics, revision="t", metrics_registry=CollectorRegistry()
        )
        holder = RuntimeHolder(runtime)
        granted = []
        try:
            for i in range(count):
                outcome = await runtime.dispatcher.check(
                    Bag({"request.path": "/a"}), {"rq": QuotaRequest(1)}, f"id{i}"
                )
                granted.append(outcome.quotas["rq"].granted)
        finally:
            await holder.close()
        return granted, generate_latest(metrics.registry).decode()

    return asyncio.run(run())


def test_a_dry_run_quota_charges_a_shadow_bucket_and_never_denies(tmp_path: Path) -> None:
    directory = _dir(tmp_path, extra=SHADOW_QUOTA.replace('"DRYQUOTA"', '"true"'))
    assert validate_directory(directory) == []
    granted, metrics = _quota_checks(directory, 5)
    assert granted == [1, 1, 1, 1, 1]  # nothing decides the quota: granted in full
    rule = 'rule="newquota.rule.istio-system"'
    assert f'mixer_quota_dry_run_total{{result="granted",{rule}}} 2.0' in metrics
    assert f'mixer_quota_dry_run_total{{result="exhausted",{rule}}} 3.0' in metrics
    # Enforced, the same rule limits the same requests to 2.
    granted, metrics = _quota_checks(
        _dir(tmp_path, extra=SHADOW_QUOTA.replace('"DRYQUOTA"', '"false"')), 5
    )
    assert granted == [1, 1, 0, 0, 0]
    assert "mixer_quota_dry_run_total{" not in metrics


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
