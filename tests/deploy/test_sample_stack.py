"""The compose stack's sample app and load generator, run for real on loopback (no Envoy: the
load generator talks to the app directly, so policy and rate limits do not apply here)."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.mixer_process import ROOT, free_port

pytestmark = pytest.mark.deploy

APP = ROOT / "deploy" / "sample-app" / "app.py"
LOADGEN = ROOT / "deploy" / "loadgen" / "loadgen.py"


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


loadgen = _module(LOADGEN, "deploy_loadgen")


@pytest.fixture
def app_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(APP), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
                    assert json.load(resp) == {"status": "ok"}
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "sample app did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_sample_app_routes(app_url: str) -> None:
    request = urllib.request.Request(
        f"{app_url}/api/items/7", headers={"x-mixer-policy": "checked"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert json.load(resp) == {"id": 7, "name": "item-7", "x-mixer-policy": "checked"}
    assert loadgen.send(app_url, loadgen.Request("user", "/api/items/101")) == 404
    assert loadgen.send(app_url, loadgen.Request("user", "/nowhere")) == 404
    flaky = Counter(loadgen.send(app_url, loadgen.Request("user", "/api/flaky")) for _ in range(10))
    assert flaky == {200: 8, 503: 2}
    started = time.monotonic()
    assert loadgen.send(app_url, loadgen.Request("user", "/api/slow")) == 200
    assert time.monotonic() - started >= 0.05


def test_loadgen_mix_has_allowed_denied_and_limited_kinds() -> None:
    rng = random.Random(7)
    kinds = Counter(loadgen.pick(rng).kind for _ in range(2000))
    # Weights 55 / 10 / 25 / 10 (within a few percent for 2000 draws).
    assert abs(kinds["user"] / 2000 - 0.55) < 0.04
    assert abs(kinds["scraper"] / 2000 - 0.10) < 0.03
    assert abs(kinds["batch"] / 2000 - 0.25) < 0.04
    assert abs(kinds["oncall"] / 2000 - 0.10) < 0.03
    scraper = next(r for r in (loadgen.pick(rng) for _ in range(100)) if r.kind == "scraper")
    assert scraper.headers["user-agent"].startswith("BadBot/")  # rules/policy.yaml blocks ^BadBot/
    batch = next(r for r in (loadgen.pick(rng) for _ in range(100)) if r.kind == "batch")
    assert batch.headers["x-user-id"] == "batch-job"  # deploy/mixer/ratelimit.yaml: 2 a second


def test_loadgen_runs_at_its_rate_and_stops(app_url: str) -> None:
    started = time.monotonic()
    stats = loadgen.run(app_url, rps=40, duration_s=2.0, rng=random.Random(3), report_s=60)
    elapsed = time.monotonic() - started
    total = sum(stats.counts.values())
    assert 60 <= total <= 90, stats.counts  # 40 a second for 2 seconds
    assert elapsed < 8
    statuses = stats.by_status()
    assert statuses.get(200, 0) > 0 and 0 not in statuses
