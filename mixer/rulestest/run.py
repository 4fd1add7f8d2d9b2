"""`mixer test`: find the test files, load the config once, run each case, report."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mixer.errors import ConfigError
from mixer.rulestest.cases import Case, TestFileError, discover, load_cases
from mixer.rulestest.compare import diff, failures
from mixer.rulestest.evaluate import RequestError, run_case
from mixer.rulestest.report import Result, summary, text_line, write_junit
from mixer.runtime.build import load_snapshot


def collect(
    config_dir: Path, paths: Sequence[Path], pattern: str | None
) -> tuple[list[Case], list[str]]:
    """The cases to run (those whose ``file::name`` `pattern` finds) and the test-file errors."""
    regex = re.compile(pattern) if pattern else None
    cases: list[Case] = []
    errors: list[str] = []
    try:
        files = list(discover(config_dir, list(paths)))
    except TestFileError as exc:
        return [], [str(exc)]
    for path, shown in files:
        try:
            loaded = load_cases(path, shown)
        except TestFileError as exc:
            errors.append(str(exc))
            continue
        cases.extend(c for c in loaded if regex is None or regex.search(c.id))
    return cases, errors


async def run_cases(cases: Sequence[Case], config_dir: Path, verbose: bool) -> list[Result]:
    """Run every case against a runtime built from `config_dir` (ConfigError if it is invalid)."""
    snapshot = load_snapshot(config_dir)
    results = []
    for case in cases:
        start = time.perf_counter()
        try:
            actual, why = await run_case(case, snapshot, explain=verbose)
        except RequestError as exc:
            results.append(Result(case, time.perf_counter() - start, error=str(exc)))
            continue
        except Exception as exc:
            # A handler that cannot be built or a servicer failure: this case errs, the rest run.
            error = f"{type(exc).__name__}: {exc}"
            results.append(Result(case, time.perf_counter() - start, error=error))
            continue
        wrong = failures(case.expect, actual)
        results.append(
            Result(
                case,
                time.perf_counter() - start,
                wrong,
                diff(case.expect, actual, wrong) if wrong else "",
                explanation=why,
            )
        )
    return results


def main(
    config_dir: Path,
    paths: Sequence[Path],
    *,
    pattern: str | None = None,
    fmt: str = "text",
    verbose: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the tests and print the results; 0 when every case passed, 1 otherwise."""
    out = out or sys.stdout
    start = time.perf_counter()
    try:
        cases, file_errors = collect(config_dir, paths, pattern)
    except re.error as exc:
        print(f"mixer test: --run {pattern!r}: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(run_cases(cases, config_dir, verbose)) if cases else []
    except ConfigError as exc:
        print(f"mixer test: {config_dir} is not a valid config:\n{exc}", file=sys.stderr)
        return 1
    if fmt == "junit":
        write_junit(results, out, file_errors)
    else:
        for message in file_errors:
            print(f"ERROR {message}", file=out)
        for result in results:
            print(text_line(result, verbose), file=out)
        if not results and not file_errors:
            print("no test cases found" + (f" matching {pattern!r}" if pattern else ""), file=out)
        print(summary(results, time.perf_counter() - start), file=out)
    ok = bool(results) and not file_errors and all(r.passed for r in results)
    return 0 if ok else 1
