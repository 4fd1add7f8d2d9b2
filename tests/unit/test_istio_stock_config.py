"""deploy/istio-1.4/config.yaml is Istio 1.4.10's Helm-rendered mixer config, unchanged, and
`mixer validate` accepts it (exit 0), kubernetesenv and its generator rules included."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helm_render import RenderError, render
from tests.istio_config import SHIPPED, rendered


def test_shipped_config_is_the_chart_rendered_with_its_defaults() -> None:
    assert SHIPPED.read_text() == rendered()


def test_mixer_validate_exits_0_on_the_stock_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mixer", "validate", str(SHIPPED.parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_stock_config_holds_the_generator_rules() -> None:
    text = SHIPPED.read_text()
    for name in ("kubeattrgenrulerule", "tcpkubeattrgenrulerule", "compiledAdapter: kubernetesenv"):
        assert name in text
    assert "{{" not in text


def test_renderer_follows_conditions_and_trims_and_refuses_the_unknown() -> None:
    values = {"a": {"on": True, "off": False}, "n": "10m"}
    text = (
        "x\n{{- if and .Values.a.on (or .Values.a.off .Values.n) }}\n"
        "v={{ .Values.n }}\n{{- end }}\n"
    )
    assert render(text, values, {}, {}) == "x\nv=10m\n"
    assert render("{{- if .Values.a.off }}gone{{- end }}", values, {}, {}) == ""
    with pytest.raises(RenderError):
        render('{{ include "x" . }}', values, {}, {})
