"""Issue 20, findings 5-10: a client that makes the server hold memory or spend time.

Each test runs one attack from loopback, bounded in count and time, against a real `mixer serve`
with the shipped rules, and asserts the bound: the answer's code, the crossing counted in a
metric, RSS growth, a concurrent Check's latency, what the log holds.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mixer.attributes.compressed import encode_report
from mixer.client import MixerClient
from mixer.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from mixer.envoy.service.ratelimit.v3 import rls_pb2
from mixer.v1 import mixer_pb2
from tests.mixer_process import ROOT, MixerProcess

pytestmark = pytest.mark.integration

RLS = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
REPORT = "/istio.mixer.v1.Mixer/Report"
CHECK = "/istio.mixer.v1.Mixer/Check"

# Lowered from their defaults so that each attack crosses them in a fraction of a second.
FLAGS = [
    "--check-cache-bytes", str(4 * 1024 * 1024),
    "--max-series", "100",
    "--max-quota-bucket-bytes", str(256 * 1024),
    "--admin-timeout", "1",
    "--admin-max-connections", "16",
]  # fmt: skip

HTTP = {"context.protocol": "http", "request.path": "/", "source.ip": b"\x7f\x00\x00\x01"}


@pytest.fixture(scope="module")
def mixer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixerProcess]:
    """One server for the module's attacks, one after another, with ordinary Checks running
    beside them all the while: their p99 and the server's peak RSS are printed and bounded."""
    base = tmp_path_factory.mktemp("hostile")
    shutil.copytree(ROOT / "rules", base / "rules")
    proc = MixerProcess(base / "rules", base / "mixer.log", extra_args=FLAGS)
    proc.start()
    stream = _Stream(proc)
    stream.start()
    try:
        yield proc
    finally:
        stream.stop()
        proc.stop()
    latencies = sorted(stream.latencies)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    print(
        f"\nordinary Checks beside the attacks: {len(latencies)}, p99 {p99 * 1000:.1f} ms, "
        f"errors {stream.errors}; peak RSS {stream.peak_rss:.0f} MiB"
    )
    assert latencies and stream.errors == 0
    assert stream.peak_rss < 400
    assert p99 < 0.05


class _Stream(threading.Thread):
    """A steady stream of ordinary Checks (20 a second at most) and RSS samples."""

    def __init__(self, proc: MixerProcess) -> None:
        super().__init__(daemon=True)
        self._proc = proc
        self._stop_event = threading.Event()
        self.latencies: list[float] = []
        self.errors = 0
        self.peak_rss = 0.0

    def run(self) -> None:
        deadline = time.monotonic() + 300
        with MixerClient(self._proc.address, timeout=10) as client:
            while not self._stop_event.is_set() and time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    ok = client.check(HTTP).status_code == 0
                except grpc.RpcError:
                    ok = False
                self.latencies.append(time.perf_counter() - start)
                self.errors += not ok
                with contextlib.suppress(OSError):
                    self.peak_rss = max(self.peak_rss, rss_mib(self._proc))
                self._stop_event.wait(0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=15)


def rss_mib(proc: MixerProcess) -> float:
    assert proc.proc is not None
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def threads(proc: MixerProcess) -> int:
    assert proc.proc is not None
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return int(status.split("Threads:")[1].split()[0])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, parsed in Prometheus' text format."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def crossed(proc: MixerProcess, limit: str) -> float:
    return scrape(proc.admin_port).get(("mixer_limit_exceeded_total", (("limit", limit),)), 0.0)


class CheckProbe:
    """Ordinary Checks in a thread while an attack runs; their latencies in seconds."""

    def __init__(self, proc: MixerProcess) -> None:
        self._client = MixerClient(proc.address, timeout=10)
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._collecting = True

    def _run(self) -> None:
        deadline = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < deadline:
            start = time.perf_counter()
            answer = self._client.check(HTTP)
            self.latencies.append(time.perf_counter() - start)
            assert answer.status_code == 0
            time.sleep(0.005)

    def __enter__(self) -> CheckProbe:
        self._client.check(HTTP)  # warm the channel
        # The latencies are the server's: a full collection of this test process's heap
        # (large by the end of the suite) would pause the probe's thread instead.
        gc.collect()
        self._collecting = gc.isenabled()
        gc.disable()
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=15)
        if self._collecting:
            gc.enable()
        self._client.close()
        assert self.latencies, "the probe made no Check"
        print(
            f"concurrent Checks: {len(self.latencies)}, "
            f"median {statistics.median(self.latencies) * 1000:.1f} ms, "
            f"max {max(self.latencies) * 1000:.1f} ms"
        )


def rpc_error(fn: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def rls_request(descriptors: list[list[tuple[str, str]]]) -> rls_pb2.RateLimitRequest:
    req = rls_pb2.RateLimitRequest(domain="edge")
    for entries in descriptors:
        d = req.descriptors.add()
        for key, value in entries:
            d.entries.append(ratelimit_pb2.RateLimitDescriptor.Entry(key=key, value=value))
    return req


def call(proc: MixerProcess, method: str, request: object, response: object) -> object:
    with proc.channel() as channel:
        stub = channel.unary_unary(
            method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,  # type: ignore[attr-defined]
        )
        return stub(request, timeout=30)


# -- 5: the check cache, bounded in bytes ------------------------------------------------------


def test_check_cache_is_bounded_in_bytes(mixer: MixerProcess) -> None:
    before = rss_mib(mixer)
    with MixerClient(mixer.address, timeout=10) as client:
        for i in range(600):  # 36 MB of distinct, cacheable user agents
            agent = f"{i:06d}" + "a" * 60_000
            assert client.check({**HTTP, "request.useragent": agent}).status_code == 0
    grown = rss_mib(mixer) - before
    print(f"RSS growth after 36 MB of user agents: {grown:.1f} MiB")
    assert crossed(mixer, "check_cache_bytes") > 0
    assert grown < 24, f"RSS grew {grown:.1f} MiB with a 4 MiB check cache"


METRIC = "istio_requests_total"


# -- 6: series per metric capped, overflow in one series ---------------------------------------


def test_prometheus_series_per_metric_are_capped(mixer: MixerProcess) -> None:
    entries = [
        {
            "context.protocol": "http",
            "context.reporter.kind": "inbound",
            "destination.service.host": "reviews.default.svc.cluster.local",
            "destination.service.name": f"svc-{i}",
            "response.code": 200,
            "response.duration": datetime.timedelta(milliseconds=5),
            "request.size": 100,
            "response.size": 1000,
            "request.useragent": "curl/8",
        }
        for i in range(300)
    ]
    with MixerClient(mixer.address, timeout=10) as client:
        client.report(entries)
    deadline = time.monotonic() + 10
    overflow = 0.0
    while time.monotonic() < deadline:
        samples = scrape(mixer.metrics_port)
        overflow = sum(
            v
            for (name, labels), v in samples.items()
            if name == "mixer_series_overflow_total" and labels == (("metric", METRIC),)
        )
        if overflow >= 200:
            break
        time.sleep(0.1)
    series = [k for k in samples if k[0] == METRIC]
    print(f"istio_requests_total series: {len(series)}, overflow reports: {overflow}")
    assert len(series) <= 101
    assert (METRIC, (("overflow", "true"),)) in samples
    assert overflow >= 200


# -- 7: RLS and quota requests bounded, the event loop never held --------------------------------


def test_rls_descriptor_count_is_bounded_and_checks_stay_fast(mixer: MixerProcess) -> None:
    huge = rls_request([[("remote_address", f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")]
                        for i in range(100_000)])  # fmt: skip
    with CheckProbe(mixer) as probe:
        err = rpc_error(lambda: call(mixer, RLS, huge, rls_pb2.RateLimitResponse))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "100000 descriptors is more than the limit of 64" in (err.details() or "")
    assert max(probe.latencies) < 0.5
    assert crossed(mixer, "max_descriptors") >= 1


def test_rls_descriptor_entries_and_bytes_are_bounded(mixer: MixerProcess) -> None:
    big = rls_request([[("remote_address", "x" * 1_000_000)]])
    err = rpc_error(lambda: call(mixer, RLS, big, rls_pb2.RateLimitResponse))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1000000 bytes is more than the limit of 1024" in (err.details() or "")
    deep = rls_request([[("tenant", "t")] * 17])
    err = rpc_error(lambda: call(mixer, RLS, deep, rls_pb2.RateLimitResponse))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "17 entries is more than the limit of 16" in (err.details() or "")


def test_rls_buckets_held_are_bounded(mixer: MixerProcess) -> None:
    before = rss_mib(mixer)
    codes = []
    for i in range(2000):  # distinct clients, each a new bucket of ~1.4 KB
        req = rls_request([[("remote_address", f"{i:05d}" + "b" * 1000)]])
        answer = call(mixer, RLS, req, rls_pb2.RateLimitResponse)
        codes.append(answer.overall_code)  # type: ignore[attr-defined]
    refused = scrape(mixer.metrics_port)
    total = sum(v for k, v in refused.items() if k[0] == "mixer_quota_buckets_refused_total")
    print(f"buckets refused: {total}; RSS growth {rss_mib(mixer) - before:.1f} MiB")
    # Buckets of a one-second window go idle and are swept, so later clients fit again.
    assert codes[0] == rls_pb2.RateLimitResponse.OK
    assert rls_pb2.RateLimitResponse.OVER_LIMIT in codes
    assert 0 < total < 2000
    assert rss_mib(mixer) - before < 20


def test_check_quota_names_are_bounded(mixer: MixerProcess) -> None:
    with MixerClient(mixer.address, timeout=30) as client:
        req = client.check_request(HTTP, {f"q{i}": 1 for i in range(100_000)})
    with CheckProbe(mixer) as probe:
        err = rpc_error(lambda: call(mixer, CHECK, req, mixer_pb2.CheckResponse))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "100000 quota names is more than the limit of 64" in (err.details() or "")
    assert max(probe.latencies) < 0.5


# -- 8: a Report's default_words and its expansion ---------------------------------------------


def _report(words: list[str], entries: int = 1, *, delta: bool = False) -> mixer_pb2.ReportRequest:
    req = mixer_pb2.ReportRequest(default_words=words, global_word_count=0)
    if delta:
        req.repeated_attributes_semantics = mixer_pb2.ReportRequest.DELTA_ENCODING
    for _ in range(entries):
        req.attributes.add()
    return req


def test_report_default_words_are_bounded(mixer: MixerProcess) -> None:
    long_word = _report(["w" * 3_000_000])
    err = rpc_error(lambda: call(mixer, REPORT, long_word, mixer_pb2.ReportResponse))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "default_words[0]: 3000000 characters" in (err.details() or "")
    many = _report(["w"] * 400_000)
    err = rpc_error(lambda: call(mixer, REPORT, many, mixer_pb2.ReportResponse))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "400000 words is more than the limit of 4096" in (err.details() or "")


def test_delta_report_expansion_is_bounded(mixer: MixerProcess) -> None:
    # One full access-log entry, then 9,999 empty DELTA entries (2 bytes each) that repeat it.
    full = {
        **HTTP,
        "request.headers": {f"h{i}": "v" for i in range(20)},
        "request.useragent": "a",
        "request.host": "h",
        "request.method": "GET",
        "destination.service.name": "d",
        "source.workload.name": "s",
        "response.code": 200,
        "request.size": 1,
        "response.size": 1,
    }
    req = encode_report([full] * 10_000, delta=True)
    assert req.ByteSize() < 64 * 1024
    lines = len(mixer.log().splitlines())
    err = rpc_error(lambda: call(mixer, REPORT, req, mixer_pb2.ReportResponse))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "attribute values" in (err.details() or "")
    time.sleep(0.5)
    assert len(mixer.log().splitlines()) - lines < 100  # no access-log line per expanded entry


# -- 9: a YAML alias bomb, in `mixer validate` and in the server --------------------------------

BOMB = """apiVersion: config.istio.io/v1alpha2
kind: handler
metadata:
  name: bomb
  namespace: istio-system
spec:
  compiledAdapter: denier
  params:
    a: &a ["x","x","x","x","x","x","x","x","x"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_validate_refuses_an_alias_bomb_quickly(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMB)
    assert len(BOMB) < 700
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mixer", "validate", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=15,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("mixer validate ran for more than 15 s on a 700-byte file")
    assert done.returncode == 1
    assert "--max-config-nodes" in done.stdout
    assert time.monotonic() - start < 15


def test_server_rejects_an_alias_bomb_and_keeps_serving(mixer: MixerProcess) -> None:
    before = rss_mib(mixer)
    bomb = mixer.config_dir / "bomb.yaml"
    bomb.write_text(BOMB)
    try:
        deadline = time.monotonic() + 10
        errors: list[str] = []
        while time.monotonic() < deadline:
            errors = [str(e) for e in mixer.debug_config()["last_errors"]]  # type: ignore[union-attr]
            if errors:
                break
            time.sleep(0.2)
        grown = rss_mib(mixer) - before
        print(f"reload errors: {errors}; RSS growth {grown:.1f} MiB")
        assert any("--max-config-nodes" in e for e in errors)
        assert grown < 50
        with MixerClient(mixer.address, timeout=10) as client:
            assert client.check(HTTP).status_code == 0
    finally:
        bomb.unlink()


# -- 10: the admin port -------------------------------------------------------------------------


def test_admin_port_bounds_stalled_connections(mixer: MixerProcess) -> None:
    base = threads(mixer)
    sockets = []
    try:
        for _ in range(40):  # more than --admin-max-connections
            s = socket.create_connection(("127.0.0.1", mixer.admin_port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost")  # half a request, never finished
            sockets.append(s)
        time.sleep(0.3)
        held = threads(mixer) - base
        print(f"threads held by 40 stalled admin connections: {held}")
        assert held <= 20
        time.sleep(1.5)  # past --admin-timeout: the stalled ones are closed
        assert mixer.admin_get("/healthz")[0] == 200
    finally:
        for s in sockets:
            s.close()
    assert crossed(mixer, "admin_timeout") + crossed(mixer, "admin_max_connections") > 0


def test_admin_client_disconnects_are_one_line(mixer: MixerProcess) -> None:
    start = len(mixer.log())
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", mixer.admin_port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()  # a reset, before the answer is written
    time.sleep(0.5)
    assert mixer.admin_get("/healthz")[0] == 200
    log = mixer.log()[start:]
    assert "Traceback" not in log
    assert "BrokenPipeError" not in log or "admin client" in log


def test_a_large_legal_rls_request_yields_to_concurrent_checks(
    start_mixer: Callable[..., MixerProcess],
) -> None:
    """With --max-descriptors raised, a long request is matched and counted in slices: a
    concurrent Check never waits for the whole of it (a ratio, so that machine load cancels)."""
    proc = start_mixer(extra_args=["--max-descriptors", "20000"])
    big = rls_request([[("remote_address", f"10.{i >> 8}.{i & 255}.1")] for i in range(20_000)])
    with CheckProbe(proc) as probe:
        start = time.perf_counter()
        answer = call(proc, RLS, big, rls_pb2.RateLimitResponse)
        took = time.perf_counter() - start
    print(f"20,000 descriptors answered in {took * 1000:.0f} ms")
    assert len(answer.statuses) == 20_000  # type: ignore[attr-defined]
    assert max(probe.latencies) < took / 3
