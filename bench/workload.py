"""What the benchmarks send and the configs they send it to.

Configs (written into a directory per server):

* `policy_config`: 50 rules in Mixer's model, a realistic mix for a mesh of 10 services: 20
  deny rules on (destination service, source app) pairs, 10 path-prefix rules with ``match()``,
  8 header and method rules, 2 protocol rules, 5 rules with header operations, 2 listcheckers
  (a user-agent blacklist by RE2 and a source-IP whitelist for one service) and 3 quota rules
  (memquota or redisquota: token bucket, fixed window, rolling window), plus the
  QuotaSpec/QuotaSpecBinding that charges those 3 quotas to ext_authz requests.
* `telemetry_config`: ``rules/telemetry.yaml`` (Istio 1.4's standard metrics) without its
  stdio access log, so a Report costs the metrics and not a JSON line on stdout.
* `rls_config`: an envoyproxy/ratelimit domain with 3 descriptor rules.
* `many_rules_config`: 1,000 rules of the same kinds over 200 services, in 10 files.

Requests: every Check is distinct (its own path, request id and deduplication id), so neither
the check cache nor quota deduplication answers from memory unless a scenario asks for repeats.
They are built once from templates (encode one request, then replace the words that vary).
"""

from __future__ import annotations

import datetime
import ipaddress
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import yaml
from google.protobuf import json_format

from mixer.attributes.compressed import encode_report
from mixer.client import MixerClient
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.envoy.service.auth.v3 import external_auth_pb2
from mixer.envoy.service.ratelimit.v3 import rls_pb2
from mixer.v1 import mixer_pb2

ROOT = Path(__file__).resolve().parent.parent
NS = "default"
SERVICES = (
    "productpage",
    "reviews",
    "ratings",
    "details",
    "cart",
    "checkout",
    "payment",
    "shipping",
    "catalog",
    "search",
)
# Who calls whom: the traffic the benchmarks send.
PAIRS = (
    ("productpage", "reviews"),
    ("productpage", "details"),
    ("reviews", "ratings"),
    ("cart", "checkout"),
    ("checkout", "payment"),
    ("checkout", "shipping"),
    ("search", "catalog"),
    ("productpage", "search"),
    ("cart", "catalog"),
    ("catalog", "ratings"),
)
QUOTAS = {"perclient": 1, "perdestination": 1, "peruser": 1}
USERS = tuple(f"user{i}" for i in range(20))
BAD_AGENT = "BadBot/2.1"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
BIG = 1_000_000_000


def host(service: str) -> str:
    return f"{service}.{NS}.svc.cluster.local"


def principal(service: str) -> str:
    return f"spiffe://cluster.local/ns/{NS}/sa/{service}"


def _ip(service: str) -> str:
    return f"10.1.{SERVICES.index(service)}.{7 + SERVICES.index(service)}"


def _doc(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    api = "config.istio.io/v1alpha2"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "istio-system"},
        "spec": dict(spec),
    }


def _rule(
    name: str, match: str, handler: str = "", instances: tuple[str, ...] = ()
) -> dict[str, Any]:
    spec: dict[str, Any] = {"match": match} if match else {}
    if handler:
        spec["actions"] = [{"handler": handler, "instances": list(instances)}]
    return _doc("rule", name, spec)


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, width=200)


def _quota_params(adapter: str, redis_address: str) -> dict[str, Any]:
    algorithms = {
        "perclient": "TOKEN_BUCKET",
        "perdestination": "FIXED_WINDOW",
        "peruser": "ROLLING_WINDOW",
    }
    quotas = [
        {
            "name": f"{q}.instance.istio-system",
            "maxAmount": BIG,
            "validDuration": "1s",
            "rateLimitAlgorithm": a,
        }
        for q, a in algorithms.items()
    ]
    params: dict[str, Any] = {"quotas": quotas}
    if adapter == "redisquota":
        params["redisServerUrl"] = redis_address
    return params


def _common_docs(quota_adapter: str, redis_address: str) -> list[dict[str, Any]]:
    """Handlers, instances and the quota/listchecker rules shared by the 50- and 1,000-rule sets."""
    docs = [
        _doc(
            "handler",
            "denier",
            {
                "compiledAdapter": "denier",
                "params": {"status": {"code": 7, "message": "not allowed"}},
            },
        ),
        _doc("instance", "nothing", {"compiledTemplate": "checknothing"}),
        _doc(
            "handler",
            "badagents",
            {
                "compiledAdapter": "listchecker",
                "params": {
                    "entryType": "REGEX",
                    "blacklist": True,
                    "overrides": ["^BadBot/", "sqlmap", "nikto"],
                },
            },
        ),
        _doc(
            "instance",
            "useragent",
            {"compiledTemplate": "listentry", "params": {"value": 'request.useragent | ""'}},
        ),
        _doc(
            "handler",
            "meships",
            {
                "compiledAdapter": "listchecker",
                "params": {
                    "entryType": "IP_ADDRESSES",
                    "overrides": ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"],
                },
            },
        ),
        _doc(
            "instance",
            "sourceip",
            {"compiledTemplate": "listentry", "params": {"value": 'source.ip | ip("0.0.0.0")'}},
        ),
        _doc(
            "handler",
            "quotas",
            {
                "compiledAdapter": quota_adapter,
                "params": _quota_params(quota_adapter, redis_address),
            },
        ),
        _doc(
            "instance",
            "perclient",
            {
                "compiledTemplate": "quota",
                "params": {"dimensions": {"source": 'source.principal | "unknown"'}},
            },
        ),
        _doc(
            "instance",
            "perdestination",
            {
                "compiledTemplate": "quota",
                "params": {
                    "dimensions": {
                        "destination": 'destination.service.host | "unknown"',
                        "method": 'request.method | ""',
                    }
                },
            },
        ),
        _doc(
            "instance",
            "peruser",
            {
                "compiledTemplate": "quota",
                "params": {"dimensions": {"user": 'request.headers["x-user"] | "anonymous"'}},
            },
        ),
        _rule(
            "blockagents",
            'context.protocol == "http" || context.protocol == "grpc"',
            "badagents",
            ("useragent",),
        ),
        _rule(
            "paymentfrommesh", 'destination.labels["app"] == "payment"', "meships", ("sourceip",)
        ),
    ]
    for q in QUOTAS:
        docs.append(
            _doc("rule", f"quota-{q}", {"actions": [{"handler": "quotas", "instances": [q]}]})
        )
    docs.append(
        _doc(
            "QuotaSpec",
            "request-count",
            {"rules": [{"quotas": [{"quota": q, "charge": 1} for q in QUOTAS]}]},
        )
    )
    docs.append(
        _doc(
            "QuotaSpecBinding",
            "request-count",
            {
                "quotaSpecs": [{"name": "request-count", "namespace": "istio-system"}],
                "services": [{"service": "*"}],
            },
        )
    )
    return docs


def _policy_rules(services: tuple[str, ...], tag: str) -> list[dict[str, Any]]:
    """45 rules for `services` (10 of them); names carry `tag` so sets can be repeated."""
    docs: list[dict[str, Any]] = []
    n = len(services)
    callers = {dst for _, dst in PAIRS}
    for i, dst in enumerate(services):  # 20: forbidden callers of each service
        for k in (3, 6):
            src = services[(i + k) % n]
            if (src, dst) in PAIRS and dst in callers:
                src = services[(i + k + 1) % n]
            docs.append(
                _rule(
                    f"deny-{tag}{i}-{k}",
                    f'destination.service.host == "{host(dst)}" && source.labels["app"] == "{src}"',
                    "denier",
                    ("nothing",),
                )
            )
    for i, svc in enumerate(services[:5]):  # 10: path prefixes
        docs.append(
            _rule(
                f"admin-{tag}{i}",
                f'match(request.path, "/admin/*") && destination.labels["app"] == "{svc}"',
                "denier",
                ("nothing",),
            )
        )
    for i, svc in enumerate(services[5:]):
        docs.append(
            _rule(
                f"internal-{tag}{i}",
                f'destination.labels["app"] == "{svc}" && match(request.path, "/internal/*")',
                "denier",
                ("nothing",),
            )
        )
    for i in range(4):  # 8: headers and methods
        docs.append(
            _rule(
                f"blockeduser-{tag}{i}",
                f'(request.headers["x-user"] | "") == "blocked{i}"',
                "denier",
                ("nothing",),
            )
        )
    for i in range(2):
        docs.append(
            _rule(
                f"oldapi-{tag}{i}",
                f'(request.headers["x-api-version"] | "v2") == "v{i}"',
                "denier",
                ("nothing",),
            )
        )
    for i, svc in enumerate(services[:2]):
        docs.append(
            _rule(
                f"nodelete-{tag}{i}",
                f'request.method == "DELETE" && source.principal != "{principal(svc)}"',
                "denier",
                ("nothing",),
            )
        )
    for i, svc in enumerate(services[8:]):  # 2: protocol
        docs.append(
            _rule(
                f"nogrpc-{tag}{i}",
                f'context.protocol == "grpc" && destination.labels["app"] == "{svc}"',
                "denier",
                ("nothing",),
            )
        )
    tagged = [  # 5: header operations on allowed requests
        ('match(request.path, "/api/*")', [{"name": "x-mixer-checked", "values": ['"true"']}], []),
        (
            'destination.labels["app"] == "' + services[1] + '"',
            [{"name": "x-user", "values": ['request.headers["x-user"] | "anonymous"']}],
            [],
        ),
        ('request.method == "GET"', [], [{"name": "cache-control", "values": ['"private"']}]),
        (
            'source.labels["app"] == "' + services[0] + '"',
            [{"name": "x-internal", "operation": "REMOVE"}],
            [],
        ),
        (
            'match(request.path, "/api/v1/*") && request.scheme == "http"',
            [],
            [{"name": "x-policy", "values": ['"v1"']}],
        ),
    ]
    for i, (match, req_ops, resp_ops) in enumerate(tagged):
        spec: dict[str, Any] = {"match": match}
        if req_ops:
            spec["requestHeaderOperations"] = req_ops
        if resp_ops:
            spec["responseHeaderOperations"] = resp_ops
        docs.append(_doc("rule", f"tag-{tag}{i}", spec))
    return docs


def policy_config(
    directory: Path, quota_adapter: str = "memquota", redis_address: str = ""
) -> Path:
    """Write the 50-rule policy into `directory` (created); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = _common_docs(quota_adapter, redis_address) + _policy_rules(SERVICES, "")
    rules = sum(1 for d in docs if d["kind"] == "rule")
    assert rules == 50, rules
    (directory / "policy.yaml").write_text(_dump(docs))
    return directory


def many_rules_config(directory: Path, rules: int = 1000) -> Path:
    """`rules` rules (the 50-rule mix over more services) in 10 files; returns `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    common = _common_docs("memquota", "")
    (directory / "common.yaml").write_text(_dump(common))
    remaining = rules - sum(1 for d in common if d["kind"] == "rule")
    docs: list[dict[str, Any]] = []
    group = 0
    while len(docs) < remaining:
        services = tuple(f"svc{group}x{s}" for s in range(10))
        docs += _policy_rules(services, f"g{group}-")
        group += 1
    docs = docs[:remaining]
    per_file = -(-len(docs) // 10)
    for f in range(10):
        chunk = docs[f * per_file : (f + 1) * per_file]
        if chunk:
            (directory / f"rules{f}.yaml").write_text(_dump(chunk))
    return directory


def telemetry_config(directory: Path) -> Path:
    """``rules/telemetry.yaml`` without the stdio access log, into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = [d for d in yaml.safe_load_all((ROOT / "rules" / "telemetry.yaml").read_text()) if d]
    stdio = {"stdio", "stdiotcp", "accesslog", "tcpaccesslog"}
    kept = [d for d in docs if d["metadata"]["name"] not in stdio]
    (directory / "telemetry.yaml").write_text(_dump(kept))
    return directory


def rls_config(directory: Path) -> Path:
    """An envoyproxy/ratelimit config for the 3-descriptor RLS requests, into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "domain": "bench",
        "descriptors": [
            {
                "key": "destination_cluster",
                "value": "ratings",
                "rate_limit": {"unit": "second", "requests_per_unit": BIG},
            },
            {"key": "remote_address", "rate_limit": {"unit": "minute", "requests_per_unit": BIG}},
            {
                "key": "tenant",
                "value": "acme",
                "descriptors": [
                    {"key": "path", "rate_limit": {"unit": "hour", "requests_per_unit": BIG}}
                ],
            },
        ],
    }
    (directory / "ratelimit.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


# -- requests ---------------------------------------------------------------------------------

_NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)
_PATH = "\x00path"
_RID = "\x00rid"
_AGENT = "\x00agent"


def _headers(src: str, dst: str, user: str, agent: str, rid: str) -> dict[str, str]:
    return {
        ":authority": f"{dst}:9080",
        ":method": "GET",
        ":path": "/",
        "accept": "application/json",
        "user-agent": agent,
        "x-request-id": rid,
        "x-forwarded-for": _ip(src),
        "x-forwarded-proto": "http",
        "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
        "x-b3-spanid": "e457b5a2e4d86bd1",
        "x-b3-sampled": "1",
        "x-user": user,
        "content-type": "application/json",
    }


def check_attributes(
    src: str, dst: str, user: str, *, path: str, rid: str, agent: str
) -> dict[str, object]:
    """The ~30 attributes an Istio 1.4 sidecar sent with a Check for one HTTP request."""
    return {
        "source.uid": f"kubernetes://{src}-v1-7d8f9c6b5-x2x4k.{NS}",
        "source.ip": ipaddress.ip_address(_ip(src)),
        "source.labels": {"app": src, "version": "v1", "pod-template-hash": "7d8f9c6b5"},
        "source.namespace": NS,
        "source.principal": principal(src),
        "source.workload.name": f"{src}-v1",
        "destination.uid": f"kubernetes://{dst}-v1-5b9f8d7c4-q8r2z.{NS}",
        "destination.ip": ipaddress.ip_address(_ip(dst)),
        "destination.port": 9080,
        "destination.labels": {"app": dst, "version": "v1"},
        "destination.namespace": NS,
        "destination.principal": principal(dst),
        "destination.service.host": host(dst),
        "destination.service.name": dst,
        "destination.service.namespace": NS,
        "destination.workload.name": f"{dst}-v1",
        "request.headers": _headers(src, dst, user, agent, rid),
        "request.host": f"{dst}:9080",
        "request.method": "GET",
        "request.path": path,
        "request.scheme": "http",
        "request.time": _NOW,
        "request.useragent": agent,
        "request.id": rid,
        "request.size": 0,
        "context.protocol": "http",
        "context.reporter.kind": "inbound",
        "context.reporter.uid": f"kubernetes://{dst}-v1-5b9f8d7c4-q8r2z.{NS}",
        "connection.mtls": True,
        "connection.requested_server_name": f"outbound_.9080_._.{host(dst)}",
    }


def request_path(dst: str, i: int, salt: str) -> str:
    kind = i % 10
    if kind < 7:
        return f"/api/v1/{dst}/items/{salt}{i}"
    if kind < 9:
        return f"/static/{salt}{i}.js"
    return f"/api/v2/{dst}/search?q={salt}{i}"


def _variant(i: int) -> tuple[str, str, str, str]:
    """(source, destination, user, agent) of request `i`; 1 in 64 comes from a blocked agent."""
    src, dst = PAIRS[i % len(PAIRS)]
    user = USERS[(i // len(PAIRS)) % len(USERS)]
    agent = BAD_AGENT if i % 64 == 63 else AGENT
    return src, dst, user, agent


class MixerChecks:
    """Serialized Mixer CheckRequests with 3 quotas, each with its own path and ids."""

    def __init__(self, quotas: Mapping[str, int] = QUOTAS) -> None:
        self._client = MixerClient("127.0.0.1:1")
        self._quotas = quotas
        self._templates: dict[
            tuple[str, str, str], tuple[mixer_pb2.CheckRequest, int, int, int]
        ] = {}

    def _template(
        self, src: str, dst: str, user: str
    ) -> tuple[mixer_pb2.CheckRequest, int, int, int]:
        key = (src, dst, user)
        found = self._templates.get(key)
        if found is None:
            attrs = check_attributes(src, dst, user, path=_PATH, rid=_RID, agent=_AGENT)
            req = self._client.check_request(attrs, self._quotas, deduplication_id="x")
            words = list(req.attributes.words)
            found = (req, words.index(_PATH), words.index(_RID), words.index(_AGENT))
            self._templates[key] = found
        return found

    def request(self, i: int, salt: str, *, distinct_paths: int = 0) -> bytes:
        """Request `i` (salted, so runs do not repeat); `distinct_paths` > 0 cycles paths."""
        src, dst, user, agent = _variant(i)
        base, path_slot, rid_slot, agent_slot = self._template(src, dst, user)
        req = mixer_pb2.CheckRequest()
        req.CopyFrom(base)
        words = req.attributes.words
        n = i % distinct_paths if distinct_paths else i
        words[path_slot] = request_path(dst, n, "" if distinct_paths else salt)
        rid = f"{salt}-{i}"
        words[rid_slot] = rid
        words[agent_slot] = agent
        req.deduplication_id = rid
        return req.SerializeToString()

    def requests(self, n: int, salt: str, *, distinct_paths: int = 0) -> Iterator[bytes]:
        for i in range(n):
            yield self.request(i, salt, distinct_paths=distinct_paths)


class AuthzChecks:
    """Serialized ext_authz v3 CheckRequests for the same traffic as `MixerChecks`."""

    def __init__(self) -> None:
        self._templates: dict[tuple[str, str, str], external_auth_pb2.CheckRequest] = {}

    def _template(self, src: str, dst: str, user: str) -> external_auth_pb2.CheckRequest:
        key = (src, dst, user)
        found = self._templates.get(key)
        if found is None:
            found = json_format.ParseDict(
                {
                    "attributes": {
                        "source": {
                            "address": {
                                "socket_address": {"address": _ip(src), "port_value": 41234}
                            },
                            "principal": principal(src),
                            "labels": {"app": src, "version": "v1"},
                        },
                        "destination": {
                            "address": {
                                "socket_address": {"address": _ip(dst), "port_value": 9080}
                            },
                            "principal": principal(dst),
                            "labels": {"app": dst, "version": "v1"},
                        },
                        "request": {
                            "time": _NOW.isoformat().replace("+00:00", "Z"),
                            "http": {
                                "method": "GET",
                                "host": f"{host(dst)}:9080",
                                "scheme": "http",
                                "protocol": "HTTP/1.1",
                                "size": "0",
                            },
                        },
                        "tls_session": {"sni": f"outbound_.9080_._.{host(dst)}"},
                    }
                },
                external_auth_pb2.CheckRequest(),
            )
            self._templates[key] = found
        return found

    def request(self, i: int, salt: str) -> bytes:
        src, dst, user, agent = _variant(i)
        req = external_auth_pb2.CheckRequest()
        req.CopyFrom(self._template(src, dst, user))
        http = req.attributes.request.http
        rid = f"{salt}-{i}"
        path = request_path(dst, i, salt)
        http.id = rid
        http.path = path
        headers = _headers(src, dst, user, agent, rid)
        headers[":path"] = path
        http.headers.update(headers)
        return req.SerializeToString()

    def requests(self, n: int, salt: str) -> Iterator[bytes]:
        for i in range(n):
            yield self.request(i, salt)


def report_attributes(i: int, salt: str) -> dict[str, object]:
    """Attributes of one reported HTTP request (a Check's plus the response)."""
    src, dst, user, agent = _variant(i)
    rid = f"{salt}-{i}"
    attrs = check_attributes(src, dst, user, path=request_path(dst, i, salt), rid=rid, agent=AGENT)
    code = (200, 200, 200, 200, 200, 200, 404, 503)[i % 8]
    duration = datetime.timedelta(microseconds=800 + (i * 7919) % 50_000)
    attrs.update(
        {
            "destination.workload.namespace": NS,
            "source.workload.namespace": NS,
            "response.code": code,
            "response.size": 1200 + i % 4000,
            "response.total_size": 1500 + i % 4000,
            "request.total_size": 600,
            "response.duration": duration,
            "response.time": _NOW + duration,
            "response.headers": {
                "content-type": "application/json",
                "server": "istio-envoy",
                "x-envoy-upstream-service-time": "3",
            },
            "context.proxy_error_code": "-",
            "api.protocol": "http",
        }
    )
    del agent
    return attrs


def report_batch(start: int, salt: str, entries: int = 100) -> bytes:
    """A Mixer ReportRequest of `entries` requests, delta-encoded as Istio's proxy sent them."""
    attrs = [report_attributes(start + k, salt) for k in range(entries)]
    return encode_report(attrs, delta=True).SerializeToString()


def proxy_report_attributes(pair: int, i: int, salt: str) -> dict[str, object]:
    """Request `i` as the sidecar of pair `pair` reports it: the pair's attributes (as in
    `report_attributes`), and the ~12 that differ from one request to the next (id, path,
    headers, times, sizes, code)."""
    attrs = report_attributes(pair % len(PAIRS), salt)
    _, dst = PAIRS[pair % len(PAIRS)]
    rid = f"{salt}-{pair}-{i}"
    path = request_path(dst, i, salt)
    start = _NOW + datetime.timedelta(milliseconds=i)
    duration = datetime.timedelta(microseconds=800 + (i * 7919) % 50_000)
    headers = dict(cast(Mapping[str, str], attrs["request.headers"]))
    headers.update({"x-request-id": rid, ":path": path})
    attrs.update(
        {
            "request.id": rid,
            "request.path": path,
            "request.headers": headers,
            "request.time": start,
            "request.size": (0, 0, 0, 512)[i % 4],
            "request.total_size": 600 + (0, 0, 0, 512)[i % 4],
            "response.code": (200, 200, 200, 200, 200, 200, 404, 503)[i % 8],
            "response.duration": duration,
            "response.time": start + duration,
            "response.size": 1200 + (i * 37) % 4000,
            "response.total_size": 1500 + (i * 37) % 4000,
        }
    )
    return attrs


def proxy_report_batch(start: int, salt: str, entries: int = 100) -> bytes:
    """One sidecar's Report batch (the issue's gentler workload): every entry is a request of
    one pair, so after the first entry (sent whole) each carries only what its request changed.
    """
    pair = start // entries
    attrs = [proxy_report_attributes(pair, start + k, salt) for k in range(entries)]
    return encode_report(attrs, delta=True).SerializeToString()


def _als_entry(i: int, salt: str) -> dict[str, Any]:
    src, dst, _user, _agent = _variant(i)
    start = _NOW + datetime.timedelta(milliseconds=i)
    return {
        "common_properties": {
            "downstream_remote_address": {
                "socket_address": {"address": _ip(src), "port_value": 41234}
            },
            "downstream_local_address": {
                "socket_address": {"address": _ip(dst), "port_value": 9080}
            },
            "upstream_remote_address": {
                "socket_address": {"address": "127.0.0.1", "port_value": 9080}
            },
            "upstream_cluster": f"inbound|9080|http|{host(dst)}",
            "start_time": start.isoformat().replace("+00:00", "Z"),
            "time_to_last_downstream_tx_byte": f"{0.0008 + (i % 50) / 1000:.4f}s",
            "tls_properties": {
                "peer_certificate_properties": {"subject_alt_name": [{"uri": principal(src)}]}
            },
        },
        "protocol_version": "HTTP11",
        "request": {
            "request_method": "GET",
            "scheme": "http",
            "authority": f"{dst}:9080",
            "path": request_path(dst, i, salt),
            "user_agent": AGENT,
            "forwarded_for": _ip(src),
            "request_id": f"{salt}-{i}",
            "request_headers_bytes": "600",
            "request_body_bytes": "0",
        },
        "response": {
            "response_code": (200, 200, 200, 404, 503)[i % 5],
            "response_headers_bytes": "300",
            "response_body_bytes": str(1200 + i % 4000),
            "response_code_details": "via_upstream",
        },
    }


def als_messages(messages: int, salt: str, entries: int = 20) -> Iterator[bytes]:
    """ALS stream messages of `entries` HTTP log entries; the first carries the identifier."""
    for m in range(messages):
        body: dict[str, Any] = {
            "http_logs": {"log_entry": [_als_entry(m * entries + k, salt) for k in range(entries)]}
        }
        if m == 0:
            body["identifier"] = {
                "node": {
                    "id": f"sidecar~10.1.2.9~ratings-v1-5b9f8d7c4-q8r2z.{NS}~{NS}.svc.cluster.local"
                },
                "log_name": "envoy.access_loggers.http_grpc.inbound",
            }
        yield json_format.ParseDict(body, als_pb2.StreamAccessLogsMessage()).SerializeToString()


def rls_requests(n: int, salt: str) -> Iterator[bytes]:
    """RateLimitRequests with 3 descriptors: a service, a client address (1,000), a tenant path."""
    rng = random.Random(salt)
    for i in range(n):
        client = f"10.2.{i % 1000 // 250}.{i % 250}"
        path = ("/api/v1/items", "/api/v1/cart", "/export")[rng.randrange(3)]
        req = rls_pb2.RateLimitRequest(domain="bench", hits_addend=1)
        for entries in (
            [("destination_cluster", "ratings")],
            [("remote_address", client)],
            [("tenant", "acme"), ("path", path)],
        ):
            d = req.descriptors.add()
            for key, value in entries:
                d.entries.add(key=key, value=value)
        yield req.SerializeToString()
