"""What the live-server tests share: a deny rule written the way an operator would, the
attributes of a ratings request, and a metric read from a running server's admin port."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.mixer_process import MixerProcess

DENY = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: denier, namespace: {ns}}}
spec:
  compiledAdapter: denier
  params:
    status: {{code: 7, message: "{message}"}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: nothing, namespace: {ns}}}
spec:
  compiledTemplate: checknothing
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: deny
  namespace: {ns}
  annotations: {{policy.istio.io/lang: "{lang}"}}
spec:
  match: '{match}'
  actions:
  - handler: denier
    instances: [nothing]
"""

RATINGS_FROM_V3 = 'destination.labels["app"] == "ratings" && source.labels["version"] == "v3"'


def write_rule(
    directory: Path,
    *,
    match: str = RATINGS_FROM_V3,
    lang: str = "CEXL",
    ns: str = "istio-system",
    message: str = "Not allowed",
    name: str = "deny.yaml",
) -> None:
    text = DENY.format(ns=ns, match=match.replace("'", "''"), lang=lang, message=message)
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    tmp.rename(directory / name)


def ratings(version: str, **extra: object) -> dict[str, object]:
    attrs: dict[str, object] = {
        "destination.labels": {"app": "ratings"},
        "source.labels": {"version": version},
        "request.path": "/ratings/1",
    }
    attrs.update(extra)
    return attrs


def metric(mixer: MixerProcess, name: str, **labels: str) -> float:
    _, text = mixer.admin_get("/metrics")
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
