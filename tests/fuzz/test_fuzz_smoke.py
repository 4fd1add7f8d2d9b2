"""Bounded fuzz runs in the suite: seeds, seeded mutations in-process, and a few seconds of atheris.

Long runs are documented in docs/fuzzing.md. Open bugs (`known.OPEN`) are stepped over by the
mutation and atheris runs so that these tests look for new crashes; their reproducers are checked
in test_fuzz_regressions.py.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import fuzz_config, fuzz_decoder, fuzz_envoy, fuzz_expr
from tests.fuzz._harness import (
    CORPUS,
    HERE,
    Structural,
    TestOneInput,
    mutations,
    replay,
    seeds,
)
from tests.fuzz.known import tolerate_open

HARNESSES: dict[str, TestOneInput] = {
    "decoder": fuzz_decoder.TestOneInput,
    "envoy": fuzz_envoy.TestOneInput,
    "config": fuzz_config.TestOneInput,
    "expr": fuzz_expr.TestOneInput,
}
# Mutations per harness, sized so that each replay takes about a second.
MUTATIONS = {"decoder": 3000, "envoy": 3000, "config": 200, "expr": 8000}
STRUCTURAL: dict[str, Structural] = {
    "decoder": fuzz_decoder.STRUCTURAL,
    "envoy": fuzz_envoy.STRUCTURAL,
}
PER_INPUT_S = 5.0
ATHERIS_SECONDS = 2
ATHERIS_DEADLINE_S = 120
ROOT = HERE.parents[1]


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_seeds_pass_strictly(name: str) -> None:
    inputs = seeds(name)
    assert len(inputs) >= 5, f"seed corpus of {name} is missing: run tests/fuzz/make_corpus.py"
    assert replay(HARNESSES[name], inputs, PER_INPUT_S) == len(inputs)


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_seeded_mutations(name: str) -> None:
    harness = tolerate_open(name, HARNESSES[name])
    count = MUTATIONS[name]
    inputs = mutations(seeds(name), count, seed=10, structural=STRUCTURAL.get(name))
    assert replay(harness, inputs, PER_INPUT_S) == count


def test_mutations_are_deterministic_and_change_inputs() -> None:
    pool = seeds("decoder")
    first = list(mutations(pool, 50, seed=3))
    assert first == list(mutations(pool, 50, seed=3))
    assert sum(data not in pool for data in first) > 40


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_structural_mutations_parse_and_change_messages(name: str) -> None:
    mutator = STRUCTURAL[name]
    pool = seeds(name)
    rng = random.Random(4)
    changed = 0
    for i in range(200):
        data = pool[i % len(pool)]
        out = mutator(data, rng)
        assert out is not None and out[0] == data[0]
        message_type = fuzz_decoder.MESSAGES if name == "decoder" else fuzz_envoy.MESSAGES
        message_type[out[0] % len(message_type)].FromString(out[1:])  # still a valid message
        changed += out != data
    assert changed > 150
    assert mutator(b"\x00\xff\xff", rng) is None  # not a message: left to byte mutations


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_atheris_run(name: str, tmp_path: Path) -> None:
    # A real coverage-guided run of the standalone script, seeded, bounded in time; new corpus
    # entries and crash files go to tmp_path, never into the committed corpus.
    script = HERE / f"fuzz_{name}.py"
    command = [
        sys.executable,
        str(script),
        f"-max_total_time={ATHERIS_SECONDS}",
        "-seed=1",
        "-timeout=10",
        f"-artifact_prefix={tmp_path}/",
        str(tmp_path),
        str(CORPUS / name),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=ATHERIS_DEADLINE_S
    )
    log = done.stderr
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-"))]
    assert done.returncode == 0 and not crashes, f"{crashes}\n{log[-4000:]}"
    runs = re.search(r"Done (\d+) runs in", log)
    assert runs is not None and int(runs.group(1)) > len(seeds(name)), log[-2000:]
    final = re.findall(r"cov: (\d+) ft: (\d+)", log)
    assert final and int(final[-1][0]) > 50, log[-2000:]
    print(f"{name}: {runs.group(1)} runs, cov {final[-1][0]}, ft {final[-1][1]}")
