"""A real Prometheus server for the end-to-end tests: Debian's ``prometheus`` binary on loopback.

The scrape config is ``deploy/prometheus.yml`` itself (the compose stack's), with the global
scrape interval shortened and each kept job's targets pointed at the ports of the processes under
test; jobs the test does not run (Envoy, the OTel collector) are dropped. So the job names the
dashboards select on are the ones the stack really uses.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.mixer_process import ROOT, free_port

DEPLOY_CONFIG = ROOT / "deploy" / "prometheus.yml"
_START_TIMEOUT_S = 30.0
_RFC3339 = re.compile(
    r"(?P<whole>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?(?P<zone>Z|[+-]\d\d:\d\d)$"
)


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or an API call failed."""


def prometheus_binary() -> str:
    """The ``prometheus`` executable; raises (never skips) when it is not installed."""
    found = shutil.which("prometheus")
    if not found:
        raise PrometheusError(
            "no `prometheus` binary on PATH: install Debian's package "
            "(`apt-get install -y prometheus`; `./dev test` does it)"
        )
    return found


def scrape_config(targets: Mapping[str, str], interval_s: float) -> dict[str, Any]:
    """``deploy/prometheus.yml`` with only the jobs in `targets` (job name -> host:port)."""
    config: dict[str, Any] = yaml.safe_load(DEPLOY_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    missing = set(targets) - set(jobs)
    if missing:
        raise PrometheusError(f"deploy/prometheus.yml has no job(s) {sorted(missing)}")
    interval = f"{int(interval_s * 1000)}ms"
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["scrape_configs"] = [
        {**jobs[name], "static_configs": [{"targets": [target]}]}
        for name, target in targets.items()
    ]
    return config


class PrometheusServer:
    """One ``prometheus`` process with its own TSDB directory; `query*` use its HTTP API."""

    def __init__(self, workdir: Path, targets: Mapping[str, str], interval_s: float = 1.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.interval_s = interval_s
        self._dir = workdir
        self._dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self._dir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(scrape_config(targets, interval_s)))
        self.log_path = self._dir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        """Start and wait until ``/-/ready`` answers 200; raise with the log when it does not."""
        args = [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self._dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {self._proc.returncode}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus not ready within {_START_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        self._proc = None

    def api(self, path: str, params: Mapping[str, str | list[str]]) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` or raises with Prometheus's error."""
        query = urllib.parse.urlencode(params, doseq=True)
        url = f"{self.url}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
            raise PrometheusError(f"{path} {dict(params)}: {body.get('error', err)}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {body}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant query: the result vector (or a scalar as a one-sample vector)."""
        data = self.api("query", {"query": expr, "time": f"{at:.3f}"})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query, as Grafana runs a time-series panel: a matrix."""
        data = self.api(
            "query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        """The label sets of the series `match` selects in [start, end]."""
        result: list[dict[str, str]] = self.api(
            "series", {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )
        return result

    def label_values(self, label: str) -> list[str]:
        result: list[str] = self.api(f"label/{label}/values", {})
        return result

    def wait_for_scrape_after(self, moment: float, jobs: list[str], timeout_s: float) -> None:
        """Wait until every job's targets were scraped (successfully) after `moment`."""
        deadline = time.monotonic() + timeout_s
        pending = list(jobs)
        while time.monotonic() < deadline:
            targets = self.api("targets", {"state": "active"})["activeTargets"]
            pending = [
                job
                for job in jobs
                if not any(
                    t["labels"].get("job") == job
                    and t["health"] == "up"
                    and _rfc3339_to_epoch(t["lastScrape"]) > moment
                    for t in targets
                )
            ]
            if not pending:
                return
            time.sleep(0.2)
        raise PrometheusError(f"jobs {pending} not scraped after {moment} within {timeout_s}s")


def _rfc3339_to_epoch(text: str) -> float:
    """Prometheus's ``lastScrape`` (RFC 3339, up to nanoseconds) as seconds since the epoch."""
    match = _RFC3339.match(text)
    if match is None:
        raise PrometheusError(f"unexpected timestamp {text!r}")
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    whole = datetime.datetime.fromisoformat(match["whole"] + zone).timestamp()
    return whole + float("0" + (match["fraction"] or ""))
