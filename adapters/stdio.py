"""The ``stdio`` adapter: writes ``logentry`` and ``metric`` instances as log lines, as Mixer did.

Params are Mixer's (``mixer/adapter/stdio/config/config.proto``)::

    logStream: STDOUT                 # STDOUT | STDERR | FILE | ROTATED_FILE
    severityLevels: {Notice: INFO}    # merged over Mixer's defaults (INFO/WARN/ERR/FATAL…)
    metricLevel: INFO                 # INFO | WARNING | ERROR
    outputAsJson: true                # false: zap's console form (tab-separated)
    outputLevel: INFO                 # lines below this level are not written
    outputPath: /var/log/mixer.log    # FILE and ROTATED_FILE only
    maxMegabytesBeforeRotation: 100
    maxDaysBeforeRotation: 30         # rotated files older than this are deleted (0: keep)
    maxRotatedFiles: 1000             # rotated files kept (0: keep all)

A JSON line has ``level`` (lower case), ``time`` (``2006-01-02T15:04:05.000000Z``) and ``instance``
(the instance FQN), then one key per log entry variable in name order, or, for a metric, ``value``
and the dimensions in name order. IP addresses are written as text, durations as Go duration text,
timestamps like ``time``; NaN and infinities as strings, as zap does.

Lines are encoded and written by one writer thread per handler, so the event loop never waits on
the disk. Its queue is bounded: when the writer falls that far behind, lines are dropped and the
report call fails with the count (the dispatcher counts it). Rotation follows Mixer's lumberjack:
the file is renamed to ``<name>-<UTC timestamp><ext>`` and a new one started; unlike Mixer, which
swapped the two, ``maxRotatedFiles`` bounds the number of rotated files and
``maxDaysBeforeRotation`` their age.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import enum
import json
import math
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from adapters.base import AdapterInfo, Env, Instance, ParamError
from adapters.toolkit.params import enum_param, param_fields
from adapters.toolkit.text import go_duration, ip_text, zap_time

__all__ = ["INFO", "Level", "Params", "Stream", "build", "parse_params"]


class Stream(enum.Enum):
    """Where lines go."""

    STDOUT = 0
    STDERR = 1
    FILE = 2
    ROTATED_FILE = 3


class Level(enum.IntEnum):
    """Mixer's three levels, ordered."""

    INFO = 0
    WARNING = 1
    ERROR = 2


_LEVEL_TEXT: Final = {Level.INFO: "info", Level.WARNING: "warn", Level.ERROR: "error"}

DEFAULT_SEVERITY_LEVELS: Final = {
    "INFORMATIONAL": Level.INFO,
    "informational": Level.INFO,
    "INFO": Level.INFO,
    "info": Level.INFO,
    "WARNING": Level.WARNING,
    "warning": Level.WARNING,
    "WARN": Level.WARNING,
    "warn": Level.WARNING,
    "ERROR": Level.ERROR,
    "error": Level.ERROR,
    "ERR": Level.ERROR,
    "err": Level.ERROR,
    "FATAL": Level.ERROR,
    "fatal": Level.ERROR,
}

QUEUE_LINES: Final = 10_000
"""Lines a handler's writer may fall behind by before new ones are dropped."""


@dataclass(frozen=True, slots=True)
class Params:
    """The parsed params of one stdio handler."""

    log_stream: Stream = Stream.STDOUT
    severity_levels: Mapping[str, Level] = field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_LEVELS)
    )
    metric_level: Level = Level.INFO
    output_as_json: bool = True
    output_level: Level = Level.INFO
    output_path: str = ""
    max_megabytes_before_rotation: int = 100
    max_days_before_rotation: int = 30
    max_rotated_files: int = 1000


# --------------------------------------------------------------------------------------------
# Params

_FIELDS: Final = (
    "logStream",
    "severityLevels",
    "metricLevel",
    "outputAsJson",
    "outputLevel",
    "outputPath",
    "maxMegabytesBeforeRotation",
    "maxDaysBeforeRotation",
    "maxRotatedFiles",
)


def _non_negative(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamError(path, f"expected a non-negative integer, got {value!r}")
    return value


def parse_params(raw: Mapping[str, Any]) -> Params:
    """Parse and validate a stdio handler's params (camelCase or snake_case keys)."""
    fields = param_fields(raw, "", _FIELDS)

    stream = enum_param(Stream, fields.get("logStream", "STDOUT"), "logStream")
    levels = dict(DEFAULT_SEVERITY_LEVELS)
    raw_levels = fields.get("severityLevels") or {}
    if not isinstance(raw_levels, Mapping):
        raise ParamError("severityLevels", "expected a map of severity to INFO, WARNING or ERROR")
    for severity, level in raw_levels.items():
        levels[str(severity)] = enum_param(Level, level, f"severityLevels.{severity}")
    as_json = fields.get("outputAsJson", True)
    if not isinstance(as_json, bool):
        raise ParamError("outputAsJson", f"expected true or false, got {as_json!r}")
    path = fields.get("outputPath", "")
    if not isinstance(path, str):
        raise ParamError("outputPath", f"expected a string, got {path!r}")
    if stream in (Stream.STDOUT, Stream.STDERR) and path:
        raise ParamError(
            "outputPath", "cannot specify an output path when using a STDOUT or STDERR log stream"
        )
    if stream in (Stream.FILE, Stream.ROTATED_FILE) and not path:
        raise ParamError(
            "outputPath", "need a valid output path when using a FILE or ROTATED_FILE log stream"
        )
    megabytes = _non_negative(
        fields.get("maxMegabytesBeforeRotation", 100), "maxMegabytesBeforeRotation"
    )
    if megabytes == 0:
        raise ParamError("maxMegabytesBeforeRotation", "must be at least 1")
    return Params(
        log_stream=stream,
        severity_levels=levels,
        metric_level=enum_param(Level, fields.get("metricLevel", "INFO"), "metricLevel"),
        output_as_json=as_json,
        output_level=enum_param(Level, fields.get("outputLevel", "INFO"), "outputLevel"),
        output_path=path,
        max_megabytes_before_rotation=megabytes,
        max_days_before_rotation=_non_negative(
            fields.get("maxDaysBeforeRotation", 30), "maxDaysBeforeRotation"
        ),
        max_rotated_files=_non_negative(fields.get("maxRotatedFiles", 1000), "maxRotatedFiles"),
    )


# --------------------------------------------------------------------------------------------
# Encoding (zap's JSON and console encoders as Mixer configured them)


def _json_value(value: object) -> object:
    """A bag value as zap.Any encodes it."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, bytes):
        return ip_text(value) or base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        return zap_time(value)
    if isinstance(value, datetime.timedelta):
        return go_duration(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


@dataclass(frozen=True, slots=True)
class _Entry:
    level: Level
    time: datetime.datetime
    instance: str
    fields: tuple[tuple[str, object], ...]


def _encode(entry: _Entry, as_json: bool) -> str:
    level = _LEVEL_TEXT[entry.level]
    stamp = zap_time(entry.time)
    payload = {key: _json_value(value) for key, value in entry.fields}
    if as_json:
        head: dict[str, object] = {"level": level, "time": stamp, "instance": entry.instance}
        head.update(payload)
        return json.dumps(head, ensure_ascii=False, separators=(",", ":")) + "\n"
    text = f"{stamp}\t{level}\t{entry.instance}"
    if payload:
        text += "\t" + json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text + "\n"


# --------------------------------------------------------------------------------------------
# Sinks (used only by the writer thread)


class _RotatingFile:
    """lumberjack's rotation: size-bounded file, timestamped backups pruned by count and age."""

    def __init__(self, path: str, max_bytes: int, max_files: int, max_days: int) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._max_days = max_days
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._size = os.path.getsize(path)

    def write(self, text: str) -> None:
        size = len(text.encode("utf-8"))
        if self._size and self._size + size > self._max_bytes:
            self._rotate()
        self._file.write(text)
        self._size += size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _backup_name(self) -> str:
        stem, ext = os.path.splitext(self._path)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        name = f"{stem}-{stamp}{ext}"
        serial = 1
        while os.path.exists(name):  # several rotations within one millisecond
            name = f"{stem}-{stamp}.{serial}{ext}"
            serial += 1
        return name

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self._path, self._backup_name())
        self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = 0
        self._prune()

    def _prune(self) -> None:
        directory = os.path.dirname(os.path.abspath(self._path))
        stem, ext = os.path.splitext(os.path.basename(self._path))
        backup = re.compile(
            rf"{re.escape(stem)}-\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{{3}}(\.\d+)?{re.escape(ext)}"
        )
        backups = sorted(
            (entry.stat().st_mtime, entry.path)
            for entry in os.scandir(directory)
            if backup.fullmatch(entry.name) and entry.is_file()
        )
        doomed: list[str] = []
        if self._max_files and len(backups) > self._max_files:
            doomed += [path for _, path in backups[: len(backups) - self._max_files]]
        if self._max_days:
            cutoff = time.time() - self._max_days * 86_400
            doomed += [path for mtime, path in backups if mtime < cutoff and path not in doomed]
        for path in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


class _StreamSink:
    """stdout or stderr; never closed by us."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.flush()


class _FileSink(_StreamSink):
    def __init__(self, path: str) -> None:
        super().__init__(open(path, "a", encoding="utf-8"))  # noqa: SIM115 (closed in close())

    def close(self) -> None:
        self._stream.close()


_Sink = _RotatingFile | _StreamSink
_STOP: Final = object()
_CLOSE_TIMEOUT: Final = 10.0


def _open_sink(params: Params) -> _Sink:
    if params.log_stream is Stream.STDOUT:
        return _StreamSink(sys.stdout)
    if params.log_stream is Stream.STDERR:
        return _StreamSink(sys.stderr)
    if params.log_stream is Stream.FILE:
        return _FileSink(params.output_path)
    return _RotatingFile(
        params.output_path,
        max_bytes=params.max_megabytes_before_rotation * 1024 * 1024,
        max_files=params.max_rotated_files,
        max_days=params.max_days_before_rotation,
    )


# --------------------------------------------------------------------------------------------
# The handler


class StdioHandler:
    """Turns instances into entries on the loop; a writer thread encodes and writes them."""

    def __init__(self, params: Params, env: Env, sink: _Sink) -> None:
        self._params = params
        self._log = env.logger
        self._sink = sink
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_LINES)
        self._thread = threading.Thread(
            target=self._run, name=f"stdio-{env.handler_name}", daemon=True
        )
        self._closed = False
        self._thread.start()

    async def report(self, instances: Sequence[Instance]) -> None:
        """Queue a line per instance at or above ``outputLevel``; raise if some were dropped."""
        dropped = 0
        floor = self._params.output_level
        for instance in instances:
            entry = self._entry(instance)
            if entry is None or entry.level < floor:
                continue
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                dropped += 1
        if dropped:
            raise RuntimeError(f"stdio: {dropped} lines dropped, the writer is behind")

    def _entry(self, instance: Instance) -> _Entry | None:
        fields = instance.fields
        if instance.template == "logentry":
            severity = fields.get("severity")
            level = self._params.severity_levels.get(str(severity), Level.INFO)
            stamp = fields.get("timestamp")
            if not isinstance(stamp, datetime.datetime):
                stamp = datetime.datetime.now(datetime.UTC)
            variables = fields.get("variables") or {}
            return _Entry(level, stamp, instance.name, tuple(sorted(variables.items())))
        if instance.template == "metric":
            dims = fields.get("dimensions") or {}
            return _Entry(
                self._params.metric_level,
                datetime.datetime.now(datetime.UTC),
                instance.name,
                (("value", fields.get("value")), *sorted(dims.items())),
            )
        return None

    def _run(self) -> None:
        as_json = self._params.output_as_json
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < 512:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            try:
                for item in batch:
                    if isinstance(item, _Entry):
                        # One write per line (buffered by the file object) so that rotation
                        # happens at the line that would overflow the file.
                        self._sink.write(_encode(item, as_json))
                self._sink.flush()
            except (OSError, ValueError):
                self._log.exception("stdio: writing %d lines failed", len(batch))

    async def close(self) -> None:
        """Write what is queued, stop the writer and close the file."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.to_thread(self._queue.put, _STOP, True, _CLOSE_TIMEOUT)
            await asyncio.to_thread(self._thread.join, _CLOSE_TIMEOUT)
        except queue.Full:
            self._log.warning("stdio: the writer is stuck; closing with lines still queued")
        self._sink.close()


def build(params: Params, env: Env) -> StdioHandler:
    """Open the output (creating the file if needed) and start the writer thread."""
    return StdioHandler(params, env, _open_sink(params))


INFO = AdapterInfo(
    name="stdio",
    description="Writes logs and metrics to a standard I/O stream",
    templates=frozenset({"logentry", "metric"}),
    parse_params=parse_params,
    build=build,
)
