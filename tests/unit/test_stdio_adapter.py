"""The stdio adapter: Mixer's params, zap-style JSON lines in real files, rotation, backpressure."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import pathlib
import re
import threading
import time
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from adapters import stdio
from adapters.base import Env, Instance, ParamError
from tests.shared_data import require_shared

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def make_env() -> Env:
    return Env(
        handler_name="stdio.handler.istio-system",
        logger=logging.getLogger("test.stdio"),
        registry=CollectorRegistry(),
        clock=time.monotonic,
    )


def read_lines(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def accesslog(severity: str = "Info", **variables: object) -> Instance:
    return Instance(
        "accesslog.instance.istio-system",
        "logentry",
        {
            "severity": severity,
            "timestamp": datetime.datetime(2020, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC),
            "variables": variables,
        },
    )


# ----------------------------------------------------------------------------------------------
# Params


def test_istio_14_stdio_handler_params_parse_with_mixer_defaults() -> None:
    text = require_shared("corpus/istio/helm-mixer/config-1.4.10.yaml.tpl").read_text()
    handler_text = text.split("compiledAdapter: stdio", 1)[1].split("---", 1)[0]
    handler_text = handler_text.replace("{{ .Values.adapters.stdio.outputAsJson }}", "true")
    params = stdio.parse_params(yaml.safe_load(handler_text)["params"])

    assert params == stdio.Params()
    assert params.log_stream is stdio.Stream.STDOUT
    assert params.output_as_json is True
    assert params.severity_levels["FATAL"] is stdio.Level.ERROR
    assert (params.max_megabytes_before_rotation, params.max_rotated_files) == (100, 1000)


def test_severity_levels_merge_over_the_defaults_with_snake_case_keys() -> None:
    params = stdio.parse_params(
        {"severity_levels": {"Notice": "WARNING", "info": 2}, "output_as_json": False}
    )
    assert params.severity_levels["Notice"] is stdio.Level.WARNING
    assert params.severity_levels["info"] is stdio.Level.ERROR
    assert params.severity_levels["WARN"] is stdio.Level.WARNING
    assert params.output_as_json is False


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"logStream": "SYSLOG"}, "logStream", "STDOUT, STDERR, FILE, ROTATED_FILE"),
        ({"outputPath": "/tmp/x.log"}, "outputPath", "cannot specify an output path"),
        ({"logStream": "FILE"}, "outputPath", "need a valid output path"),
        ({"metricLevel": "DEBUG"}, "metricLevel", "INFO, WARNING, ERROR"),
        ({"severityLevels": {"x": "LOUD"}}, "severityLevels.x", "INFO, WARNING, ERROR"),
        ({"outputAsJson": "yes"}, "outputAsJson", "true or false"),
        ({"maxRotatedFiles": -1}, "maxRotatedFiles", "non-negative"),
        ({"outputFormat": "json"}, "outputFormat", "unknown field"),
    ],
)
def test_bad_params_name_the_field(raw: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ParamError) as caught:
        stdio.parse_params(raw)
    assert caught.value.path == path
    assert fragment in caught.value.message


# ----------------------------------------------------------------------------------------------
# Lines


async def test_log_entries_become_zap_json_lines(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "mixer.log"
    handler = stdio.build(
        stdio.parse_params({"logStream": "FILE", "outputPath": str(out)}), make_env()
    )
    await handler.report(
        [
            accesslog(
                "Info",
                sourceIp=bytes([10, 0, 0, 7]),
                latency=datetime.timedelta(milliseconds=12, microseconds=500),
                responseCode=503,
                url="/reviews/1",
                responseTimestamp=datetime.datetime(2020, 5, 6, 7, 8, 10, tzinfo=datetime.UTC),
                headers={"a": "b"},
            ),
            accesslog("WARNING", url="/w"),
            accesslog("fatal", url="/f"),
        ]
    )
    await handler.close()

    first, warning, fatal = read_lines(out)
    assert list(first) == [
        "level",
        "time",
        "instance",
        "headers",
        "latency",
        "responseCode",
        "responseTimestamp",
        "sourceIp",
        "url",
    ]
    assert first == {
        "level": "info",
        "time": "2020-05-06T07:08:09.123456Z",
        "instance": "accesslog.instance.istio-system",
        "headers": {"a": "b"},
        "latency": "12.5ms",
        "responseCode": 503,
        "responseTimestamp": "2020-05-06T07:08:10.000000Z",
        "sourceIp": "10.0.0.7",
        "url": "/reviews/1",
    }
    assert (warning["level"], fatal["level"]) == ("warn", "error")


async def test_metrics_are_written_with_value_and_dimensions(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "metrics.log"
    handler = stdio.build(
        stdio.parse_params({"logStream": "FILE", "outputPath": str(out), "metricLevel": "WARNING"}),
        make_env(),
    )
    await handler.report(
        [
            Instance(
                "requestcount.instance.istio-system",
                "metric",
                {"value": 1, "dimensions": {"response_code": 200, "destination": "reviews"}},
            )
        ]
    )
    await handler.close()

    (line,) = read_lines(out)
    assert list(line) == ["level", "time", "instance", "value", "destination", "response_code"]
    assert line["level"] == "warn"
    assert TIME.match(line["time"])
    assert (line["value"], line["destination"], line["response_code"]) == (1, "reviews", 200)


async def test_output_level_filters_and_console_form_is_tab_separated(
    tmp_path: pathlib.Path,
) -> None:
    out = tmp_path / "console.log"
    params = stdio.parse_params(
        {
            "logStream": "FILE",
            "outputPath": str(out),
            "outputLevel": "WARNING",
            "outputAsJson": False,
        }
    )
    handler = stdio.build(params, make_env())
    await handler.report([accesslog("info", url="/quiet"), accesslog("ERR", url="/loud")])
    await handler.close()

    (line,) = out.read_text().splitlines()
    stamp, level, instance, payload = line.split("\t")
    assert (stamp, level, instance) == (
        "2020-05-06T07:08:09.123456Z",
        "error",
        "accesslog.instance.istio-system",
    )
    assert json.loads(payload) == {"url": "/loud"}


async def test_stdout_stream(capsys: pytest.CaptureFixture[str]) -> None:
    handler = stdio.build(stdio.parse_params({}), make_env())
    await handler.report([accesslog(url="/out")])
    await handler.close()

    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["url"] == "/out"


# ----------------------------------------------------------------------------------------------
# Rotation and backpressure


async def test_rotated_file_rotates_and_keeps_max_rotated_files(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "access.log"
    params = stdio.parse_params(
        {
            "logStream": "ROTATED_FILE",
            "outputPath": str(out),
            "maxMegabytesBeforeRotation": 1,
            "maxRotatedFiles": 2,
        }
    )
    handler = stdio.build(params, make_env())
    padding = "x" * 1000
    for batch in range(40):  # ~4 MB in all: at least three rotations
        await handler.report([accesslog(n=batch * 100 + i, pad=padding) for i in range(100)])
    await handler.close()

    backups = sorted(p for p in tmp_path.iterdir() if p.name != "access.log")
    assert len(backups) == 2
    assert all(re.fullmatch(r"access-\d{4}-.*\.log", p.name) for p in backups)
    for path in [*backups, out]:
        assert path.stat().st_size <= 1024 * 1024
    for path in backups:  # a backup is rotated only when the next line would not fit
        assert path.stat().st_size > 1024 * 1024 - 1100
    numbers = [line["n"] for path in [*backups, out] for line in read_lines(path)]
    # The newest lines survive, in order, ending with the last one written.
    assert numbers == list(range(4000 - len(numbers), 4000))


async def test_a_stalled_writer_drops_lines_without_blocking_report(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # nobody reads it until the end
    try:
        handler = stdio.build(
            stdio.parse_params({"logStream": "FILE", "outputPath": str(fifo)}), make_env()
        )
        started = time.monotonic()
        dropped = 0
        for _ in range(30):
            try:
                await handler.report([accesslog(url="/" + "y" * 200) for _ in range(1000)])
            except RuntimeError as exc:
                assert "lines dropped" in str(exc)
                dropped += 1
        assert time.monotonic() - started < 5.0
        assert dropped > 0

        drained = threading.Event()

        def drain() -> None:
            deadline = time.monotonic() + 20
            while not drained.is_set() and time.monotonic() < deadline:
                try:
                    if not os.read(reader, 1 << 16):
                        time.sleep(0.01)
                except BlockingIOError:
                    time.sleep(0.01)

        thread = threading.Thread(target=drain)
        thread.start()
        await asyncio.wait_for(handler.close(), timeout=20)
        drained.set()
        thread.join(5)
    finally:
        os.close(reader)
