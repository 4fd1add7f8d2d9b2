"""The server-side check cache, observed through its metric over a real socket."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mixer.client import MixerClient
from tests.integration.live import metric, ratings, write_rule
from tests.mixer_process import MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


def cache(mixer: MixerProcess) -> tuple[float, float]:
    return (
        metric(mixer, "mixer_check_cache_total", result="hit"),
        metric(mixer, "mixer_check_cache_total", result="miss"),
    )


def test_check_cache_hits_misses_and_is_emptied_by_a_swap(
    start_mixer: Start, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rule(rules)
    mixer = start_mixer(rules)
    with MixerClient(mixer.address) as client:
        assert client.check(ratings("v3")).status_code == 7
        assert cache(mixer) == (0, 1)
        assert client.check(ratings("v3")).status_code == 7  # identical: a hit
        assert cache(mixer) == (1, 1)
        # differs only in request.path, which the rule did not read: still a hit
        assert client.check(ratings("v3", **{"request.path": "/other"})).status_code == 7
        assert cache(mixer) == (2, 1)
        # differs in source.labels["version"], which the rule read: a miss
        assert client.check(ratings("v2")).status_code == 0
        assert cache(mixer) == (2, 2)
        # a config swap empties the cache: the cached denial (valid 5 s) is not served again
        before = mixer.debug_config()["revision"]
        write_rule(rules, match='destination.labels["app"] == "nothing"')
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and mixer.debug_config()["revision"] == before:
            time.sleep(0.02)
        assert mixer.debug_config()["revision"] != before
        assert client.check(ratings("v3")).status_code == 0
        assert cache(mixer) == (2, 3)
        assert client.check(ratings("v3")).status_code == 0
        assert cache(mixer) == (3, 3)
