"""Fuzz the expression compiler and evaluator (Mixer, CEL and compat dialects).

Input: byte 0 picks the dialect (% 3: mixer, cel, compat), bit 0 of byte 1 type-checks against the
Istio 1.4 vocabulary, the rest is the expression text (UTF-8, undecodable bytes replaced).

Oracle: `mixer.expr.compile` raises nothing but ``CompileError``; a compiled program, evaluated
against a small bag and against a `TrackingBag` over it, raises nothing but ``EvaluationError``,
gives the same answer both ways, and when it declares a result type other than DYNAMIC returns a
value of that type. Hangs are caught by libFuzzer's ``-timeout`` (long run) and by the per-input
time budget of the suite's replay; the engine itself bounds text size, nesting and comprehension
work.

Long run: ``.venv/bin/python tests/fuzz/fuzz_expr.py -max_total_time=600 -timeout=10``
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Mapping
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.expr import CompileError, EvaluationError, Program, compile
from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY
from tests.fuzz._harness import fuzz_main, same

NAME = "expr"
DIALECTS = ("mixer", "cel", "compat")
T0 = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

# Every value has the type the vocabulary gives its name, so a typed program's result type holds.
BAG = Bag(
    {
        "destination.labels": StringMap({"app": "ratings", "version": "v1"}),
        "source.labels": StringMap({"app": "reviews", "version": "v3"}),
        "request.headers": StringMap({"x-user": "john", "cookie": "session=abc", ":path": "/api"}),
        "source.ip": bytes([10, 1, 2, 3]),
        "destination.ip": bytes(10) + b"\xff\xff" + bytes([192, 168, 0, 1]),
        "origin.ip": bytes.fromhex("20010db8000000000000000000000001"),
        "request.size": 2048,
        "response.code": 503,
        "request.path": "/api/v1/reviews?x=1",
        "request.useragent": "kube-probe/1.14",
        "context.protocol": "http",
        "connection.mtls": True,
        "response.duration": datetime.timedelta(milliseconds=25),
        "request.time": T0,
        "source.principal": "cluster.local/ns/default/sa/bookinfo-productpage",
        "destination.service.host": "ratings.default.svc.cluster.local",
        "source.namespace": "default",
    }
)

_PYTHON_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "STRING": str,
    "EMAIL_ADDRESS": str,
    "URI": str,
    "DNS_NAME": str,
    "INT64": int,
    "DOUBLE": float,
    "BOOL": bool,
    "TIMESTAMP": datetime.datetime,
    "DURATION": datetime.timedelta,
    "IP_ADDRESS": bytes,
    "STRING_MAP": Mapping,
}


def _evaluate(program: Program, activation: Mapping[str, object]) -> tuple[bool, object]:
    try:
        return True, program.evaluate(activation)
    except EvaluationError:
        return False, None


def TestOneInput(data: bytes) -> None:
    """One fuzz input: see the module docstring for the format and the oracle."""
    if len(data) < 2:
        return
    dialect = DIALECTS[data[0] % len(DIALECTS)]
    vocabulary = ISTIO_1_4_VOCABULARY if data[1] & 1 else None
    text = data[2:].decode("utf-8", errors="replace")
    try:
        program = compile(text, dialect=dialect, vocabulary=vocabulary)
    except CompileError:
        return
    ok, value = _evaluate(program, BAG)
    tracked_ok, tracked = _evaluate(program, TrackingBag(BAG))
    assert ok == tracked_ok and same(value, tracked), (text, value, tracked)
    expected = _PYTHON_TYPES.get(program.result_type)
    if ok and expected is not None:
        assert isinstance(value, expected), (text, program.result_type, value)
        if program.result_type == "INT64":
            assert not isinstance(value, bool), (text, value)


if __name__ == "__main__":
    fuzz_main(TestOneInput, NAME)
