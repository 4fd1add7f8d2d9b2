"""Istio 1.4.10's mixer config (its Helm chart's templates/config.yaml) rendered with the chart's
default values, as `helm template` installed it: the shipped `deploy/istio-1.4/config.yaml`.

Values: the chart's values.yaml (from shared/corpus/istio/helm-mixer), plus what the parent
chart supplies (`global.proxy.clusterDomain: cluster.local`, no
`global.defaultConfigVisibilitySettings`); release `istio` in namespace `istio-system` by
Tiller; the named templates `mixer.name` and `mixer.chart` are both "mixer".

Regenerate: ``.venv/bin/python -m tests.istio_config > deploy/istio-1.4/config.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helm_render import render

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT.parent / "shared" / "corpus" / "istio" / "helm-mixer"
SHIPPED = ROOT / "deploy" / "istio-1.4" / "config.yaml"
HEADER = (
    "# Istio 1.4.10's mixer config, rendered unchanged from its Helm chart with the chart's\n"
    "# defaults (tests/istio_config.py says how; Apache-2.0, Istio Authors).\n"
)


def rendered(chart: Path = CHART) -> str:
    values = yaml.safe_load((chart / "values-1.4.10.yaml").read_text())
    values["global"] = {"proxy": {"clusterDomain": "cluster.local"}}
    release = {"Namespace": "istio-system", "Name": "istio", "Service": "Tiller"}
    text = (chart / "config-1.4.10.yaml.tpl").read_text()
    return HEADER + render(text, values, release, {"mixer.name": "mixer", "mixer.chart": "mixer"})


if __name__ == "__main__":
    print(rendered(), end="")
