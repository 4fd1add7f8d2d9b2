"""Several quotas in one Check, best effort, and the all-or-nothing contract, over the wire."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mixer.client import MixerClient
from tests.mixer_process import MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

RULES = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotas, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas:
    - {name: small.instance.istio-system, maxAmount: 3, validDuration: 60s,
       rateLimitAlgorithm: FIXED_WINDOW}
    - {name: large.instance.istio-system, maxAmount: 10, validDuration: 60s,
       rateLimitAlgorithm: FIXED_WINDOW}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: small, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: large, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quotas, namespace: istio-system}
spec:
  actions: [{handler: quotas, instances: [small, large]}]
"""


@pytest.fixture
def mixer(start_mixer: Start, tmp_path: Path) -> MixerProcess:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "quotas.yaml").write_text(RULES)
    return start_mixer(rules)


def test_two_quotas_of_one_handler_in_one_check(mixer: MixerProcess) -> None:
    with MixerClient(mixer.address) as client:
        first = client.check({}, quotas={"small": 1, "large": 4})
        assert first.status_code == 0
        assert (first.quotas["small"].granted, first.quotas["large"].granted) == (1, 4)
        second = client.check({}, quotas={"small": 1, "large": 4})
        assert (second.quotas["small"].granted, second.quotas["large"].granted) == (1, 4)
        # large has 2 left: all or nothing refuses 4, and the whole Check is RESOURCE_EXHAUSTED
        third = client.check({}, quotas={"small": 1, "large": 4})
        assert third.status_code == 8
        assert third.quotas["large"].granted == 0
        # best effort grants what is left
        fourth = client.check({}, quotas={"large": (4, True)})
        assert fourth.status_code == 0
        assert fourth.quotas["large"].granted == 2
        # unconfigured quota names are granted in full for a minute, as Mixer did
        other = client.check({}, quotas={"unknown": 7})
        assert other.quotas["unknown"].granted == 7
        assert other.quotas["unknown"].valid_duration.total_seconds() == 60
