"""The Grafana dashboards, proven against a real Prometheus scraping a real mixer.

mixer runs as a subprocess on the shipped rules plus the compose stack's Redis quota and Envoy
rate-limit configs (``deploy/mixer/``), with a real redis-server; Debian's ``prometheus`` scrapes
its admin and adapter ports every second with the jobs of ``deploy/prometheus.yml``. Traffic goes
through every API (`tests.e2e.traffic`). Then every PromQL expression of every panel of every
dashboard in ``deploy/grafana/dashboards/`` (ours and Istio's three) runs through Prometheus's
HTTP API, with the template variables resolved from the data as Grafana would, and must return
at least one series with a finite value. A table of every query and its series count is printed
(``pytest -s``) and written to ``dashboard-queries.txt`` in the test's tmp dir; the traffic
dashboard is drawn to ``traffic-dashboard.png`` there too (and to ``$MIXER_DASHBOARD_PNG`` when
set, which is how ``docs/traffic-dashboard.png`` is made).

A missing ``prometheus`` binary is a failure, never a skip.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import grafana, traffic
from tests.e2e.prometheus import PrometheusServer, prometheus_binary
from tests.e2e.render import render
from tests.mixer_process import ROOT, MixerProcess, free_port
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
SCRAPE_INTERVAL_S = 1.0
STEP_S = 1.0
TRAFFIC_S = float(os.environ.get("MIXER_E2E_TRAFFIC_SECONDS", "20"))
JOBS = ("mixer", "mixer-adapter")

# A redisquota handler whose Redis is down, so the Redis-error and dispatch-error panels show
# real errors (the port is free: nothing listens there).
OUTAGE_YAML = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata:
  name: redisdown
  namespace: istio-system
spec:
  compiledAdapter: redisquota
  params:
    redisServerUrl: 127.0.0.1:{port}
    timeout: 50ms
    quotas:
    - name: outagequota.instance.istio-system
      maxAmount: 1000
      validDuration: 1s
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata:
  name: outagequota
  namespace: istio-system
spec:
  compiledTemplate: quota
  params:
    dimensions:
      destination: destination.labels["app"] | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: outage
  namespace: istio-system
spec:
  actions:
  - handler: redisdown
    instances: [outagequota]
"""


@dataclass(frozen=True)
class ExpectedEmpty:
    """Istio corpus queries that cannot return data against mixer, and why.

    The test asserts they ARE empty (so a stale entry fails), and, where there is one, that the
    `witness` query (the same question with the value mixer really reports) has data.
    """

    reason: str
    applies: Callable[[str], bool]
    witness: Callable[[str], str] | None


def _source_mtls(expr: str) -> bool:
    return any(
        'reporter="source"' in s and 'connection_security_policy="mutual_tls"' in s
        for s in re.findall(r"\{[^{}]*\}", expr)
    )


EXPECTED_EMPTY = (
    ExpectedEmpty(
        "Galley's config counters: Galley (Istio's config server) is not part of mixer",
        lambda expr: "galley_" in expr,
        None,
    ),
    ExpectedEmpty(
        'Istio 1.4 telemetry sets connection_security_policy="unknown" whenever '
        'reporter="source" (rules/telemetry.yaml, as Istio\'s Helm chart): empty in Istio too',
        _source_mtls,
        lambda expr: expr.replace(
            'connection_security_policy="mutual_tls"', 'connection_security_policy="unknown"'
        ),
    ),
)


@dataclass
class Row:
    """One evaluated panel query."""

    query: grafana.PanelQuery
    expr: str
    series: int = 0
    with_data: int = 0
    peak: float = math.nan
    error: str = ""
    expected_empty: ExpectedEmpty | None = None
    witness_series: int = 0

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        if self.expected_empty is not None:
            ok = self.with_data == 0 and (
                self.expected_empty.witness is None or self.witness_series > 0
            )
            return "n/a" if ok else "STALE"
        return "ok" if self.with_data else "EMPTY"


def _finite_values(series: dict[str, Any]) -> list[float]:
    points = series["values"] if "values" in series else [series["value"]]
    return [float(v) for _, v in points if math.isfinite(float(v))]


def _with_data(result: list[dict[str, Any]]) -> int:
    return sum(1 for series in result if _finite_values(series))


def _peak(result: list[dict[str, Any]]) -> float:
    values = [v for series in result for v in _finite_values(series)]
    return max(values) if values else math.nan


def mixer_config(directory: Path, redis: RedisServer) -> Path:
    """rules/ (minus the in-memory quota) + deploy/mixer's Redis quota and rate limits + the
    outage handler. The Redis address is the test's instead of the stack's ``redis:6379``."""
    directory.mkdir()
    for name in ("attributes.yaml", "policy.yaml", "telemetry.yaml"):
        shutil.copy(ROOT / "rules" / name, directory / name)
    shutil.copy(ROOT / "deploy" / "mixer" / "ratelimit.yaml", directory / "ratelimit.yaml")
    quota = (ROOT / "deploy" / "mixer" / "quota-redis.yaml").read_text()
    assert "redisServerUrl: redis:6379" in quota
    quota = quota.replace("redisServerUrl: redis:6379", f"redisServerUrl: {redis.address}")
    (directory / "quota-redis.yaml").write_text(quota)
    (directory / "outage.yaml").write_text(OUTAGE_YAML.format(port=free_port()))
    return directory


def evaluate(
    prom: PrometheusServer, path: Path, start: float, end: float
) -> tuple[dict[str, Any], list[Row], dict[tuple[int, str], list[dict[str, Any]]]]:
    """Resolve the dashboard's variables and run every panel query over [start, end]."""
    board = grafana.load(path)
    window = end - start
    fixed = grafana.builtins(window, STEP_S, SCRAPE_INTERVAL_S)
    variables = grafana.resolve_variables(board, prom, start, end, fixed)
    values = {**fixed, **{name: v.text for name, v in variables.items()}}
    corpus = path.name.startswith("istio-")
    rows: list[Row] = []
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for query in grafana.panel_queries(board, path.stem):
        row = Row(query, grafana.substitute(query.expr, values))
        try:
            if query.instant:
                result = prom.query(row.expr, end)
            else:
                result = prom.query_range(row.expr, start, end, STEP_S)
        except Exception as exc:
            row.error = str(exc)
            rows.append(row)
            continue
        results[(query.panel_id, query.ref_id)] = result
        row.series = len(result)
        row.with_data = _with_data(result)
        row.peak = _peak(result)
        if corpus:
            row.expected_empty = next((e for e in EXPECTED_EMPTY if e.applies(row.expr)), None)
        if row.expected_empty is not None and row.expected_empty.witness is not None:
            witness = row.expected_empty.witness(row.expr)
            row.witness_series = _with_data(prom.query_range(witness, start, end, STEP_S))
        rows.append(row)
    return board, rows, results


def table(rows: list[Row]) -> str:
    """Every query: dashboard, panel, target, series returned, series with data, status."""
    lines = [
        f"{'dashboard':<26} {'panel':>5} {'ref':<3} {'series':>6} {'data':>5} {'status':<6} title",
        "-" * 100,
    ]
    for row in rows:
        q = row.query
        lines.append(
            f"{q.dashboard:<26} {q.panel_id:>5} {q.ref_id:<3} {row.series:>6} "
            f"{row.with_data:>5} {row.status:<6} {q.panel_title}"
        )
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    lines.append("-" * 100)
    lines.append(
        f"{len(rows)} queries in {len({r.query.dashboard for r in rows})} dashboards: "
        + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    )
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    """The expanded expressions, errors and reasons, for the file next to the table."""
    out = []
    for row in rows:
        out.append(
            f"[{row.status}] {row.query.name}: {row.series} series, {row.with_data} with data"
        )
        out.append(f"    {row.expr}")
        if row.error:
            out.append(f"    error: {row.error}")
        if row.expected_empty is not None:
            out.append(f"    expected empty: {row.expected_empty.reason}")
            if row.expected_empty.witness is not None:
                out.append(f"    witness query: {row.witness_series} series with data")
    return "\n".join(out)


def test_every_dashboard_query_returns_data(
    start_mixer: Callable[..., MixerProcess], redis_server: RedisServer, tmp_path: Path
) -> None:
    prometheus_binary()  # fail now, before anything starts, if it is missing
    config = mixer_config(tmp_path / "config", redis_server)
    mixer = start_mixer(config, extra_args=["--redis-url", redis_server.url])
    prom = PrometheusServer(
        tmp_path / "prometheus",
        {
            "mixer": f"127.0.0.1:{mixer.admin_port}",
            "mixer-adapter": f"127.0.0.1:{mixer.metrics_port}",
        },
        SCRAPE_INTERVAL_S,
    ).start()
    try:
        prom.wait_for_scrape_after(time.time(), list(JOBS), timeout_s=15)
        start = time.time()
        outcomes = traffic.drive(mixer.address, TRAFFIC_S)
        end = time.time()
        prom.wait_for_scrape_after(end, list(JOBS), timeout_s=10)

        counts = outcomes.counts
        print("\ntraffic outcomes:", {api: dict(c) for api, c in sorted(counts.items())})
        assert not outcomes.errors, "\n".join(outcomes.errors[:20])
        assert counts["mixer.check"]["allowed"] > 0
        assert counts["mixer.check"]["denied:PERMISSION_DENIED"] > 0
        assert counts["mixer.check"]["denied:RESOURCE_EXHAUSTED"] > 0
        assert counts["mixer.check"]["backend-unavailable"] > 0  # the outage quota, at least
        assert counts["ext_authz"]["allowed"] > 0 and counts["ext_authz"]["denied"] > 0
        assert counts["rls"]["alice:OK"] > 0 and counts["rls"]["alice:OVER_LIMIT"] > 0
        assert counts["rls"]["batch-job:OVER_LIMIT"] > 0
        assert counts["rls"]["oncall:OK"] > 0 and counts["rls"]["oncall:OVER_LIMIT"] == 0
        assert counts["als"]["streams"] > 0 and counts["mixer.report"]["batches"] > 0

        window = f"{round(end - start)}s"
        scrapes = {
            "slowest scrape": f"max by (job) (max_over_time(scrape_duration_seconds[{window}]))",
            "failed scrapes": f"sum by (job) (count_over_time((up == 0)[{window}:1s]))",
        }
        for title, expr in scrapes.items():
            found = {r["metric"]["job"]: r["value"][1] for r in prom.query(expr, end)}
            print(f"{title}: {found or 'none'}")

        rows: list[Row] = []
        traffic_board: dict[str, Any] = {}
        traffic_results: dict[tuple[int, str], list[dict[str, Any]]] = {}
        paths = sorted(DASHBOARDS.glob("*.json"))
        assert len(paths) == 6, paths
        for path in paths:
            board, board_rows, results = evaluate(prom, path, start, end)
            rows += board_rows
            if path.stem == "mixer-traffic":
                traffic_board, traffic_results = board, results
    finally:
        prom.stop()

    report = table(rows)
    print("\n" + report)
    (tmp_path / "dashboard-queries.txt").write_text(report + "\n\n" + details(rows) + "\n")
    print(f"details: {tmp_path / 'dashboard-queries.txt'}")

    png = tmp_path / "traffic-dashboard.png"
    subtitle = (
        f"{TRAFFIC_S:.0f} s of test traffic, Prometheus scraping every {SCRAPE_INTERVAL_S:g} s"
    )
    render(traffic_board, traffic_results, png, subtitle)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    if os.environ.get("MIXER_DASHBOARD_PNG"):
        shutil.copy(png, os.environ["MIXER_DASHBOARD_PNG"])

    bad = [row for row in rows if row.status not in ("ok", "n/a")]
    assert not bad, f"{len(bad)} panel queries failed:\n" + details(bad)
    # Errors really happened and were counted: the Redis-errors panel is not just zeros.
    redis_errors = next(
        r
        for r in rows
        if r.query.dashboard == "mixer-policy" and "Redis errors" in r.query.panel_title
    )
    assert redis_errors.peak > 0, redis_errors
