"""A dry-run deny rule under load on a real server: it denies nothing, and its counter equals
the number of requests it would have denied (check-cache hits included)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mixer.client import MixerClient
from tests.integration.live import DENY, RATINGS_FROM_V3, metric, ratings
from tests.mixer_process import MixerProcess

REQUESTS = 1500
THREADS = 6
TIME_LIMIT = 90.0
RULE = "deny.rule.istio-system"


def test_dry_run_rule_denies_nothing_and_counts_exactly(
    start_mixer: Callable[..., MixerProcess], tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    text = DENY.format(ns="istio-system", match=RATINGS_FROM_V3, lang="CEXL", message="no")
    text = text.replace(
        'annotations: {policy.istio.io/lang: "CEXL"}',
        'annotations: {policy.istio.io/lang: "CEXL", istio.io/dry-run: "true"}',
    )
    (config / "deny.yaml").write_text(text)
    mixer = start_mixer(config)
    deadline = time.monotonic() + TIME_LIMIT
    # Every third request comes from reviews v3; paths repeat, so the check cache answers many.
    plan = [("v3" if i % 3 == 0 else "v2", f"/ratings/{i % 40}") for i in range(REQUESTS)]

    def send(chunk: list[tuple[str, str]]) -> list[int]:
        codes = []
        with MixerClient(mixer.address, timeout=10) as client:
            for version, path in chunk:
                if time.monotonic() > deadline:
                    break
                codes.append(client.check(ratings(version, **{"request.path": path})).status_code)
        return codes

    with ThreadPoolExecutor(THREADS) as pool:
        answers = [
            c for codes in pool.map(send, [plan[i::THREADS] for i in range(THREADS)]) for c in codes
        ]
    assert len(answers) == REQUESTS, "load did not finish within the time limit"
    assert set(answers) == {0}, "a dry-run rule denied a request"
    would_deny = sum(1 for version, _ in plan if version == "v3")
    assert metric(mixer, "mixer_check_dry_run_total", rule=RULE, result="would_deny") == would_deny
    assert metric(mixer, "mixer_check_dry_run_total", rule=RULE, result="allow") == 0
    assert metric(mixer, "mixer_check_cache_total", result="hit") > 0
    # The same rule enforced (annotation removed) denies exactly those requests.
    (config / "deny.yaml").write_text(
        text.replace('istio.io/dry-run: "true"', 'istio.io/dry-run: "false"')
    )
    for _ in range(100):
        with MixerClient(mixer.address, timeout=10) as client:
            if client.check(ratings("v3")).status_code == 7:
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the enforced rule never denied")
