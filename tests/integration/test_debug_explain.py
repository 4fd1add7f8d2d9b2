"""``POST /debug/explain`` on a real server: only with --enable-debug, bounded, counted."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from mixer.server.admin import AdminServer
from tests.mixer_process import MixerProcess


def _post(proc: MixerProcess, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{proc.admin_port}/debug/explain", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_explain_on_the_admin_port(start_mixer: Callable[..., MixerProcess]) -> None:
    proc = start_mixer(extra_args=["--enable-debug", "--max-message-bytes", "4096"])
    attrs = {
        "context.protocol": "http",
        "destination.labels": {"app": "ratings"},
        "source.labels": {"version": "v2"},
    }
    status, answer = _post(proc, json.dumps({"attributes": attrs}).encode())
    assert status == 200, answer
    assert answer["code"] == "OK"
    deny = {r["rule"]: r for r in answer["rules"]}["denyreviewsv3.rule.istio-system"]
    assert deny["matched"] is False
    assert deny["failed_conjunct"] == 'source.labels["version"] == "v3"'
    assert deny["values"] == {"source.labels": {"version": "v2"}}
    # The same request as Envoy's ext_authz CheckRequest, from reviews v3: denied.
    authz = {
        "attributes": {
            "source": {"labels": {"version": "v3"}},
            "destination": {"labels": {"app": "ratings"}},
            "request": {"http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1"}},
        }
    }
    status, answer = _post(proc, json.dumps({"authz": authz}).encode())
    assert status == 200, answer
    assert answer["code"] == "PERMISSION_DENIED"
    assert answer["decided_by"] == "denyreviewsv3.rule.istio-system"
    assert answer["handlers"] == ["denyreviewsv3handler.handler.istio-system"]
    # Bad input gets a clear error; a body over --max-message-bytes is refused unread.
    status, text = _post(proc, b'{"attributes": {"request.size": "lots"}}')
    assert status == 400 and "request.size" in text
    status, text = _post(proc, b"{" + b" " * 5000 + b"}")
    assert status == 413 and "4096" in text
    _, metrics = proc.admin_get("/metrics")
    for result, count in (("ok", 2), ("bad_request", 1), ("too_large", 1)):
        assert f'mixer_debug_explain_total{{result="{result}"}} {count}.0' in metrics


def test_no_post_routes_without_debug() -> None:
    """What the server builds without --enable-debug: an admin server with no POST routes."""
    admin = AdminServer("127.0.0.1", 0, CollectorRegistry(), ready=lambda: True)
    admin.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{admin.port}/debug/explain", data=b"{}", method="POST"
        )
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("expected 404")
        except urllib.error.HTTPError as err:
            assert err.code == 404
            err.close()
    finally:
        admin.stop()
