"""Every crash the fuzzers found stays found: each reproducer must now be handled on purpose.

Bugs still open in ``mixer/`` (`known.OPEN`) are strict xfails that must fail the way the bug
does; once fixed, the xfail passes, pytest reports it, and the id comes out of `known.OPEN`.
"""

from __future__ import annotations

import pytest

from tests.fuzz import fuzz_config, fuzz_decoder, fuzz_envoy, fuzz_expr
from tests.fuzz._harness import TestOneInput
from tests.fuzz.known import CRASHES, OPEN, Crash, open_crash

HARNESSES: dict[str, TestOneInput] = {
    "decoder": fuzz_decoder.TestOneInput,
    "envoy": fuzz_envoy.TestOneInput,
    "config": fuzz_config.TestOneInput,
    "expr": fuzz_expr.TestOneInput,
}


def _cases() -> list[object]:
    cases: list[object] = []
    for crash in CRASHES:
        marks = []
        if crash.id in OPEN:
            reason = f"open bug {crash.id}: {crash.summary}"
            marks.append(pytest.mark.xfail(strict=True, raises=crash.error, reason=reason))
        for i, data in enumerate(crash.inputs):
            cases.append(pytest.param(crash, data, id=f"{crash.id}-{i}", marks=marks))
    return cases


@pytest.mark.parametrize(("crash", "data"), _cases())
def test_crash_input_is_handled(crash: Crash, data: bytes) -> None:
    HARNESSES[crash.harness](data)


def _open_cases() -> list[tuple[Crash, bytes]]:
    return [(crash, data) for crash in CRASHES if crash.id in OPEN for data in crash.inputs]


def test_open_bugs_are_recognised_by_their_signature() -> None:
    # The fuzz runs step over open bugs by signature: it must match its own reproducers (and
    # only its own), or the runs would stop on a known bug or hide a new one.
    for crash, data in _open_cases():
        with pytest.raises(crash.error) as info:
            HARNESSES[crash.harness](data)
        assert open_crash(crash.harness, info.value) is crash


def test_a_signature_needs_the_place_not_just_the_type() -> None:
    try:
        raise OverflowError("the type of decoder-timestamp-range, raised elsewhere")
    except OverflowError as exc:
        assert open_crash("decoder", exc) is None


def test_every_crash_has_a_harness_and_inputs() -> None:
    assert {crash.id for crash in CRASHES} >= OPEN
    assert len({crash.id for crash in CRASHES}) == len(CRASHES)
    for crash in CRASHES:
        assert crash.harness in HARNESSES and crash.inputs and crash.where, crash.id
