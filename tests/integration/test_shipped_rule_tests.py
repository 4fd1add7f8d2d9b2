"""The shipped rules/tests cover the shipped rules: each case fails when a rule it covers is
removed, and removing any rule (or a rate-limit descriptor, or the whole rate-limit config)
fails at least one case.

Each removal copies rules/ to a temporary directory, deletes one resource, and runs every
shipped case against it in process (`mixer.rulestest.run.run_cases`).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import yaml

from mixer.rulestest.run import collect, run_cases

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"


def _rules() -> list[tuple[Path, str]]:
    """(file, rule name) of every rule in rules/."""
    found = []
    for path in sorted(RULES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "rule":
                found.append((path, doc["metadata"]["name"]))
    return found


def _without(tmp: Path, path: Path, rule: str | int | None) -> Path:
    """A copy of rules/ without `rule`: a rule by name, a rate-limit config's top-level
    descriptor by index, or (None) the whole file."""
    directory = tmp / f"{path.stem}-{rule if rule is not None else 'file'}"
    shutil.copytree(RULES, directory)
    target = directory / path.name
    if rule is None:
        target.unlink()
        return directory
    if isinstance(rule, int):
        config = yaml.safe_load(path.read_text())
        del config["descriptors"][rule]
        target.write_text(yaml.safe_dump(config))
        return directory
    docs = [
        d
        for d in yaml.safe_load_all(path.read_text())
        if not (isinstance(d, dict) and d.get("kind") == "rule" and d["metadata"]["name"] == rule)
    ]
    target.write_text(yaml.safe_dump_all(docs))
    return directory


def _failing(directory: Path) -> set[str]:
    cases, errors = collect(directory, [directory / "tests"], None)
    assert not errors
    results = asyncio.run(run_cases(cases, directory, verbose=False))
    return {r.case.name for r in results if not r.passed}


def test_every_shipped_case_fails_without_a_rule_it_covers(tmp_path: Path) -> None:
    cases, errors = collect(RULES, [], None)
    assert not errors and cases
    assert _failing(RULES) == set(), "the shipped cases must pass on the shipped rules"
    ratelimit = RULES / "ratelimit.yaml"
    descriptors = len(yaml.safe_load(ratelimit.read_text())["descriptors"])
    removals: list[tuple[Path, str | int | None]] = [
        *_rules(),
        *((ratelimit, i) for i in range(descriptors)),
        (ratelimit, None),
    ]
    assert len(removals) >= 10  # the shipped config's rules, found
    failed_by: dict[str, set[str]] = {}
    for path, rule in removals:
        failed = _failing(_without(tmp_path, path, rule))
        failed_by[f"{path.name}:{'*' if rule is None else rule}"] = failed
    uncovered_rules = [name for name, failed in failed_by.items() if not failed]
    assert uncovered_rules == [], f"no case fails when these are removed: {uncovered_rules}"
    covered_cases = set().union(*failed_by.values())
    uncovering = sorted({c.name for c in cases} - covered_cases)
    assert uncovering == [], f"these cases fail on no rule's removal: {uncovering}"
