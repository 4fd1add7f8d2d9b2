"""envoyproxy/ratelimit config files as its loader reads them (``src/config/config_impl.go``):
scalars as text, every accepted key, the unit rules of unlimited limits, share_threshold's
wildcard rule, and domains merged across files only behind the setting."""

from __future__ import annotations

from pathlib import Path

from mixer.config import check_config
from mixer.config.model import RateLimitConfig
from tests.unit.config_helpers import TEST_ADAPTERS, problems_of, write


def only_config(directory: Path, *, merge: bool = False) -> RateLimitConfig:
    report = check_config(directory, TEST_ADAPTERS, merge_ratelimit_domains=merge)
    assert report.problems == ()
    assert report.snapshot is not None
    (config,) = report.snapshot.rate_limit_configs
    return config


def test_unquoted_numbers_booleans_and_dates_are_read_as_written(tmp_path: Path) -> None:
    # yaml.v2 fills a string field with the scalar's source text
    write(
        tmp_path,
        "rl.yaml",
        """
        domain: 42
        descriptors:
          - key: 404
            value: 200
            rate_limit: {unit: second, requests_per_unit: 1, name: 7}
          - key: flag
            value: true
            rate_limit: {unit: second, requests_per_unit: 1}
          - key: flag
            value: yes
            rate_limit: {unit: second, requests_per_unit: 1}
          - key: hex
            value: 0x1F
            rate_limit: {unit: second, requests_per_unit: 1}
          - key: day
            value: 2024-01-01
            rate_limit: {unit: second, requests_per_unit: 1}
        """,
    )
    config = only_config(tmp_path)
    assert config.domain == "42"
    assert [(d.key, d.value) for d in config.descriptors] == [
        ("404", "200"),
        ("flag", "true"),
        ("flag", "yes"),
        ("hex", "0x1F"),
        ("day", "2024-01-01"),
    ]
    assert config.descriptors[0].rate_limit is not None
    assert config.descriptors[0].rate_limit.name == "7"


def test_a_float_is_not_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        "rl.yaml",
        """
        domain: d
        descriptors:
          - key: k
            value: 1.5
            rate_limit: {unit: second, requests_per_unit: 1}
        """,
    )
    assert problems_of(tmp_path) == [
        "rl.yaml:4: ratelimit/d: descriptors[0].value: expected a string, got a number (1.5)"
    ]


def test_every_descriptor_key_ratelimit_accepts_is_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        "rl.yaml",
        """
        domain: d
        descriptors:
          - key: path
            value: "/api/*"
            share_threshold: true
            value_to_metric: true
            quota_mode: true
            detailed_metric: true
            metadata: {team: core, weight: 1.5, nested: {a: [1, 2]}}
            rate_limit: {unit: minute, requests_per_unit: 5}
        """,
    )
    (d,) = only_config(tmp_path).descriptors
    assert (d.share_threshold, d.value_to_metric, d.quota_mode, d.detailed_metric) == (
        True,
        True,
        True,
        True,
    )
    assert d.metadata == {"team": "core", "weight": 1.5, "nested": {"a": [1, 2]}}


def test_share_threshold_needs_a_wildcard_value(tmp_path: Path) -> None:
    write(
        tmp_path,
        "rl.yaml",
        """
        domain: d
        descriptors:
          - key: path
            value: /api
            share_threshold: true
            rate_limit: {unit: minute, requests_per_unit: 5}
        """,
    )
    assert problems_of(tmp_path) == [
        "rl.yaml:5: ratelimit/d: descriptors[0].share_threshold: share_threshold can only be "
        "used with wildcard values (containing '*'), but found key 'path_/api'"
    ]


def test_unlimited_ignores_a_unit_that_is_not_valid_and_rejects_a_valid_one(
    tmp_path: Path,
) -> None:
    # config_impl.go: with unlimited, only a *valid* unit is an error
    write(
        tmp_path,
        "rl.yaml",
        """
        domain: d
        descriptors:
          - key: a
            rate_limit: {unlimited: true, unit: unknown}
          - key: b
            rate_limit: {unlimited: true, unit: fortnight}
          - key: c
            rate_limit: {unlimited: true, requests_per_unit: 10}
        """,
    )
    config = only_config(tmp_path)
    for d in config.descriptors:
        assert d.rate_limit is not None
        assert d.rate_limit.unlimited and d.rate_limit.unit == ""
    write(
        tmp_path,
        "rl.yaml",
        """
        domain: d
        descriptors:
          - key: a
            rate_limit: {unlimited: true, unit: HOUR}
          - key: b
            rate_limit: {unit: unknown, requests_per_unit: 1}
        """,
    )
    assert problems_of(tmp_path) == [
        "rl.yaml:4: ratelimit/d: descriptors[0].rate_limit.unit: should not specify rate limit "
        "unit when unlimited",
        "rl.yaml:6: ratelimit/d: descriptors[1].rate_limit.unit: invalid rate limit unit "
        "'unknown' (expected second, minute, hour, day, week, month, year)",
    ]


SPLIT_A = """
domain: edge
descriptors:
  - key: path
    rate_limit: {unit: day, requests_per_unit: 1}
"""
SPLIT_B = """
domain: edge
descriptors:
  - key: tenant
    rate_limit: {unit: day, requests_per_unit: 2}
"""


def test_one_domain_in_two_files_is_an_error_unless_merging(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SPLIT_A)
    write(tmp_path, "b.yaml", SPLIT_B)
    assert problems_of(tmp_path) == [
        f"b.yaml:1: ratelimit/edge: domain: duplicate domain 'edge' (also at {tmp_path}/a.yaml:1)"
    ]
    config = only_config(tmp_path, merge=True)
    assert [d.key for d in config.descriptors] == ["path", "tenant"]  # file order


def test_merging_rejects_a_top_level_descriptor_written_in_two_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SPLIT_A)
    write(tmp_path, "b.yaml", SPLIT_B + "  - key: path\n    rate_limit: {unlimited: true}\n")
    report = check_config(tmp_path, TEST_ADAPTERS, merge_ratelimit_domains=True)
    assert [str(p) for p in report.problems] == [
        f"{tmp_path}/b.yaml:5: ratelimit/edge: descriptors[1]: duplicate descriptor 'path' in "
        f"domain 'edge' (also at {tmp_path}/a.yaml:3)"
    ]
