"""Traffic through every API of a running mixer, shaped so that every dashboard panel has data.

Four workers run side by side for a fixed time, in rounds (Mixer every second, the three Envoy
APIs every three seconds, staggered):

* Mixer v1 (`mixer.client.MixerClient`): Report batches as Istio 1.4 sidecars send them, for a
  small mesh (both reporters, HTTP and TCP, with and without mutual TLS, 2xx/4xx/5xx, varied
  latency and sizes), and Checks that are allowed (repeated, so the check cache hits), denied by
  ``denyreviewsv3`` and by the ``blockagents`` list, over the ``ratings`` quota, and refused by a
  quota whose Redis is down;
* ext_authz, ALS and RLS with Envoy's own generated stubs (`tests.compat.harness`, a subprocess
  per batch): allowed and denied checks, inbound and outbound access logs (HTTP and TCP), and rate
  limit requests under and over their limits.

Every worker records what the service answered, so the test can assert the traffic did what it
was meant to before it looks at any dashboard.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mixer.client import MixerClient
from tests.compat.harness import run_envoy_client

NAMESPACE = "default"


@dataclass(frozen=True)
class Workload:
    """A workload of the simulated mesh."""

    name: str
    app: str
    version: str
    port: int
    latency_ms: float

    @property
    def host(self) -> str:
        return f"{self.app}.{NAMESPACE}.svc.cluster.local"

    @property
    def principal(self) -> str:
        return f"spiffe://cluster.local/ns/{NAMESPACE}/sa/bookinfo-{self.app}"


PRODUCTPAGE = Workload("productpage-v1", "productpage", "v1", 9080, 30.0)
REVIEWS_V1 = Workload("reviews-v1", "reviews", "v1", 9080, 12.0)
REVIEWS_V3 = Workload("reviews-v3", "reviews", "v3", 9080, 15.0)
RATINGS = Workload("ratings-v1", "ratings", "v1", 9080, 4.0)
DETAILS = Workload("details-v1", "details", "v1", 9080, 8.0)
# Every workload is both a client and a server, so any workload a dashboard variable picks has
# inbound and outbound traffic.
EDGES: tuple[tuple[Workload, Workload], ...] = (
    (PRODUCTPAGE, REVIEWS_V1),
    (PRODUCTPAGE, REVIEWS_V3),
    (REVIEWS_V1, RATINGS),
    (REVIEWS_V3, RATINGS),
    (RATINGS, DETAILS),
    (DETAILS, PRODUCTPAGE),
)
# One round's HTTP responses per edge and reporter: mostly OK, some 404 and 503.
CODES = (200, 200, 404, 200, 503, 200)

RLS_DOMAIN = "sample-app"  # deploy/mixer/ratelimit.yaml
QUOTA = "requestcountquota"
OUTAGE_QUOTA = "outagequota"
REPORT_BATCH = 20


@dataclass
class Outcomes:
    """What the service answered, per API, counted by a short outcome name."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, api: str, outcome: str, n: int = 1) -> None:
        with self._lock:
            self.counts.setdefault(api, Counter())[outcome] += n

    def fail(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)


def _timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.6f}s"


def _latency_ms(dst: Workload, i: int) -> float:
    # A spread around the workload's typical latency, with a slow tail for the p99 panels.
    return dst.latency_ms * (0.5 + (i % 7) / 6) * (8 if i % 10 == 9 else 1)


# --------------------------------------------------------------------------------- Mixer v1


def mixer_report_entries(round_no: int) -> list[dict[str, object]]:
    """One round of Istio 1.4 sidecar reports for every edge, from both ends."""
    now = datetime.datetime.now(datetime.UTC)
    entries: list[dict[str, object]] = []
    for (src, dst), kind in itertools.product(EDGES, ("outbound", "inbound")):
        base: dict[str, object] = {
            "context.reporter.kind": kind,
            "source.workload.name": src.name,
            "source.workload.namespace": NAMESPACE,
            "source.principal": src.principal,
            "source.labels": {"app": src.app, "version": src.version},
            "destination.workload.name": dst.name,
            "destination.workload.namespace": NAMESPACE,
            "destination.principal": dst.principal,
            "destination.labels": {"app": dst.app, "version": dst.version},
            "destination.service.host": dst.host,
            "destination.service.name": dst.app,
            "destination.service.namespace": NAMESPACE,
            "destination.port": dst.port,
        }
        for i, code in enumerate(CODES):
            n = round_no * len(CODES) + i
            entries.append(
                {
                    **base,
                    "context.protocol": "http",
                    "connection.mtls": i % 2 == 0,
                    "request.time": now,
                    "request.method": "GET",
                    "request.path": f"/{dst.app}/{n}",
                    "request.useragent": "Envoy/1.4",
                    "request.size": 50 + 40 * (n % 5),
                    "response.size": 300 + 700 * (n % 4),
                    "response.code": code,
                    "response.duration": datetime.timedelta(milliseconds=_latency_ms(dst, n)),
                    "response.time": now + datetime.timedelta(milliseconds=_latency_ms(dst, n)),
                }
            )
        for event, mtls in (("open", True), ("close", True), ("open", False), ("close", False)):
            entries.append(
                {
                    **base,
                    "context.protocol": "tcp",
                    "context.time": now,
                    "connection.mtls": mtls,
                    "connection.event": event,
                    "connection.sent.bytes": 0 if event == "open" else 2048 + round_no,
                    "connection.received.bytes": 0 if event == "open" else 512 + round_no,
                    "connection.duration": datetime.timedelta(milliseconds=250),
                }
            )
    return entries


CHECKS: tuple[tuple[str, dict[str, object], dict[str, int]], ...] = (
    # (expected outcome, attributes, quotas)
    (
        "allowed",
        {
            "context.protocol": "http",
            "destination.labels": {"app": "reviews"},
            "source.labels": {"app": "productpage", "version": "v1"},
            "request.useragent": "Envoy/1.4",
            "request.path": "/api/reviews",
            "destination.service.name": "reviews",
        },
        {QUOTA: 1},
    ),
    (
        # A minimal client that sends no protocol and no labels: rules that read them fail to
        # evaluate (counted as rule match errors) and do not match, so the check is allowed.
        "allowed",
        {"destination.service.name": "details"},
        {},
    ),
    (
        "denied:PERMISSION_DENIED",
        {
            "context.protocol": "http",
            "destination.labels": {"app": "ratings"},
            "source.labels": {"app": "reviews", "version": "v3"},
            "request.useragent": "Envoy/1.4",
        },
        {},
    ),
    (
        "denied:PERMISSION_DENIED",
        {
            "context.protocol": "http",
            "destination.labels": {"app": "details"},
            "source.labels": {"app": "productpage", "version": "v1"},
            "request.useragent": "BadBot/1.0",
        },
        {},
    ),
    (
        "denied:RESOURCE_EXHAUSTED",
        {
            "context.protocol": "http",
            "destination.labels": {"app": "ratings"},
            "source.labels": {"app": "reviews", "version": "v1"},
            "request.useragent": "Envoy/1.4",
        },
        {QUOTA: 25},  # more than the ratings budget (20) can ever grant
    ),
    (
        "backend-unavailable",
        {
            "context.protocol": "http",
            "destination.labels": {"app": "details"},
            "source.labels": {"app": "productpage", "version": "v1"},
            "request.useragent": "Envoy/1.4",
        },
        {OUTAGE_QUOTA: 1},  # its Redis is down: the quota fails, the check is refused
    ),
)
_CODE_NAMES = {0: "OK", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 14: "UNAVAILABLE"}


def _unavailable(message: str) -> bool:
    """A quota backend (Redis) that did not answer in time: a real outcome under CPU contention
    (the check path allows 50 ms), counted and shown on the dashboards, not a test error."""
    return "backend unavailable" in message


def mixer_round(client: MixerClient, round_no: int, outcomes: Outcomes) -> None:
    entries = mixer_report_entries(round_no)
    # Sidecars flush about a second's worth of entries at a time; smaller batches also keep each
    # Report from holding the server's event loop for long.
    for start in range(0, len(entries), REPORT_BATCH):
        client.report(entries[start : start + REPORT_BATCH])
        outcomes.add("mixer.report", "batches")
    for _ in range(3):
        for expected, attributes, quotas in CHECKS:
            answer = client.check(attributes, dict(quotas))
            code = _CODE_NAMES.get(answer.status_code, str(answer.status_code))
            actual = "allowed" if answer.status_code == 0 else f"denied:{code}"
            if answer.status_code != 0 and _unavailable(answer.message):
                actual = "backend-unavailable"
            outcomes.add("mixer.check", actual)
            if actual not in (expected, "backend-unavailable"):
                outcomes.fail(f"mixer check {attributes}: expected {expected}, got {actual}")


# --------------------------------------------------------------------------------- Envoy


def _peer(workload: Workload, ip: str, port: int, *, principal: bool) -> dict[str, Any]:
    peer: dict[str, Any] = {
        "address": {"socket_address": {"address": ip, "port_value": port}},
        "labels": {"app": workload.app, "version": workload.version},
    }
    if principal:
        peer["principal"] = workload.principal
    return peer


def authz_requests(round_no: int) -> list[tuple[str, dict[str, Any]]]:
    """(expected outcome, CheckRequest) for one ext_authz round."""
    out = []
    cases = (
        ("allowed", PRODUCTPAGE, REVIEWS_V1, "Envoy/1.4", "/api/reviews/1"),
        ("allowed", REVIEWS_V1, RATINGS, "Envoy/1.4", "/api/ratings/1"),
        ("denied", REVIEWS_V3, RATINGS, "Envoy/1.4", "/api/ratings/1"),
        ("denied", PRODUCTPAGE, DETAILS, "sqlmap/1.7", "/api/details/1"),
    )
    for i, (expected, src, dst, agent, path) in enumerate(cases):
        for repeat in range(2):
            out.append(
                (
                    expected,
                    {
                        "attributes": {
                            "source": _peer(src, "10.1.0.7", 40000 + i, principal=repeat == 0),
                            "destination": _peer(dst, "10.1.0.9", dst.port, principal=True),
                            "request": {
                                "time": _timestamp(datetime.datetime.now(datetime.UTC)),
                                "http": {
                                    "method": "GET",
                                    "path": path,
                                    "host": f"{dst.host}:{dst.port}",
                                    "scheme": "http",
                                    "protocol": "HTTP/1.1",
                                    "headers": {
                                        ":authority": f"{dst.host}:{dst.port}",
                                        ":method": "GET",
                                        ":path": path,
                                        "user-agent": agent,
                                        "x-forwarded-for": f"10.1.0.{7 + round_no % 3}",
                                    },
                                },
                            },
                        }
                    },
                )
            )
    return out


def rls_requests() -> list[tuple[str, dict[str, Any]]]:
    """(user, RateLimitRequest) for one RLS round: alice and the batch job go over their limits
    (10 and 2 a second), the on-call engineer is unlimited."""
    plan = (("alice", 12), ("batch-job", 4), ("oncall", 3))
    return [
        (
            user,
            {"domain": RLS_DOMAIN, "descriptors": [{"entries": [{"key": "user", "value": user}]}]},
        )
        for user, count in plan
        for _ in range(count)
    ]


def _als_common(
    src: Workload, dst: Workload, kind: str, n: int, *, mtls: bool, tcp_type: str = ""
) -> dict[str, Any]:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(milliseconds=500)
    common: dict[str, Any] = {
        "start_time": _timestamp(start),
        "time_to_last_downstream_tx_byte": _seconds(_latency_ms(dst, n)),
        "upstream_cluster": f"{kind}|{dst.port}||{dst.host}",
        "downstream_remote_address": {
            "socket_address": {"address": "10.2.0.3", "port_value": 50000}
        },
        "downstream_local_address": {
            "socket_address": {"address": "10.2.0.4", "port_value": dst.port}
        },
        "upstream_remote_address": {
            "socket_address": {"address": "10.2.0.4", "port_value": dst.port}
        },
    }
    if mtls:
        common["tls_properties"] = {
            "peer_certificate_properties": {"subject_alt_name": [{"uri": src.principal}]},
            "local_certificate_properties": {"subject_alt_name": [{"uri": dst.principal}]},
        }
    if tcp_type:
        common["access_log_type"] = tcp_type
        common["duration"] = "0.250s"
    return common


# Envoy's own denials: ext_authz (403, flag UAEX) and the rate limit filter (429, flag RL).
ALS_CODES = (*CODES, 403, 429)
_ALS_FLAGS: dict[int, dict[str, Any]] = {
    403: {"unauthorized_details": {"reason": "EXTERNAL_SERVICE"}},
    429: {"rate_limited": True},
}


def als_streams(round_no: int) -> list[list[dict[str, Any]]]:
    """One ALS stream per reporter kind, as two Envoy workers would send them: HTTP entries
    (varied codes, latencies and sizes, half over mutual TLS) and TCP open/close entries."""
    streams: list[list[dict[str, Any]]] = []
    for kind in ("outbound", "inbound"):
        http_entries = []
        tcp_entries = []
        for e, (src, dst) in enumerate(EDGES[:2]):
            for i, code in enumerate(ALS_CODES):
                n = round_no * len(ALS_CODES) + i + e
                common = _als_common(src, dst, kind, n, mtls=i % 2 == 0)
                if code in _ALS_FLAGS:
                    common["response_flags"] = _ALS_FLAGS[code]
                http_entries.append(
                    {
                        "common_properties": common,
                        "protocol_version": "HTTP11",
                        "request": {
                            "request_method": "GET",
                            "authority": f"{dst.app}:{dst.port}",
                            "path": f"/{dst.app}/{n}",
                            "user_agent": "Envoy/1.31",
                            "request_headers_bytes": "200",
                            "request_body_bytes": str(40 * (n % 6)),
                        },
                        "response": {
                            "response_code": code,
                            "response_headers_bytes": "120",
                            "response_body_bytes": str(500 + 300 * (n % 5)),
                        },
                    }
                )
            for tcp_type, mtls in itertools.product(
                ("TcpUpstreamConnected", "TcpConnectionEnd"), (True, False)
            ):
                tcp_entries.append(
                    {
                        "common_properties": _als_common(
                            src, dst, kind, round_no, mtls=mtls, tcp_type=tcp_type
                        ),
                        "connection_properties": {
                            "received_bytes": str(300 + round_no),
                            "sent_bytes": str(1200 + round_no),
                        },
                    }
                )
        identifier: dict[str, Any] = {
            "node": {"id": f"sidecar~10.2.0.3~{kind}-proxy.{NAMESPACE}", "cluster": "bookinfo"},
            "log_name": kind,
        }
        streams.append(
            [
                {"identifier": identifier, "http_logs": {"log_entry": http_entries}},
                {"tcp_logs": {"log_entry": tcp_entries}},
            ]
        )
    return streams


def authz_round(address: str, round_no: int, outcomes: Outcomes) -> None:
    cases = authz_requests(round_no)
    answers = run_envoy_client(address, "check", [request for _, request in cases])
    for (expected, _), answer in zip(cases, answers, strict=True):
        if not answer["ok"]:
            outcomes.fail(f"ext_authz {expected}: {answer['code']} {answer['details']}")
            continue
        status = answer["response"]["status"]
        actual = "allowed" if status.get("code", 0) == 0 else "denied"
        if actual == "denied" and _unavailable(status.get("message", "")):
            actual = "backend-unavailable"
        outcomes.add("ext_authz", actual)
        if actual not in (expected, "backend-unavailable"):
            outcomes.fail(f"ext_authz: expected {expected}, got {answer['response']}")


def rls_round(address: str, outcomes: Outcomes) -> None:
    cases = rls_requests()
    answers = run_envoy_client(address, "rls", [request for _, request in cases])
    for (user, _), answer in zip(cases, answers, strict=True):
        if not answer["ok"]:
            if answer["code"] == "UNAVAILABLE" and _unavailable(answer["details"]):
                outcomes.add("rls", f"{user}:UNAVAILABLE")
            else:
                outcomes.fail(f"rls {user}: {answer['code']} {answer['details']}")
            continue
        outcomes.add("rls", f"{user}:{answer['response']['overall_code']}")


def als_round(address: str, round_no: int, outcomes: Outcomes) -> None:
    streams = als_streams(round_no)
    answers = run_envoy_client(address, "als", streams)
    for answer in answers:
        if not answer["ok"]:
            outcomes.fail(f"als: {answer['code']} {answer['details']}")
            continue
        outcomes.add("als", "streams")


# --------------------------------------------------------------------------------- driver


def _loop(
    name: str,
    deadline: float,
    schedule: tuple[float, float],
    body: Callable[[int], None],
    outcomes: Outcomes,
    max_rounds: int,
) -> None:
    offset_s, period_s = schedule
    time.sleep(offset_s)
    for round_no in range(max_rounds):
        started = time.monotonic()
        if started >= deadline:
            return
        try:
            body(round_no)
        except Exception as exc:
            outcomes.fail(f"{name} round {round_no}: {type(exc).__name__}: {exc}")
            return
        time.sleep(
            max(0.0, min(period_s - (time.monotonic() - started), deadline - time.monotonic()))
        )


def drive(address: str, duration_s: float) -> Outcomes:
    """Send traffic through every API for `duration_s` seconds; returns what came back."""
    outcomes = Outcomes()
    deadline = time.monotonic() + duration_s
    max_rounds = int(duration_s) + 2
    with MixerClient(address, timeout=5.0) as client:
        # (start offset, period): each Envoy batch is a Python subprocess (about half a CPU
        # second to start), so they run less often than the Mixer rounds and never together.
        workers: dict[str, tuple[tuple[float, float], Callable[[int], None]]] = {
            "mixer": ((0.0, 1.0), lambda n: mixer_round(client, n, outcomes)),
            "ext_authz": ((0.0, 3.0), lambda n: authz_round(address, n, outcomes)),
            "rls": ((1.0, 3.0), lambda n: rls_round(address, outcomes)),
            "als": ((2.0, 3.0), lambda n: als_round(address, n, outcomes)),
        }
        threads = [
            threading.Thread(
                target=_loop,
                args=(name, deadline, schedule, body, outcomes, max_rounds),
                name=f"traffic-{name}",
                daemon=True,
            )
            for name, (schedule, body) in workers.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration_s + 120)
            if thread.is_alive():
                outcomes.fail(f"{thread.name} did not finish")
    return outcomes
