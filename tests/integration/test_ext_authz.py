"""ext_authz v3 driven by Envoy's own generated client (xds-protos, isolated) over a real socket."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.compat.harness import run_envoy_client
from tests.integration.live import metric
from tests.mixer_process import FLAVOURS, MixerProcess


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

RULES = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: denier, namespace: istio-system}
spec:
  compiledAdapter: denier
  params:
    status: {code: 7, message: reviews v3 may not call ratings}
    directResponse: {body: "go away\\n"}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: unauth, namespace: istio-system}
spec:
  compiledAdapter: denier
  params:
    status: {code: 16, message: who are you}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec:
  compiledTemplate: checknothing
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: denyv3, namespace: istio-system}
spec:
  match: destination.labels["app"] == "ratings" && source.labels["version"] == "v3"
  actions: [{handler: denier, instances: [nothing]}]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: needuser, namespace: istio-system}
spec:
  match: request.path == "/private"
  actions: [{handler: unauth, instances: [nothing]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: badagents, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {blacklist: true, overrides: [evilbot]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: agent, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params: {value: 'request.useragent | ""'}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: blockagents, namespace: istio-system}
spec:
  actions: [{handler: badagents, instances: [agent]}]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: tag, namespace: istio-system}
spec:
  match: match(request.path, "/api/*")
  requestHeaderOperations:
  - {name: x-checked-by, values: ['"mixer"']}
  - name: x-user
    values: ['request.headers["x-user"] | "anonymous"']
  - {name: x-internal, operation: REMOVE}
  responseHeaderOperations:
  - {name: x-policy, values: ['"tagged"']}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotas, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas:
    - {name: rq.instance.istio-system, maxAmount: 2, validDuration: 60s,
       rateLimitAlgorithm: FIXED_WINDOW}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: rq, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {path: request.path}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: rq, namespace: istio-system}
spec:
  actions: [{handler: quotas, instances: [rq]}]
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: limited, namespace: istio-system}
spec:
  rules:
  - match: [{clause: {request.path: {prefix: /limited}}}]
    quotas: [{quota: rq, charge: 1}]
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: limited, namespace: istio-system}
spec:
  quotaSpecs: [{name: limited}]
  services: [{service: "*"}]
"""


_ids = itertools.count()


def request(
    path: str, *, app: str = "productpage", version: str = "v1", agent: str = "curl/8"
) -> dict[str, Any]:
    headers = {
        "user-agent": agent,
        "x-user": "alice",
        "x-internal": "1",
        "x-request-id": f"req-{next(_ids)}",
    }
    return {
        "attributes": {
            "source": {
                "address": {"socket_address": {"address": "10.0.0.7", "port_value": 4711}},
                "labels": {"version": version},
                "principal": "spiffe://cluster.local/ns/default/sa/reviews",
            },
            "destination": {
                "address": {"socket_address": {"address": "10.0.0.9", "port_value": 9080}},
                "labels": {"app": app},
            },
            "request": {
                "http": {
                    "id": "1",
                    "method": "GET",
                    "path": path,
                    "host": "ratings:9080",
                    "scheme": "http",
                    "headers": headers,
                }
            },
        }
    }


@pytest.fixture
def mixer(start_mixer: Start, tmp_path: Path) -> MixerProcess:
    rules = tmp_path / "authz-rules"
    rules.mkdir()
    (rules / "authz.yaml").write_text(RULES)
    return start_mixer(rules)


def check(mixer: MixerProcess, req: dict[str, Any]) -> dict[str, Any]:
    result = run_envoy_client(mixer.address, "check", req)
    assert result["ok"], result
    response: dict[str, Any] = result["response"]
    return response


def test_deny_rule_gets_403_with_the_configured_body(mixer: MixerProcess) -> None:
    resp = check(mixer, request("/ratings/1", app="ratings", version="v3"))
    assert resp["status"]["code"] == 7
    denied = resp["denied_response"]
    assert denied["status"]["code"] == "Forbidden"
    assert denied["body"] == "go away\n"
    assert resp["dynamic_metadata"]["mixer"]["rule"] == "denyv3.rule.istio-system"


def test_listchecker_blacklist_gets_its_status(mixer: MixerProcess) -> None:
    resp = check(mixer, request("/x", agent="evilbot"))
    assert resp["status"]["code"] == 7
    assert resp["denied_response"]["status"]["code"] == "Forbidden"
    assert "evilbot is blacklisted" in resp["denied_response"]["body"]


def test_allowed_request_gets_ok_with_headers_set_exactly_once(mixer: MixerProcess) -> None:
    resp = check(mixer, request("/api/v1/things"))
    assert resp["status"]["code"] == 0
    ok = resp["ok_response"]
    headers = [
        (h["header"]["key"], h["header"]["value"], h["append_action"]) for h in ok["headers"]
    ]
    assert sorted(headers) == [
        ("x-checked-by", "mixer", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ("x-user", "alice", "OVERWRITE_IF_EXISTS_OR_ADD"),
    ]
    assert ok["headers_to_remove"] == ["x-internal"]
    assert [(h["header"]["key"], h["header"]["value"]) for h in ok["response_headers_to_add"]] == [
        ("x-policy", "tagged")
    ]


def test_unauthenticated_maps_to_401(mixer: MixerProcess) -> None:
    resp = check(mixer, request("/private"))
    assert resp["status"]["code"] == 16
    assert resp["denied_response"]["status"]["code"] == "Unauthorized"


def test_quota_from_quota_spec_maps_exhaustion_to_429(mixer: MixerProcess) -> None:
    answers = [check(mixer, request("/limited/a")) for _ in range(3)]
    assert [a["status"]["code"] for a in answers] == [0, 0, 8]
    assert answers[2]["denied_response"]["status"]["code"] == "TooManyRequests"
    assert metric(mixer, "mixer_quota_results_total", quota="rq", result="granted") == 2
    assert metric(mixer, "mixer_quota_results_total", quota="rq", result="exhausted") == 1
    assert (
        metric(mixer, "mixer_check_results_total", api="ext_authz", code="RESOURCE_EXHAUSTED") == 1
    )
    # paths outside the QuotaSpec's match are not charged
    assert all(check(mixer, request("/free"))["status"]["code"] == 0 for _ in range(3))


def test_by_default_a_reused_request_id_is_charged_every_time(mixer: MixerProcess) -> None:
    # x-request-id may come from the end user: without --authz-dedup-header it is no dedup id
    first = request("/limited/retry")
    results = run_envoy_client(mixer.address, "check", [first] * 4)
    assert [r["response"]["status"]["code"] for r in results] == [0, 0, 8, 8]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_retry_with_the_configured_dedup_header_is_not_charged_twice(
    start_mixer: Start, tmp_path: Path, how: str
) -> None:
    rules = tmp_path / "authz-rules"
    rules.mkdir()
    (rules / "authz.yaml").write_text(RULES)
    if how == "flag":
        mixer = start_mixer(rules, extra_args=["--authz-dedup-header", "X-Request-Id"])
    else:
        mixer = start_mixer(rules, env={"MIXER_AUTHZ_DEDUP_HEADER": "x-request-id"})
    first = request("/limited/retry")
    # Envoy retrying one request four times, on one channel, well within the dedup window
    results = run_envoy_client(mixer.address, "check", [first] * 4)
    assert [r["response"]["status"]["code"] for r in results] == [0, 0, 0, 0]
    assert [check(mixer, request("/limited/retry"))["status"]["code"] for _ in range(2)] == [0, 8]
