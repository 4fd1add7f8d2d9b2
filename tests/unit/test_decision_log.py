"""Decision log entries: masking (names, map keys without case, whole maps, messages), sampling
and the handler lookup, on a real runtime with a real stdio handler's report queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.mask import DEFAULT_MASK, Mask
from mixer.attributes.tracking import References
from mixer.runtime.build import build_runtime, load_snapshot
from mixer.runtime.decision_log import DecisionLog
from mixer.runtime.dispatcher import CheckOutcome
from mixer.runtime.runtime import RuntimeHolder
from mixer.telemetry import ServerMetrics

BAG = Bag(
    {
        "request.headers": StringMap({"Authorization": "Bearer abcdef", "x-user": "eve"}),
        "request.api_key": "key-123456",
        "source.ip": b"\x0a\x00\x00\x07",
    }
)


def _log(sample: float = 1.0, mask: tuple[str, ...] = DEFAULT_MASK) -> DecisionLog:
    counter = Counter("d", "d", ["result"], registry=CollectorRegistry())
    return DecisionLog("stdio", sample, Mask.parse(mask), counter)


def test_mask_parsing() -> None:
    mask = Mask.parse(["a.b", 'request.headers["Cookie"]', " "])
    assert mask.masks("a.b", None) and mask.masks("request.headers", "cookie")
    assert not mask.masks("request.headers", "x-user")
    with pytest.raises(ValueError, match="NAME or NAME"):
        Mask.parse(["request.headers[]"])
    with pytest.raises(ValueError, match="NAME or NAME"):
        Mask.parse(["a[b"])


def test_entry_masks_keys_names_maps_and_messages() -> None:
    outcome = CheckOutcome(
        status_code=7,
        message="handler:key-123456 is not allowed",
        references=References(
            {
                ("request.headers", "authorization"): False,
                ("request.headers", "Authorization"): True,
                ("request.api_key", None): True,
                ("source.ip", None): True,
            }
        ),
        decided_by="r",
    )
    entry = _log().entry("mixer", BAG, outcome, 0.002)
    variables = entry.fields["variables"]
    assert variables["attributes"] == {
        "request.api_key": "<masked>",
        "request.headers[Authorization]": "<masked>",
        "request.headers[authorization]": "<absent>",
        "source.ip": "10.0.0.7",
    }
    assert variables["message"] == "handler:<masked> is not allowed"
    assert variables["code"] == "PERMISSION_DENIED" and variables["latency_ms"] == 2.0
    # A whole map read: its masked keys are masked.
    whole = CheckOutcome(references=References({("request.headers", None): True}))
    shown = _log().entry("mixer", BAG, whole, 0.0).fields["variables"]["attributes"]
    assert "abcdef" not in str(shown) and "eve" in str(shown)
    # Without a mask the value would be there: the masking is what hides it.
    bare = _log(mask=()).entry("mixer", BAG, outcome, 0.0).fields["variables"]
    assert "Bearer abcdef" in str(bare["attributes"])


def test_sampling_and_handler_lookup(tmp_path: Path) -> None:
    config = tmp_path / "c"
    config.mkdir()
    (config / "h.yaml").write_text(
        "apiVersion: config.istio.io/v1alpha2\nkind: handler\n"
        "metadata: {name: stdio, namespace: istio-system}\n"
        "spec:\n  compiledAdapter: stdio\n"
        f"  params: {{logStream: FILE, outputPath: '{tmp_path / 'out.log'}'}}\n"
    )

    async def run() -> str:
        metrics = ServerMetrics.create()
        runtime = await build_runtime(
            load_snapshot(config), metrics, revision="t", metrics_registry=CollectorRegistry()
        )
        holder = RuntimeHolder(runtime)
        try:
            outcome = CheckOutcome()
            rolls = iter([0.1, 0.9, 0.3])
            log = DecisionLog(
                "stdio", 0.5, Mask.parse(()), metrics.decision_log, rng=lambda: next(rolls)
            )
            for _ in range(3):
                log.record(runtime, "mixer", BAG, outcome, 0.0)
            DecisionLog("missing", 1.0, Mask.parse(()), metrics.decision_log).record(
                runtime, "mixer", BAG, outcome, 0.0
            )
        finally:
            await holder.close()
        return generate_latest(metrics.registry).decode()

    text = asyncio.run(run())
    assert 'mixer_decision_log_total{result="logged"} 2.0' in text
    assert 'mixer_decision_log_total{result="sampled_out"} 1.0' in text
    assert 'mixer_decision_log_total{result="no_handler"} 1.0' in text
    assert (tmp_path / "out.log").read_text().count("decisionlog.instance.mixer") == 2


def test_sample_rate_is_bounded() -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        _log(sample=1.5)
