"""Every crash the fuzzers have found: minimal reproducers, and which bugs are still open.

`CRASHES` is permanent: ``test_fuzz_regressions.py`` feeds every reproducer to its harness, so a
fixed bug stays fixed. `OPEN` names the crashes not fixed yet in ``mixer/``: their regression tests
are strict xfails, and the fuzz runs (suite and long runs) step over inputs that fail the same way
(`tolerate_open`) so they can look for new crashes meanwhile. Fixing a bug: remove its id from
`OPEN` (the strict xfail turns into a failure until you do).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import duration_pb2, timestamp_pb2

from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from mixer.expr import EvaluationError
from mixer.v1 import attributes_pb2, mixer_pb2

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Crash:
    """One bug: the harness, inputs that trigger it, and how it fails while it is open."""

    id: str
    harness: str
    inputs: tuple[bytes, ...]
    """Minimal reproducers for the harness's ``TestOneInput``."""
    error: type[BaseException]
    where: tuple[str, ...]
    """``path:function`` of the innermost frame in ``mixer/`` or ``adapters/`` when it fails."""
    summary: str


def _compressed(msg: attributes_pb2.CompressedAttributes) -> bytes:
    return b"\x00" + msg.SerializeToString()


def _report(*entries: attributes_pb2.CompressedAttributes) -> bytes:
    return b"\x02" + mixer_pb2.ReportRequest(attributes=entries).SerializeToString()


def _check(time: timestamp_pb2.Timestamp) -> bytes:
    req = CheckRequest()
    req.attributes.request.time.CopyFrom(time)
    return b"\x00" + req.SerializeToString()


def _als(http: bool = True, **common: object) -> bytes:
    msg = StreamAccessLogsMessage()
    entries = msg.http_logs.log_entry if http else msg.tcp_logs.log_entry
    entry = entries.add()
    for name, value in common.items():
        getattr(entry.common_properties, name).CopyFrom(value)
    return b"\x01" + msg.SerializeToString()


_Attrs = attributes_pb2.CompressedAttributes
_TS_MAX = 253402300799  # 9999-12-31T23:59:59Z, the last second Python's datetime can hold
_HUGE = 2**62

CRASHES: tuple[Crash, ...] = (
    Crash(
        id="decoder-timestamp-range",
        harness="decoder",
        inputs=(
            _compressed(_Attrs(timestamps={0: timestamp_pb2.Timestamp(seconds=_HUGE)})),
            _compressed(_Attrs(timestamps={0: timestamp_pb2.Timestamp(seconds=-(2**40))})),
            _report(_Attrs(timestamps={0: timestamp_pb2.Timestamp(seconds=_TS_MAX + 1)})),
        ),
        error=OverflowError,
        where=("mixer/attributes/compressed.py:_timestamp",),
        summary="a timestamp outside datetime's range (years 1..9999) raises OverflowError",
    ),
    Crash(
        id="decoder-duration-range",
        harness="decoder",
        inputs=(_compressed(_Attrs(durations={0: duration_pb2.Duration(seconds=_HUGE)})),),
        error=OverflowError,
        where=("mixer/attributes/compressed.py:_duration",),
        summary="a duration beyond timedelta's range (999,999,999 days) raises OverflowError",
    ),
    Crash(
        id="envoy-check-time-range",
        harness="envoy",
        inputs=(
            _check(time=timestamp_pb2.Timestamp(seconds=_HUGE)),
            _check(time=timestamp_pb2.Timestamp(seconds=0, nanos=-1)),
        ),
        error=ValueError,
        where=("mixer/attributes/envoy.py:bag_from_check_request",),
        summary="ext_authz request.time outside Timestamp's valid range raises ValueError "
        "(protobuf's ToDatetime), which the ext_authz servicer answers with INTERNAL",
    ),
    Crash(
        id="envoy-als-duration-range",
        harness="envoy",
        inputs=(
            _als(duration=duration_pb2.Duration(seconds=_HUGE)),
            _als(http=False, duration=duration_pb2.Duration(seconds=_HUGE)),
            _als(time_to_last_downstream_tx_byte=duration_pb2.Duration(seconds=_HUGE)),
            _als(
                start_time=timestamp_pb2.Timestamp(seconds=_TS_MAX),
                duration=duration_pb2.Duration(seconds=86400),
            ),
        ),
        error=OverflowError,
        where=(
            "mixer/attributes/envoy.py:_response_duration",
            "mixer/attributes/envoy.py:_tcp_entry",
            "mixer/attributes/envoy.py:_common",
        ),
        summary="an ALS duration beyond timedelta's range, or start_time + duration past year "
        "9999, raises OverflowError (the ALS servicer catches only ValueError: INTERNAL)",
    ),
    Crash(
        id="config-yaml-construct",
        harness="config",
        inputs=(
            b"a: 2001-02-30\n",
            b"a: 2001-13-01\n",
            b"a: !!int abc\n",
            b"a: !!int ''\n",
            b"a: !!float abc\n",
            b"a: !!bool abc\n",
            b"a: !!timestamp abc\n",
        ),
        error=Exception,
        where=("mixer/config/source.py:read_documents",),
        summary="PyYAML's SafeConstructor raises ValueError/KeyError/AttributeError/IndexError "
        "(not YAMLError) for out-of-range dates and explicitly tagged bad scalars; "
        "check_config lets them escape",
    ),
    Crash(
        id="expr-timezone-oserror",
        harness="expr",
        inputs=(
            b'\x01\x00timestamp("2009-02-13T02:00:00Z").getHours("America")',
            b'\x01\x00timestamp("2009-02-13T02:00:00Z").getDayOfMonth("' + b"a" * 300 + b'")',
            b'\x01\x01request.time.getHours(connection.mtls ? "America" : "UTC")',
        ),
        error=OSError,
        where=("mixer/expr/_cel_runtime.py:_zone",),
        summary="a CEL timestamp accessor's timezone argument naming a tzdata directory "
        "('America') or longer than NAME_MAX makes ZoneInfo raise IsADirectoryError/OSError, "
        "which escapes compile() (constant folding) and Program.evaluate()",
    ),
    Crash(
        id="expr-mixer-constant-logical",
        harness="expr",
        inputs=(b"\x00\x001 && a", b'\x00\x00"x" || a', b" 024 && response.c11"),
        error=EvaluationError,
        where=("mixer/expr/_mixer_compiler.py:_require_bool",),
        summary="without a vocabulary, a Mixer-dialect '&&'/'||' whose left operand is a "
        "non-BOOL constant makes compile() raise EvaluationError instead of CompileError",
    ),
    Crash(
        id="expr-mixer-unicode-escape",
        harness="expr",
        inputs=(
            b'\x00\x00"\\U80000000"',
            b'\x00\x01destination.ip == ip("::\\U8002F60068.0.\xc0")',
        ),
        error=OverflowError,
        where=("mixer/expr/_mixer_parser.py:_unquote",),
        summary="a Mixer-dialect string literal with a \\U escape of 0x80000000 or more makes "
        "chr() raise OverflowError (the CEL parser reports a CompileError)",
    ),
    Crash(
        id="config-recursive-alias-in-a-key",
        harness="config",
        inputs=(
            b"# expect: recursive_alias.yaml:)2: invalid YAML: recursive alias\n"
            b"apiVersion: config.istio.io/v1alpha2\nkind: handler\nmetadata:\n  name: loop\n"
            b"spec: &spec\n  compiledAdapter: denier\n  params:\n  ?  again: *spec\n",
        ),
        error=RecursionError,
        where=("mixer/config/source.py:expanded_size",),
        summary="an alias to an ancestor inside a complex mapping key ('? {again: *spec}') "
        "escaped the recursive-alias check, and counting the expanded size recursed forever",
    ),
)

OPEN: frozenset[str] = frozenset()


def _innermost_own_frame(exc: BaseException) -> str | None:
    """``path:function`` of the innermost traceback frame inside mixer/ or adapters/."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            relative = Path(frame.filename).resolve().relative_to(ROOT)
        except ValueError:
            continue
        if relative.parts and relative.parts[0] in ("mixer", "adapters"):
            found = f"{relative.as_posix()}:{frame.name}"
    return found


def open_crash(harness: str, exc: BaseException) -> Crash | None:
    """The open bug `exc` (raised by `harness`) is an instance of, if any."""
    for crash in CRASHES:
        if (
            crash.id in OPEN
            and crash.harness == harness
            and isinstance(exc, crash.error)
            and _innermost_own_frame(exc) in crash.where
        ):
            return crash
    return None


def tolerate_open(harness: str, fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """`fn`, stepping over failures that match an open bug of `harness`.

    The first input that hits each open bug is reported on stderr, so a run's log shows which
    known bugs it reached.
    """
    reported: set[str] = set()

    def run(data: bytes) -> None:
        try:
            fn(data)
        except Exception as exc:
            crash = open_crash(harness, exc)
            if crash is None:
                raise
            if crash.id not in reported:
                reported.add(crash.id)
                print(f"INFO: stepped over open bug {crash.id}: {data[:200]!r}", file=sys.stderr)

    return run
