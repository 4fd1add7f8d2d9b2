"""Results out: one line per case and a diff per failure (text), or JUnit XML for CI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from mixer.rulestest.cases import Case


@dataclass
class Result:
    """How one case went: passed, failed (with a diff) or errored (its request could not run)."""

    case: Case
    seconds: float
    failed_keys: list[str] = field(default_factory=list)
    diff: str = ""
    error: str = ""
    explanation: str = ""

    @property
    def passed(self) -> bool:
        return not self.failed_keys and not self.error


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def text_line(result: Result, verbose: bool) -> str:
    """The case's line, then (on failure, or always when verbose) its details."""
    word = "PASS" if result.passed else "ERROR" if result.error else "FAIL"
    lines = [f"{word:<5} {result.case.id} ({result.seconds:.3f}s)"]
    if result.error:
        lines.append(_indent(result.error))
    elif result.failed_keys:
        lines.append(_indent(result.diff))
    if verbose and result.explanation:
        lines.append(_indent(result.explanation))
    return "\n".join(lines)


def summary(results: Sequence[Result], seconds: float) -> str:
    """``N passed, M failed, E errors in Ts``."""
    passed = sum(r.passed for r in results)
    errors = sum(bool(r.error) for r in results)
    failed = len(results) - passed - errors
    parts = [f"{passed} passed", f"{failed} failed"]
    if errors:
        parts.append(f"{errors} errors")
    return f"{', '.join(parts)} in {seconds:.2f}s"


def write_junit(results: Sequence[Result], out: TextIO, file_errors: Sequence[str] = ()) -> None:
    """JUnit XML: one testsuite per test file, one testcase per case."""
    root = ET.Element("testsuites", name="mixer test")
    suites: dict[str, ET.Element] = {}
    for result in results:
        suite = suites.get(result.case.file)
        if suite is None:
            suite = suites[result.case.file] = ET.SubElement(
                root, "testsuite", name=result.case.file
            )
        case = ET.SubElement(
            suite,
            "testcase",
            name=result.case.name,
            classname=result.case.file,
            time=f"{result.seconds:.3f}",
        )
        if result.error:
            ET.SubElement(case, "error", message=result.error).text = result.error
        elif result.failed_keys:
            ET.SubElement(
                case, "failure", message=f"mismatch in {', '.join(result.failed_keys)}"
            ).text = result.diff
    for message in file_errors:
        suite = ET.SubElement(root, "testsuite", name="test files")
        case = ET.SubElement(suite, "testcase", name="load", classname="test files")
        ET.SubElement(case, "error", message=message).text = message
    for suite in [*suites.values(), *root.findall("testsuite[@name='test files']")]:
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
        suite.set("errors", str(sum(c.find("error") is not None for c in cases)))
    ET.indent(root)
    out.write(ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
