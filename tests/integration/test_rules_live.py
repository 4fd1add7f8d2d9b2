"""Rules on a running server: deny decisions, referenced attributes, hot reload, namespaces."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mixer.client import MixerClient
from tests.integration.live import RATINGS_FROM_V3, ratings, write_rule
from tests.mixer_process import FLAVOURS, MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]


@pytest.fixture(params=FLAVOURS)
def server_flavour(request: pytest.FixtureRequest) -> str:
    """Every server of this module runs on each flavour (`mixer serve --server-flavour`)."""
    return str(request.param)


@pytest.mark.parametrize("lang", ["CEL", "CEXL"])
def test_deny_rule_denies_exactly_the_matching_check(
    start_mixer: Start, tmp_path: Path, lang: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rule(rules, lang=lang)
    mixer = start_mixer(rules)
    with MixerClient(mixer.address) as client:
        denied = client.check(ratings("v3"))
        allowed = client.check(ratings("v2"))
        other = client.check({"destination.labels": {"app": "reviews"}, "source.labels": {}})
    assert denied.status_code == 7
    assert denied.message == "denier.handler.istio-system:Not allowed"
    assert allowed.status_code == 0
    assert other.status_code == 0
    read = {(r["name"], r.get("map_key"), r["condition"]) for r in denied.referenced}
    assert ("destination.labels", "app", "EXACT") in read
    assert ("source.labels", "version", "EXACT") in read
    assert all(r["name"] != "request.path" for r in denied.referenced)
    _, text = mixer.admin_get("/metrics")
    decisions = {
        (s.labels["rule"], s.labels["code"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mixer_check_results_total"
    }
    assert decisions == {("deny.rule.istio-system", "PERMISSION_DENIED"): 1, ("", "OK"): 2}


def test_editing_the_rule_flips_the_decision_without_failed_requests(
    start_mixer: Start, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rule(rules)
    mixer = start_mixer(rules)
    errors: list[str] = []
    served = [0]
    stop = threading.Event()

    def load() -> None:
        with MixerClient(mixer.address, timeout=5) as client:
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    client.check(ratings("v3", **{"request.id": str(served[0])}))
                    served[0] += 1
                except grpc.RpcError as err:
                    errors.append(f"{err.code()}: {err.details()}")

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        with MixerClient(mixer.address) as client:
            for i in range(20):
                version = f"v{i % 2 + 3}"  # alternately deny v3 and v4
                write_rule(rules, match=RATINGS_FROM_V3.replace("v3", version))
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    if client.check(ratings(version)).status_code == 7:
                        break
                    time.sleep(0.02)
                else:
                    pytest.fail(f"reload {i}: the rule change was not live within 2 s")
                assert client.check(ratings("v5")).status_code == 0
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert served[0] > 0
    assert errors == []


def test_a_broken_edit_keeps_the_old_decision_and_reports_the_error(
    start_mixer: Start, tmp_path: Path
) -> None:

    rules = tmp_path / "rules"
    rules.mkdir()
    write_rule(rules)
    mixer = start_mixer(rules)
    before = mixer.debug_config()
    write_rule(rules, match='destination.lables["app"] == "ratings"')
    deadline = time.monotonic() + 5
    config = before
    while time.monotonic() < deadline:
        config = mixer.debug_config()
        if config["last_errors"]:
            break
        time.sleep(0.05)
    errors = config["last_errors"]
    assert isinstance(errors, list) and errors, config
    assert "deny.yaml:" in errors[0] and "destination.lables" in errors[0]
    assert config["revision"] == before["revision"]
    with MixerClient(mixer.address) as client:
        assert client.check(ratings("v3")).status_code == 7
    _, text = mixer.admin_get("/metrics")
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["mixer_config_last_reload_success"] == 0
    assert samples["mixer_config_errors_total"] >= 1
    # A failed load is timed too (the memory bench reads this gauge).
    assert samples["mixer_config_last_load_seconds"] > 0


def test_rules_in_namespace_foo_do_not_affect_traffic_to_bar(
    start_mixer: Start, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rule(rules, match="true", ns="foo")
    mixer = start_mixer(rules)
    with MixerClient(mixer.address) as client:
        to_foo = client.check({"destination.namespace": "foo"})
        to_bar = client.check({"destination.namespace": "bar"})
        outbound_from_foo = client.check(
            {"context.reporter.kind": "outbound", "source.namespace": "foo",
             "destination.namespace": "bar"}
        )  # fmt: skip
    assert to_foo.status_code == 7
    assert to_bar.status_code == 0
    assert outbound_from_foo.status_code == 7


def test_sighup_reloads(start_mixer: Start, tmp_path: Path) -> None:
    import signal

    rules = tmp_path / "rules"
    rules.mkdir()
    write_rule(rules, match="false")
    mixer = start_mixer(rules, extra_args=["--no-watch"])
    with MixerClient(mixer.address) as client:
        assert client.check(ratings("v3")).status_code == 0
        write_rule(rules)
        mixer.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and client.check(ratings("v3")).status_code == 0:
            time.sleep(0.05)
        assert client.check(ratings("v3")).status_code == 7
