"""The resource bounds of issue 20: each flag and MIXER_* variable reaches Settings, and workers."""

from __future__ import annotations

import dataclasses

import pytest

from mixer import cli
from mixer.config import source
from mixer.server import app, logs
from mixer.server.workers import worker_argv
from mixer.settings import Settings


def parse(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Settings:
    seen: list[Settings] = []

    async def fake_serve(settings: Settings, bridge: object = None) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(app, "serve", fake_serve)
    monkeypatch.setattr(logs, "configure", lambda *args: None)
    monkeypatch.setattr(source, "_max_nodes", source._max_nodes)  # restored after the test
    assert cli.main(argv) == 0
    return seen[0]


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = parse(monkeypatch, ["serve"])
    assert settings.check_cache_bytes == 64 * 1024 * 1024
    assert settings.max_series == 2000
    assert settings.max_quota_bucket_bytes == 64 * 1024 * 1024
    assert settings.max_config_nodes == 100_000
    assert (settings.admin_timeout, settings.admin_max_connections) == (10.0, 32)
    limits = settings.limits
    assert (limits.max_quotas, limits.max_descriptors) == (64, 64)
    assert (limits.max_descriptor_entries, limits.max_descriptor_bytes) == (16, 1024)
    assert limits.max_report_values == 100_000


def test_flags_and_environment_reach_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXER_MAX_SERIES", "77")
    monkeypatch.setenv("MIXER_MAX_DESCRIPTOR_BYTES", "300")
    settings = parse(
        monkeypatch,
        ["serve", "--check-cache-bytes", "123", "--max-quotas", "5", "--admin-timeout", "2.5",
         "--max-config-nodes", "999"],
    )  # fmt: skip
    assert settings.max_series == 77
    assert settings.limits.max_descriptor_bytes == 300
    assert settings.check_cache_bytes == 123
    assert settings.limits.max_quotas == 5
    assert settings.admin_timeout == 2.5
    assert source._max_nodes == 999


def test_workers_get_every_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    first = parse(
        monkeypatch,
        ["serve", "--check-cache-bytes", "123", "--max-series", "9", "--max-quotas", "5",
         "--max-quota-bucket-bytes", "4567", "--admin-max-connections", "3",
         "--max-report-values", "11", "--max-descriptor-entries", "2"],
    )  # fmt: skip
    argv = worker_argv(first, 0)
    again = parse(monkeypatch, argv[argv.index("serve") :])
    fields = ("check_cache_bytes", "max_series", "max_quota_bucket_bytes", "max_config_nodes",
              "admin_timeout", "admin_max_connections", "limits")  # fmt: skip
    for name in fields:
        assert getattr(again, name) == getattr(first, name), name
    assert dataclasses.asdict(again.limits) == dataclasses.asdict(first.limits)
