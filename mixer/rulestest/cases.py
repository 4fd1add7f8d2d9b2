"""Test files -> typed cases, every shape error reported with its file and case."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixer.config.source import TEST_FILE_SUFFIXES


def is_test_file(path: Path) -> bool:
    """Whether `path` names a rule test file (which is not config)."""
    return path.name.endswith(TEST_FILE_SUFFIXES)


class TestFileError(Exception):
    """A test file that cannot be read or does not follow the schema."""

    __test__ = False  # not a pytest class


class Kind(enum.Enum):
    """What a case sends."""

    CHECK = "check"
    REPORT = "report"
    AUTHZ = "authz"
    RATELIMIT = "ratelimit"


# What each kind of case may expect (schema.json says the same).
EXPECT_KEYS: Mapping[Kind, frozenset[str]] = {
    Kind.CHECK: frozenset(
        {
            "code",
            "message",
            "valid_duration",
            "valid_use_count",
            "rule",
            "request_headers",
            "response_headers",
            "direct_response",
            "quotas",
            "dry_run",
        }
    ),
    Kind.AUTHZ: frozenset({"code", "message", "rule", "response"}),
    Kind.RATELIMIT: frozenset({"overall_code", "statuses", "response_headers_to_add"}),
    Kind.REPORT: frozenset({"metrics", "logs"}),
}
MAX_AFTER = 100_000
"""The largest ``after``: requests a case may send before the one it checks."""


@dataclass(frozen=True)
class Case:
    """One request and what must come out of it."""

    __test__ = False

    file: str
    name: str
    kind: Kind
    request: Mapping[str, Any]
    """check/report: ``attributes`` (and ``quotas`` for check); authz/ratelimit: the JSON."""
    expect: Mapping[str, Any]
    after: int = 0
    """Identical requests sent first, their answers ignored (the quota state of "after N")."""
    tags: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        """``file::name``, what ``--run`` matches and the output shows."""
        return f"{self.file}::{self.name}"


def load_cases(path: Path, shown_as: str) -> list[Case]:
    """The cases of one test file (TestFileError on anything that breaks the schema)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TestFileError(f"{shown_as}: cannot read: {exc}") from None
    if (
        not isinstance(data, dict)
        or set(data) - {"tests"}
        or not isinstance(data.get("tests"), list)
    ):
        raise TestFileError(f"{shown_as}: expected a mapping with one key, 'tests' (a list)")
    cases: list[Case] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["tests"]):
        case = _case(raw, shown_as, index)
        if case.name in seen:
            raise TestFileError(f"{shown_as}: tests[{index}]: duplicate name {case.name!r}")
        seen.add(case.name)
        cases.append(case)
    return cases


def _case(raw: object, shown_as: str, index: int) -> Case:
    where = f"{shown_as}: tests[{index}]"
    if not isinstance(raw, dict):
        raise TestFileError(f"{where}: expected a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise TestFileError(f"{where}: 'name' must be a non-empty string")
    where = f"{shown_as}: {name}"
    kinds = [k for k in Kind if k.value in raw]
    if len(kinds) != 1:
        raise TestFileError(
            f"{where}: give exactly one request: {', '.join(k.value for k in Kind)}"
        )
    kind = kinds[0]
    unknown = set(raw) - {"name", "after", "expect", kind.value}
    if unknown:
        raise TestFileError(f"{where}: unknown keys {sorted(unknown)}")
    request = raw[kind.value]
    if not isinstance(request, dict):
        raise TestFileError(f"{where}: '{kind.value}' must be a mapping")
    if kind in (Kind.CHECK, Kind.REPORT):
        allowed = {"attributes", "quotas"} if kind is Kind.CHECK else {"attributes"}
        if set(request) - allowed:
            raise TestFileError(
                f"{where}: {kind.value}: unknown keys {sorted(set(request) - allowed)}"
            )
        if not isinstance(request.get("attributes", {}), dict):
            raise TestFileError(f"{where}: {kind.value}.attributes must be a mapping")
        quotas = request.get("quotas", {})
        if not isinstance(quotas, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in quotas.values()
        ):
            raise TestFileError(f"{where}: check.quotas maps quota names to amounts (>= 0)")
    after = raw.get("after", 0)
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_AFTER:
        raise TestFileError(f"{where}: 'after' must be an integer from 0 to {MAX_AFTER}")
    expect = raw.get("expect")
    if not isinstance(expect, dict) or not expect:
        raise TestFileError(f"{where}: 'expect' must be a non-empty mapping")
    unknown = set(expect) - EXPECT_KEYS[kind]
    if unknown:
        raise TestFileError(
            f"{where}: a {kind.value} case cannot expect {sorted(unknown)} "
            f"(it can expect {', '.join(sorted(EXPECT_KEYS[kind]))})"
        )
    for key in ("metrics", "logs"):
        if key in expect and not isinstance(expect[key], list):
            raise TestFileError(f"{where}: expect.{key} must be a list")
    return Case(shown_as, name, kind, request, expect, after)


def discover(config_dir: Path, paths: list[Path]) -> Iterator[tuple[Path, str]]:
    """Test files: those under `paths` (files or directories), else every test file under
    `config_dir`; as (path, name shown)."""
    roots = paths or [config_dir]
    for root in roots:
        if root.is_file():
            yield root, str(root)
            continue
        if not root.is_dir():
            raise TestFileError(f"{root}: no such file or directory")
        for found in sorted(root.rglob("*")):
            rel = found.relative_to(root)
            if (
                found.is_file()
                and is_test_file(found)
                and not any(p.startswith(".") for p in rel.parts)
            ):
                yield found, str(root / rel)
