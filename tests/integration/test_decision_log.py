"""Decision logs on a real server: ext_authz and Mixer checks logged through a stdio handler to a
file, with the authorization header and cookie masked (their values never in the file)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from mixer.client import MixerClient
from mixer.envoy.service.auth.v3 import external_auth_pb2
from tests.integration.live import metric
from tests.mixer_process import MixerProcess

SECRET = "Bearer s3cr3t-token-9f8e7d"
COOKIE = "session=c00kie-value-1234"

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: decisions, namespace: istio-system}}
spec:
  compiledAdapter: stdio
  params: {{outputAsJson: true, logStream: FILE, outputPath: "{path}"}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: nope, namespace: istio-system}}
spec:
  compiledAdapter: denier
  params: {{status: {{code: 7, message: go away}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: nothing, namespace: istio-system}}
spec: {{compiledTemplate: checknothing}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: denytoken, namespace: istio-system}}
spec:
  match: request.headers["authorization"] == "{secret}" && request.headers["cookie"] != ""
  actions:
  - handler: nope
    instances: [nothing]
"""


def _entries(path: Path, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(line) for line in path.read_text().splitlines() if line]
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {count} entries within 10 s")


def test_decisions_are_logged_masked(
    start_mixer: Callable[..., MixerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "decisions.log"
    config = tmp_path / "config"
    config.mkdir()
    (config / "c.yaml").write_text(CONFIG.format(path=log, secret=SECRET))
    mixer = start_mixer(config, extra_args=["--decision-log-handler", "decisions"])
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path = "GET", "/orders"
    http.headers["authorization"] = SECRET
    http.headers["cookie"] = COOKIE
    with mixer.channel() as channel:
        check = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=external_auth_pb2.CheckRequest.SerializeToString,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        response = check(request, timeout=10)
    assert response.status.code == 7
    with MixerClient(mixer.address, timeout=10) as client:
        answer = client.check(
            {"request.headers": {"Authorization": "Bearer other", "cookie": COOKIE}}
        )
    assert answer.status_code == 0
    entries = _entries(log, 2)
    text = log.read_text()
    assert "s3cr3t" not in text and "c00kie" not in text and "Bearer other" not in text
    authz = next(e for e in entries if e["api"] == "ext_authz")
    assert authz["rule"] == "denytoken.rule.istio-system"
    assert authz["code"] == "PERMISSION_DENIED"
    attributes = authz["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["request.headers[authorization]"] == "<masked>"
    assert attributes["request.headers[cookie]"] == "<masked>"
    assert isinstance(authz["latency_ms"], float)
    mixer_entry = next(e for e in entries if e["api"] == "mixer")
    assert mixer_entry["code"] == "OK" and mixer_entry["rule"] == ""
    assert metric(mixer, "mixer_decision_log_total", result="logged") == 2
