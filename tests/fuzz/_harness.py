"""Plumbing shared by the fuzz harnesses: the libFuzzer entry point, in-process replay, oracles.

Each harness (``fuzz_*.py``) defines ``TestOneInput(data: bytes) -> None`` that returns normally for
every input the code under test handles on purpose and raises for anything else (a crash). Run one
standalone for a coverage-guided session::

    .venv/bin/python tests/fuzz/fuzz_decoder.py -max_total_time=600

`fuzz_main` then adds, unless the command line names corpus directories itself, a scratch corpus
(written by libFuzzer) in front of the committed seeds in ``tests/fuzz/corpus/<name>/`` (read only),
sends crash files to the scratch directory and uses the libFuzzer dictionary
``tests/fuzz/dicts/<name>.dict`` when there is one. The test suite replays the seeds and a bounded,
seeded set of mutations of them in-process (`replay`, `mutations`) and runs each harness briefly
under atheris in a subprocess (``test_fuzz_smoke.py``).
"""

from __future__ import annotations

import datetime
import math
import random
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from mixer.attributes.bag import Bag, StringMap

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DICTS = HERE / "dicts"
SCRATCH = Path(tempfile.gettempdir()) / "mixer-fuzz"

# Code whose branches guide the fuzzer: ours, and the pure-Python libraries our parsers lean on.
INSTRUMENTED = ("mixer", "adapters", "yaml", "ipaddress", "google.protobuf.json_format")

TestOneInput = Callable[[bytes], None]
Structural = Callable[[bytes, random.Random], bytes | None]
"""A structure-aware mutation of an input, or None when it does not apply to that input."""


def seeds(name: str) -> list[bytes]:
    """The committed seed inputs of harness `name`, in file-name order."""
    return [path.read_bytes() for path in sorted((CORPUS / name).iterdir()) if path.is_file()]


def _instrument() -> int:
    """Add coverage instrumentation to every loaded function of the `INSTRUMENTED` packages.

    ``atheris.instrument_imports`` only sees modules imported inside it, and the harness modules
    import the code under test at the top (so the suite can use them without atheris);
    ``instrument_all`` would also instrument the standard library and atheris itself.
    """
    import gc

    import atheris  # type: ignore[import-untyped]

    count = 0
    for obj in gc.get_objects():
        if not isinstance(obj, types.FunctionType):
            continue
        module = obj.__module__ or ""
        if any(module == name or module.startswith(name + ".") for name in INSTRUMENTED):
            atheris.instrument_func(obj)
            count += 1
    return count


def fuzz_main(
    test_one_input: TestOneInput,
    name: str,
    argv: list[str] | None = None,
    structural: Structural | None = None,
) -> None:
    """Run `test_one_input` under libFuzzer (atheris) with the command-line flags in `argv`.

    Inputs failing like a bug still listed in `known.OPEN` are stepped over, so that a long run
    looks for new crashes; ``--strict`` (ours, not libFuzzer's) turns that off. With a
    `structural` mutator, half of the mutations are its own and half are libFuzzer's.
    """
    import atheris

    from tests.fuzz.known import tolerate_open

    args = list(sys.argv if argv is None else argv)
    strict = "--strict" in args
    args = [arg for arg in args if arg != "--strict"]
    scratch = SCRATCH / name
    scratch.mkdir(parents=True, exist_ok=True)
    if not any(not arg.startswith("-") for arg in args[1:]):
        # libFuzzer writes new inputs to the first directory only: keep the seeds untouched.
        args += [str(scratch), str(CORPUS / name)]
    if not any(arg.startswith("-artifact_prefix=") for arg in args[1:]):
        args.append(f"-artifact_prefix={scratch}/")
    dictionary = DICTS / f"{name}.dict"
    if dictionary.is_file() and not any(arg.startswith("-dict=") for arg in args[1:]):
        args.append(f"-dict={dictionary}")
    # Comparison hooks let the fuzzer learn the keywords and patterns the parsers look for.
    atheris.enabled_hooks.add("str")
    atheris.enabled_hooks.add("RegEx")
    count = _instrument()
    print(f"INFO: instrumented {count} functions of {', '.join(INSTRUMENTED)}", file=sys.stderr)
    target = test_one_input if strict else tolerate_open(name, test_one_input)
    if structural is None:
        atheris.Setup(args, target)
    else:

        def mutate(data: bytes, max_size: int, seed: int) -> bytes:
            rng = random.Random(seed)
            if rng.random() < 0.5:
                out = structural(data, rng)
                if out is not None and len(out) <= max_size:
                    return out
            mutated: bytes = atheris.Mutate(data, max_size)
            return mutated

        atheris.Setup(args, target, custom_mutator=mutate)
    atheris.Fuzz()


def mutations(
    inputs: Iterable[bytes], count: int, seed: int, structural: Structural | None = None
) -> Iterator[bytes]:
    """`count` deterministic random mutations of `inputs`: byte flips, cuts, splices, repeats,
    and with a `structural` mutator, its mutations for half of them."""
    rng = random.Random(seed)
    pool = [bytes(data) for data in inputs] or [b""]
    for _ in range(count):
        if structural is not None and rng.random() < 0.5:
            out = structural(rng.choice(pool), rng)
            if out is not None:
                yield out
                continue
        data = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(6)
            at = rng.randint(0, len(data))
            if op == 0 and data:  # overwrite one byte
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1:  # insert random bytes
                data[at:at] = rng.randbytes(rng.randint(1, 8))
            elif op == 2 and data:  # delete a run
                del data[at : at + rng.randint(1, 16)]
            elif op == 3:  # splice in a piece of another input
                other = rng.choice(pool)
                start = rng.randint(0, len(other))
                data[at:at] = other[start : start + rng.randint(1, 64)]
            elif op == 4 and data:  # repeat a run
                piece = data[at : at + rng.randint(1, 16)]
                data[at:at] = piece * rng.randint(1, 8)
            elif op == 5 and data:  # interesting integers, little-endian varint-ish bytes
                value = rng.choice((0x00, 0x7F, 0x80, 0xFF))
                data[rng.randrange(len(data))] = value
        yield bytes(data)


def replay(test_one_input: TestOneInput, inputs: Iterable[bytes], per_input_s: float) -> int:
    """Feed every input to `test_one_input`; raise on a crash or an input slower than the budget."""
    done = 0
    for data in inputs:
        start = time.perf_counter()
        try:
            test_one_input(data)
        except Exception as exc:
            raise AssertionError(f"harness crashed on input {data!r}") from exc
        took = time.perf_counter() - start
        if took > per_input_s:
            raise AssertionError(f"input took {took:.1f}s (budget {per_input_s}s): {data!r}")
        done += 1
    return done


_VALUE_TYPES = (str, int, float, bytes, datetime.datetime, datetime.timedelta, StringMap)


def check_bag(bag: object, ip_attributes: Iterable[str] = ()) -> None:
    """A bag holds only the documented value types (see `mixer.attributes.bag`).

    IP attributes sent as bytes are 4 or 16 long. Their type is not checked: neither the decoder
    nor the mappers promise it (a client may send ``source.ip`` as a string; rules then fail to
    evaluate rather than match).
    """
    assert isinstance(bag, Bag), type(bag)
    for name, value in bag.items():
        assert isinstance(name, str), (name, value)
        assert isinstance(value, _VALUE_TYPES), (name, type(value))
        if isinstance(value, datetime.datetime):
            assert value.tzinfo is not None, (name, value)
        if isinstance(value, StringMap):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    for name in ip_attributes:
        ip = bag.get(name)
        if isinstance(ip, bytes):
            assert len(ip) in (4, 16), (name, ip)


def same(a: object, b: object) -> bool:
    """Equality that treats NaN as equal to NaN, through string maps, lists and dicts."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)
