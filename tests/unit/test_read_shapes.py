"""`ReadShape.key`: two bags get equal keys exactly when they agree on every read of the shape
(present with equal values of the same types, or absent), whatever way the key is computed.

The reference is the definition, read by read; random bags over small pools of values (maps
with and without the keys read, values that are not maps, 1/True/1.0) are compared pairwise.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping

import pytest

from mixer.attributes.bag import StringMap
from mixer.attributes.shapes import ReadShape, Shape

_ABSENT = object()

SHAPES: tuple[Shape, ...] = (
    (("a", None, True), ("b", None, False)),
    (("a", None, True), ("m", "app", True), ("m", "version", True), ("n", "x", False)),
    (("m", "app", True), ("m", "canary", False)),
    (("n", "x", False), ("n", "y", False)),
    (("a", None, True), ("b", None, True), ("m", "app", True)),
    (("m", "app", False),),
)

POOL: dict[str, tuple[object, ...]] = {
    "a": (1, True, 1.0, "1", 2),
    "b": ("x", "y", 0),
    "m": (
        StringMap({"app": "r", "version": "v1"}),
        StringMap({"app": "r", "version": "v2", "canary": "1"}),
        StringMap({"app": "r"}),
        {"app": "r", "version": "v1"},
        StringMap({}),
        "not a map",
    ),
    "n": (StringMap({"x": "1"}), StringMap({"y": "2"}), StringMap({}), 7),
}


def reference(shape: Shape, data: Mapping[str, object]) -> tuple[object, ...] | None:
    """The key by definition: each read's value and type (in shape order), or None when the
    bag contradicts a read."""
    out: list[object] = []
    for name, key, present in shape:
        if key is None:
            value = data.get(name, _ABSENT)
        else:
            found = data.get(name)
            value = found.get(key, _ABSENT) if isinstance(found, Mapping) else _ABSENT
        if (value is _ABSENT) == present:
            return None
        if present:
            out.append((value, type(value)))
    return tuple(out)


def random_bag(rng: random.Random) -> dict[str, object]:
    return {name: rng.choice(values) for name, values in POOL.items() if rng.random() < 0.75}


@pytest.mark.parametrize("index", range(len(SHAPES)))
def test_equal_keys_exactly_when_the_reads_agree(index: int) -> None:
    shape = SHAPES[index]
    read = ReadShape(shape, index)
    rng = random.Random(index)
    bags = [random_bag(rng) for _ in range(120)]
    keys = [read.key(bag) for bag in bags]
    expected = [reference(shape, bag) for bag in bags]
    assert [k is None for k in keys] == [e is None for e in expected]
    assert any(k is not None for k in keys) and any(k is None for k in keys)
    for (k1, e1), (k2, e2) in itertools.combinations(zip(keys, expected, strict=True), 2):
        if k1 is not None and k2 is not None:
            assert (k1 == k2) == (e1 == e2)
