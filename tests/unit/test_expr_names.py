"""`Program.names`: every attribute an evaluation reads is among the names its program lists.

The Report path decodes only the attributes some rule might read, so a name missing here
would be an attribute silently absent from a rule's view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import pytest

from mixer.attributes.bag import Bag
from mixer.attributes.tracking import TrackingBag
from mixer.expr import EvaluationError, compile
from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY as VOCAB
from tests.unit import test_expr_cel as cel
from tests.unit import test_expr_mixer as mixer


def reads(
    text: str, dialect: str, activation: Mapping[str, object], vocabulary: object
) -> set[str]:
    program = compile(text, dialect=dialect, vocabulary=vocabulary)  # type: ignore[arg-type]
    tracking = TrackingBag(activation if isinstance(activation, Bag) else Bag(activation))  # type: ignore[arg-type]
    with contextlib.suppress(EvaluationError):
        program.evaluate(tracking)
    read = {name for name, _ in tracking.refs.reads}
    assert read <= program.names, f"{text!r} read {sorted(read - program.names)}"
    return read


@pytest.mark.parametrize("text", cel.GENERATED)
def test_cel_reads_are_listed(text: str) -> None:
    for activation in cel.ACTIVATIONS:
        reads(text, "cel", activation, None)


@pytest.mark.parametrize("text", [text for text, _ in cel.CASES])
def test_cel_reads_of_the_istio_vocabulary_are_listed(text: str) -> None:
    reads(text, "cel", cel.BAG, VOCAB)
    reads(text, "cel", cel.BAG, None)


@pytest.mark.parametrize("text", mixer.GENERATED)
def test_mixer_reads_are_listed(text: str) -> None:
    for activation in mixer.GENERATED_ACTIVATIONS:
        reads(text, "mixer", activation, None)


@pytest.mark.parametrize("text", [text for text, _ in mixer.CASES] + mixer.COMMON_SHAPES)
def test_mixer_reads_of_the_istio_vocabulary_are_listed(text: str) -> None:
    reads(text, "mixer", mixer.BAG, VOCAB)


def test_names_cover_dotted_prefixes_and_nothing_from_literals() -> None:
    program = compile('source.labels["app"] == "destination.name" && a.b.c', dialect="cel")
    assert program.names == {"source", "source.labels", "a", "a.b", "a.b.c"}
    # A name resolved at evaluation time may be any prefix of the chain: each one is read.
    assert reads("a.b.c == 7", "cel", {"a.b.c": 7}, None) == {"a.b.c"}
    assert reads("a.b.c == 7", "cel", {"a": {"b": {"c": 7}}}, None) >= {"a"}
    assert compile('"constant"', dialect="mixer").names == frozenset()
