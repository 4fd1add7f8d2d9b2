"""The default attribute vocabulary: Istio 1.4's two manifests, shipped twice and kept identical."""

from __future__ import annotations

import shutil
from pathlib import Path

from mixer.config import check_config, default_vocabulary
from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY
from tests.unit.config_helpers import TEST_ADAPTERS

REPO = Path(__file__).parents[2]
RULES_COPY = REPO / "rules" / "attributes.yaml"
PACKAGE_COPY = REPO / "mixer" / "config" / "default_attributes.yaml"


def test_rules_attributes_is_the_packaged_default() -> None:
    assert RULES_COPY.read_bytes() == PACKAGE_COPY.read_bytes()


def test_default_vocabulary_is_istio_1_4s() -> None:
    vocabulary = default_vocabulary()
    assert len(vocabulary) == 90
    assert dict(vocabulary) == dict(ISTIO_1_4_VOCABULARY)
    assert vocabulary["source.ip"] == "IP_ADDRESS"
    assert vocabulary["response.duration"] == "DURATION"
    assert vocabulary["request.auth.claims"] == "STRING_MAP"


def test_rules_attributes_loads_as_the_two_istio_manifests(tmp_path: Path) -> None:
    shutil.copy(RULES_COPY, tmp_path)
    report = check_config(tmp_path, TEST_ADAPTERS)
    assert report.snapshot is not None
    manifests = report.snapshot.attribute_manifests
    assert [(m.name, m.namespace, len(m.attributes)) for m in manifests] == [
        ("istioproxy", "istio-system", 64),
        ("kubernetes", "istio-system", 26),
    ]
    assert report.snapshot.vocabulary == default_vocabulary()
