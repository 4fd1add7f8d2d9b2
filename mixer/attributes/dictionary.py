"""Istio 1.4's global word dictionary: 222 words whose list index is their wire id.

The words are kept verbatim as Istio's generators produced them from
`mixer/v1/global_dictionary.yaml`, line by line without YAML parsing, so the entries written
``'200'`` keep their quotes. Never reorder or remove an entry: indexes are the wire format.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Final


def _load() -> tuple[str, ...]:
    text = resources.files("mixer.attributes").joinpath("global_dictionary.json").read_text("utf-8")
    words = json.loads(text)
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise RuntimeError("global_dictionary.json must be a JSON list of strings")
    return tuple(words)


GLOBAL_WORDS: Final[tuple[str, ...]] = _load()
GLOBAL_WORD_COUNT: Final[int] = len(GLOBAL_WORDS)

# First occurrence wins, so an encoder picks the lowest index (the dictionary has no duplicates).
GLOBAL_INDEX: Final[dict[str, int]] = {}
for _i, _w in enumerate(GLOBAL_WORDS):
    GLOBAL_INDEX.setdefault(_w, _i)
