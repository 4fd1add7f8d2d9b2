"""Broken configs: one file per kind of error in rules_bad/, each with its exact messages.

Every fixture starts with one ``# expect: <message>`` line per problem, in the order reported,
with paths relative to the fixture's directory. Each fixture is loaded alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mixer.config import check_config
from tests.unit.config_helpers import TEST_ADAPTERS, relative

FIXTURES = sorted((Path(__file__).parent / "rules_bad").glob("*.yaml"))
_EXPECT = "# expect: "


def expected_messages(fixture: Path) -> list[str]:
    lines = fixture.read_text(encoding="utf-8").splitlines()
    return [line[len(_EXPECT) :] for line in lines if line.startswith(_EXPECT)]


def test_there_is_a_fixture_per_error_kind() -> None:
    assert len(FIXTURES) >= 40
    for fixture in FIXTURES:
        assert expected_messages(fixture), f"{fixture.name} has no '# expect:' line"


@pytest.mark.parametrize("fixture", FIXTURES, ids=[fixture.stem for fixture in FIXTURES])
def test_broken_config_reports_exactly_the_expected_problems(fixture: Path, tmp_path: Path) -> None:
    shutil.copy(fixture, tmp_path)
    report = check_config(tmp_path, TEST_ADAPTERS)
    assert report.snapshot is None
    found = [relative(problem, tmp_path).replace(f"{tmp_path}/", "") for problem in report.problems]
    assert found == expected_messages(fixture)
