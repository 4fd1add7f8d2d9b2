"""The Mixer dialect (CEXL): the reference's semantics, Istio's real configs, attribute tracking."""

from __future__ import annotations

import contextlib
import datetime
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.expr import CompileError, EvaluationError, _mixer_codegen, compile
from mixer.expr._errors import guarded
from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY as VOCAB
from tests.shared_data import require_shared, shared_path

CORPUS = shared_path("corpus/istio")  # a glob of a missing corpus finds nothing
T0 = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

BAG = Bag(
    {
        "destination.labels": StringMap({"app": "ratings", "version": "v1"}),
        "source.labels": StringMap({"app": "reviews", "version": "v3"}),
        "request.headers": StringMap({"x-user": "john", "cookie": "session=abc", ":path": "/api"}),
        "source.ip": bytes([10, 1, 2, 3]),
        # An IPv4-mapped IPv6 address, as some proxies send it.
        "destination.ip": bytes(10) + b"\xff\xff" + bytes([192, 168, 0, 1]),
        "origin.ip": bytes.fromhex("20010db8000000000000000000000001"),
        "request.size": 2048,
        "response.code": 503,
        "request.path": "/api/v1/reviews",
        "request.useragent": "kube-probe/1.14",
        "context.protocol": "http",
        "connection.mtls": True,
        "response.duration": datetime.timedelta(milliseconds=25),
        "request.time": T0,
        "source.principal": "cluster.local/ns/default/sa/bookinfo-productpage",
        "destination.service.host": "Ratings.Default.svc.cluster.local.",
        "source.namespace": "default",
    }
)

# (expression, expected value) evaluated against BAG with the Istio 1.4 vocabulary.
CASES: list[tuple[str, object]] = [
    # comparison and logic operators
    ('destination.labels["app"] == "ratings"', True),
    ('destination.labels["app"] != "ratings"', False),
    ("request.size > 1024", True),
    ("request.size >= 2048", True),
    ("request.size < 2048", False),
    ("request.size <= 2048", True),
    ('request.path > "/api"', True),
    ('context.protocol == "http" || context.protocol == "grpc"', True),
    ('context.protocol == "tcp" && request.size > 0', False),
    ("connection.mtls == true", True),
    ("connection.mtls && request.size == 2048", True),
    ("2.5 < 3.0", True),
    # `+` on strings and numbers
    ('request.path + "?q"', "/api/v1/reviews?q"),
    ("request.size + 1", 2049),
    ("1.5 + 2.25", 3.75),
    # `|` picks the first present value: attributes and map keys
    ('request.headers["x-user"] | "nobody"', "john"),
    ('request.headers["x-missing"] | "nobody"', "nobody"),
    ('response.headers["x"] | "no response headers"', "no response headers"),
    ('request.api_key | request.headers["x-api-key"] | "none"', "none"),
    ('request.api_key | request.headers["x-user"] | "none"', "john"),
    ('destination.labels["app"] | destination.workload.name | "unknown"', "ratings"),
    ('source.labels["istio"] | source.workload.name | "unknown"', "unknown"),
    ("request.size | 0", 2048),
    ("response.size | 0", 0),
    ('(request.headers["x-user"] | "") == "john"', True),
    ('(source.labels["istio"] | "") == "ingressgateway"', False),
    ('(context.reporter.kind | "inbound") == "outbound"', False),
    ("connection.requested_server_name | source.namespace", "default"),
    # duration literals: a quoted Go duration is a DURATION constant
    ('response.duration | "0ms"', datetime.timedelta(milliseconds=25)),
    ('connection.duration | "0ms"', datetime.timedelta(0)),
    ('response.duration > "10ms"', True),
    ('response.duration < "1h2m"', True),
    ('response.duration == "25ms"', True),
    ('response.duration == "0.025s"', True),
    ('"1h2m3.5s"', datetime.timedelta(hours=1, minutes=2, seconds=3.5)),
    ('"-1.5h"', datetime.timedelta(hours=-1.5)),
    ('"0"', datetime.timedelta(0)),
    ('"10"', "10"),
    # IP addresses: bytes, 4-byte and IPv4-mapped 16-byte forms compare equal
    ('source.ip == ip("10.1.2.3")', True),
    ('source.ip != ip("10.1.2.4")', True),
    ('destination.ip == ip("192.168.0.1")', True),
    ('destination.ip == ip("::ffff:192.168.0.1")', True),
    ('origin.ip == ip("2001:db8::1")', True),
    ('source.ip | ip("0.0.0.0")', bytes([10, 1, 2, 3])),
    ('(connection.id | "") == "x" || (request.auth.principal | "") == ""', True),
    ('ip("0.0.0.0")', bytes(4)),
    # match(): trailing * is a prefix, leading * a suffix, else equality
    ('match(request.useragent, "kube-probe*")', True),
    ('match(request.useragent, "Prometheus*")', False),
    ('match(request.path, "*/reviews")', True),
    ('match(request.path, "*/ratings")', False),
    ('match(request.path, "/api/v1/reviews")', True),
    ('match(request.path, "/api")', False),
    ('match(request.headers["cookie"], "session=*") == false', False),
    (
        '(context.protocol == "http" || context.protocol == "grpc") && '
        '(match((request.useragent | "-"), "kube-probe*") == false)',
        False,
    ),
    # "regex".matches(str): the receiver is the pattern (an unanchored RE2 search)
    ('"^/api/v[0-9]+/".matches(request.path)', True),
    ('"reviews$".matches(request.path)', True),
    ('"^/v1".matches(request.path)', False),
    ('request.path.matches("/api/v1/reviews")', True),
    ('request.path.matches("v1")', False),  # the pattern is the path, the subject "v1"
    ('source.principal.startsWith("cluster.local/")', True),
    ('source.principal.endsWith("/sa/bookinfo-productpage")', True),
    ('request.path.startsWith("/v1")', False),
    # conditional / conditionalString evaluate only the branch taken
    ('conditional(connection.mtls, "mutual_tls", "none")', "mutual_tls"),
    ('conditional(request.size > 4096, "big", "small")', "small"),
    ('conditional(true, "yes", source.uid)', "yes"),
    ('conditional(false, source.uid, "no")', "no"),
    (
        'conditional((context.reporter.kind | "inbound") == "outbound", "unknown", '
        'conditional(connection.mtls | false, "mutual_tls", "none"))',
        "mutual_tls",
    ),
    ('conditionalString(connection.mtls, "a", "b")', "a"),
    # string functions
    ('toLower("MiXeR")', "mixer"),
    ("size(request.path)", 15),
    ('size("π")', 2),  # Go's len(): UTF-8 bytes
    ('reverse("abc")', "cba"),
    # typed constructors and their equality
    ('request.time == timestamp("2020-01-02T03:04:05Z")', True),
    ('request.time == timestamp("2020-01-02T05:04:05+02:00")', True),
    ('request.time < timestamp("2021-01-01T00:00:00Z")', True),
    ('request.time | timestamp("2017-01-01T00:00:00Z")', T0),
    (
        'response.time | timestamp("2017-01-01T00:00:00Z")',
        datetime.datetime(2017, 1, 1, tzinfo=datetime.UTC),
    ),
    (
        'dnsName("ratings.default.svc.cluster.local") == '
        'dnsName("RATINGS.default.svc.cluster.local.")',
        True,
    ),
    ('dnsName("a.example.com") == dnsName("b.example.com")', False),
    ('email("Joe@Example.com") == email("Joe@example.COM")', True),
    ('email("joe@example.com") == email("Joe@example.com")', False),
    ('uri("HTTP://Example.com:80/a?b") == uri("http://example.com:80/a?b")', True),
    ('uri("http://example.com/a") == uri("http://example.com/b")', False),
    ('uri("urn:isbn:0451450523")', "urn:isbn:0451450523"),
    ("emptyStringMap()", {}),
    ("source.labels | emptyStringMap()", {"app": "reviews", "version": "v3"}),
    ("destination.metadata | emptyStringMap()", {}),
    # literals
    ("42", 42),
    ("-7", -7),
    ("0x10", 16),
    ("1e3", 1000.0),
    ('"tab\\there"', "tab\there"),
    ("`raw\\n`", "raw\\n"),
    ("'c'", "c"),
    ("true", True),
    ("false", False),
    # map access by a dotted name
    ("destination.labels.app", "ratings"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_mixer_expression_evaluates_as_reference_says(text: str, expected: object) -> None:
    program = compile(text, vocabulary=VOCAB)
    value = program.evaluate(BAG)
    assert value == expected
    assert type(value) is type(expected) or isinstance(value, Mapping)


# Without a vocabulary a dotted path is one attribute name: `destination.labels.app` is no map key.
UNTYPED_CASES = [c for c in CASES if c[0] != "destination.labels.app"]


@pytest.mark.parametrize(("text", "expected"), UNTYPED_CASES, ids=[c[0] for c in UNTYPED_CASES])
def test_without_vocabulary_the_same_expressions_give_the_same_values(
    text: str, expected: object
) -> None:
    assert compile(text).evaluate(BAG) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('source.labels["app"] == "x"', "lookup failed: 'source.labels'"),
        ("source.uid", "lookup failed: 'source.uid'"),
        ('match(source.uid | "", "*") && source.name == "x"', "lookup failed: 'source.name'"),
        # a function's failure inside `|` is an error, not an absent value
        ('email(request.path) == email("x@example.com")', "e-mail"),
        ('ip(request.path) == ip("1.2.3.4")', "IP_ADDRESS"),
        ("timestamp(request.path) == request.time", "TIMESTAMP"),
        ('dnsName("a.example.com") == dnsName(request.path)', "dns name"),
        ('uri(request.headers["nope"] | "") == uri("http://a")', "empty string"),
    ],
)
def test_evaluation_errors_name_what_failed(text: str, message: str) -> None:
    program = compile(text, vocabulary=VOCAB)
    with pytest.raises(EvaluationError, match=re.escape(message)):
        program.evaluate(
            Bag(
                {
                    "destination.labels": StringMap({}),
                    "request.headers": StringMap({}),
                    "request.path": "/x",
                }
            )
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ip("1.2.3")', "could not convert '1.2.3' to IP_ADDRESS"),
        ('timestamp("yesterday")', "TIMESTAMP"),
        ('source.ip | ip("10.1.12")', "could not convert '10.1.12' to IP_ADDRESS"),
    ],
)
def test_a_constant_that_cannot_convert_fails_at_evaluation_as_in_istio(
    text: str, message: str
) -> None:
    # Istio's table (il-045, il-048): a config with such a constant loads; evaluating fails.
    program = compile(text, vocabulary=VOCAB)
    assert program.constant is None
    with pytest.raises(EvaluationError, match=re.escape(message)):
        program.evaluate(Bag({}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Istio (mixer/pkg/il/testing/tests.go, il-024): a key the map does not hold reads as
        # "", only an absent map is a lookup error; on the left of `|` the key is absent.
        ('destination.labels["nope"] == "x"', False),
        ('destination.labels["nope"] == ""', True),
        ('match(request.headers["user-agent"], "curl*")', False),
        ('source.uid | request.headers["nope"]', ""),
        ('request.headers["nope"] | "default"', "default"),
    ],
)
def test_a_missing_map_key_reads_as_empty_as_in_istio(text: str, expected: object) -> None:
    program = compile(text, vocabulary=VOCAB)
    bag = Bag({"destination.labels": StringMap({}), "request.headers": StringMap({})})
    assert program.evaluate(bag) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('destination.lables["app"] == "x"', "unknown attribute 'destination.lables' at column 1"),
        (
            'context.protocol == "tcp" && sourc.ip == ip("1.2.3.4")',
            "unknown attribute 'sourc.ip' at column 30",
        ),
        ('request.size == "2048"', "type mismatch: '==' between INT64 and STRING at column 14"),
        ("request.size == 1.0", "between INT64 and DOUBLE"),
        ('request.headers["x"] == "10s"', "between STRING and DURATION"),
        ('source.ip == "10.0.0.1"', "between IP_ADDRESS and STRING"),
        ('request.size | "0"', "'|' between INT64 and DURATION"),
        ("request.path | 0", "'|' between STRING and INT64"),
        ("request.size && true", "left operand of '&&' must be BOOL, got INT64"),
        ("true || request.path", "right operand of '||' must be BOOL, got STRING"),
        ('request.size["a"]', "an indexed value must be STRING_MAP, got INT64"),
        ("request.headers[1]", "a map key must be STRING, got INT64"),
        ('conditional(request.size, "a", "b")', "argument 1 of conditional() must be BOOL"),
        ('conditional(true, "a", 1)', "conditional() branches between STRING and INT64"),
        ('match(request.size, "a*")', "argument 1 of match() must be STRING, got INT64"),
        ('request.size.startsWith("a")', "receiver of startsWith() must be STRING"),
        ("connection.mtls + true", "'+' is not defined for BOOL"),
        ('source.ip < ip("1.2.3.4")', "'<' is not defined for IP_ADDRESS"),
        ("!connection.mtls", "operator '!' is not supported"),
        ("request.size * 2", "operator '*' is not supported"),
        ('nosuch("a")', "unknown function 'nosuch'"),
        ('request.path.nosuch("a")', "unknown method 'nosuch'"),
        ('matches("a", "b")', "'matches' is a method"),
        ('match("a")', "match() takes 2 argument(s), got 1"),
        ('"[".matches(request.path)', "invalid regular expression"),
        ("request.size ==", "unexpected end of expression at column 16"),
        ("(request.size == 1", "expected ')'"),
        ('request.path == "unterminated', "unexpected character"),
        ("", "empty expression"),
        ("9223372036854775808", "out of INT64 range"),
        ('"\\q"', "invalid escape"),
        ("request.path == 'ab'", "unexpected character"),
        ('ip("1.2.3.4").path', "field selection is only allowed on attribute names"),
    ],
)
def test_compile_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(CompileError, match=re.escape(message)):
        compile(text, vocabulary=VOCAB)


def test_without_vocabulary_any_attribute_compiles_and_nothing_is_type_checked() -> None:
    program = compile('made.up.name == 3 && other["k"] == "v"')
    assert program.result_type == "BOOL"
    assert program.evaluate({"made.up.name": 3, "other": {"k": "v"}}) is True
    assert compile('request.size == "2048"').evaluate({"request.size": 2048}) is False
    assert compile("a | b").result_type == "DYNAMIC"
    with pytest.raises(EvaluationError, match="needs BOOL operands"):
        compile("a && b").evaluate({"a": "yes", "b": True})
    with pytest.raises(EvaluationError, match="TypeError"):
        compile("a < b").evaluate({"a": "x", "b": 1})


def test_result_types_and_constants_are_known_at_compile_time() -> None:
    types = {
        'destination.labels["app"] == "ratings"': "BOOL",
        'request.headers["x"] | ""': "STRING",
        "request.size | 0": "INT64",
        'response.duration | "0ms"': "DURATION",
        'source.ip | ip("0.0.0.0")': "IP_ADDRESS",
        'request.time | timestamp("2017-01-01T00:00:00Z")': "TIMESTAMP",
        "source.labels | emptyStringMap()": "STRING_MAP",
        'email("a@b.c")': "EMAIL_ADDRESS",
        'dnsName("a.b")': "DNS_NAME",
        'uri("http://a")': "URI",
        "1.5": "DOUBLE",
    }
    for text, expected in types.items():
        assert compile(text, vocabulary=VOCAB).result_type == expected, text
    assert compile("true").constant is True
    assert compile('"1"').constant == "1"
    assert compile('"a" + "b"').constant == "ab"
    assert compile('conditional(true, "x", "y")').constant == "x"
    assert compile('"10ms"').constant == datetime.timedelta(milliseconds=10)
    assert compile("request.size", vocabulary=VOCAB).constant is None
    assert compile('"x" | request.path').constant == "x"


def test_unknown_dialect_and_bad_vocabulary_are_rejected() -> None:
    with pytest.raises(CompileError, match="unknown expression dialect"):
        compile("true", dialect="python")
    with pytest.raises(CompileError, match="unknown value types"):
        compile("true", vocabulary={"a": "STRNG"})


def test_compat_dialect_reads_cexl_syntax() -> None:
    program = compile('request.headers["x-user"] | "nobody"', dialect="compat", vocabulary=VOCAB)
    assert program.evaluate(BAG) == "john"
    assert program.evaluate(Bag()) == "nobody"


# -- referenced-attribute tracking -------------------------------------------------------------


def _reads(text: str, bag: Bag) -> dict[tuple[str, str | None], bool]:
    tracking = TrackingBag(bag)
    with contextlib.suppress(EvaluationError):
        compile(text, vocabulary=VOCAB).evaluate(tracking)
    return tracking.refs.reads


def test_map_lookup_records_only_the_key_read() -> None:
    reads = _reads('destination.labels["app"] == "ratings"', BAG)
    assert reads == {("destination.labels", "app"): True}


def test_default_operator_reads_only_until_a_value_is_found() -> None:
    assert _reads("request.path | request.url_path", BAG) == {("request.path", None): True}
    assert _reads('request.url_path | request.path | "x"', BAG) == {
        ("request.url_path", None): False,
        ("request.path", None): True,
    }
    assert _reads('request.headers["nope"] | request.headers["x-user"]', BAG) == {
        ("request.headers", "nope"): False,
        ("request.headers", "x-user"): True,
    }


def test_short_circuit_operators_do_not_read_the_other_side() -> None:
    assert _reads('context.protocol == "tcp" && source.uid == "x"', BAG) == {
        ("context.protocol", None): True
    }
    assert _reads('context.protocol == "http" || source.uid == "x"', BAG) == {
        ("context.protocol", None): True
    }
    assert _reads("conditional(connection.mtls, request.path, source.uid)", BAG) == {
        ("connection.mtls", None): True,
        ("request.path", None): True,
    }


def test_absent_attributes_are_recorded_as_absence() -> None:
    assert _reads('source.uid == "x"', BAG) == {("source.uid", None): False}
    assert _reads('(source.labels["istio"] | "") == "x"', Bag()) == {("source.labels", None): False}


def test_a_whole_map_result_counts_as_reading_the_whole_map() -> None:
    tracking = TrackingBag(BAG)
    value = compile("source.labels | emptyStringMap()", vocabulary=VOCAB).evaluate(tracking)
    assert value == {"app": "reviews", "version": "v3"}
    assert tracking.refs.reads == {("source.labels", None): True}


# -- Istio's own configs -----------------------------------------------------------------------

# Legacy (1.0-style) template kinds whose spec *is* the instance params.
_TEMPLATE_KINDS = frozenset(
    {
        "metric",
        "logentry",
        "quota",
        "listentry",
        "checknothing",
        "reportnothing",
        "kubernetes",
        "apikey",
        "authorization",
        "tracespan",
        "edge",
    }
)


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield value if isinstance(value, str) else str(value).lower()


def _expressions(docs: list[Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) for every rule match, header op value and instance param."""
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        name = f"{kind}/{doc.get('metadata', {}).get('name')}"
        if kind == "rule":
            if spec.get("match"):
                yield f"{name}.match", str(spec["match"])
            for field in ("requestHeaderOperations", "responseHeaderOperations"):
                for op in spec.get(field) or []:
                    for value in op.get("values") or []:
                        yield f"{name}.{field}", value
        elif kind == "instance":
            for leaf in _leaves(spec.get("params") or {}):
                yield f"{name}.params", leaf
        elif kind in _TEMPLATE_KINDS:
            params = {k: v for k, v in spec.items() if k != "attribute_bindings"}
            for leaf in _leaves(params):
                yield f"{name}.params", leaf


def _helm_docs(path: Path) -> list[Any]:
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.strip().startswith("{{")
    )
    return list(yaml.safe_load_all(re.sub(r"\{\{.*?\}\}", "x", text)))


def _corpus_expressions() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(CORPUS.rglob("*.yaml")):
        for where, text in _expressions(list(yaml.safe_load_all(path.read_text()))):
            found.append((f"{path.relative_to(CORPUS)}:{where}", text))
    return found


def _helm_expressions() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted((CORPUS / "helm-mixer").glob("*.tpl")):
        for where, text in _expressions(_helm_docs(path)):
            found.append((f"{path.name}:{where}", text))
    return found


CORPUS_EXPRESSIONS = _corpus_expressions()
HELM_EXPRESSIONS = _helm_expressions()


def test_the_corpus_has_the_expressions_we_expect_to_check() -> None:
    require_shared("corpus/istio")
    # Guards the extraction itself: the sample configs hold well over a hundred expressions.
    assert len(CORPUS_EXPRESSIONS) > 150
    assert len(HELM_EXPRESSIONS) > 100
    matches = [t for w, t in CORPUS_EXPRESSIONS if w.endswith(".match")]
    assert 'source.ip != ip("10.11.12.13")' in " ".join(matches)


@pytest.mark.parametrize(
    ("where", "text"), CORPUS_EXPRESSIONS, ids=[w for w, _ in CORPUS_EXPRESSIONS]
)
def test_every_istio_sample_expression_compiles_against_the_1_4_vocabulary(
    where: str, text: str
) -> None:
    program = compile(text, vocabulary=VOCAB)
    if where.endswith(".match"):
        assert program.result_type == "BOOL"


@pytest.mark.parametrize(("where", "text"), HELM_EXPRESSIONS, ids=[w for w, _ in HELM_EXPRESSIONS])
def test_every_helm_chart_expression_compiles_against_the_1_4_vocabulary(
    where: str, text: str
) -> None:
    program = compile(text, vocabulary=VOCAB)
    if where.endswith(".match"):
        assert program.result_type == "BOOL"


def test_helm_expressions_evaluate_on_an_empty_bag_where_istio_defaults_everything() -> None:
    # The 1.4 chart's metric dimensions all carry `| default`, so they never fail for lack of
    # attributes; this is what makes Mixer's telemetry robust to partial attribute sets.
    require_shared("corpus/istio/helm-mixer")
    dimensions = [t for w, t in HELM_EXPRESSIONS if "1.4.10" in w and "/request" in w and "|" in t]
    assert len(dimensions) > 20
    for text in dimensions:
        compile(text, vocabulary=VOCAB).evaluate(Bag())


def test_our_vocabulary_is_the_helm_charts_attribute_manifests() -> None:
    manifests = [
        d
        for d in _helm_docs(require_shared("corpus/istio/helm-mixer/config-1.4.10.yaml.tpl"))
        if isinstance(d, dict) and d.get("kind") == "attributemanifest"
    ]
    chart = {
        name: info["valueType"]
        for manifest in manifests
        for name, info in manifest["spec"]["attributes"].items()
    }
    assert chart == dict(VOCAB)


def test_oversized_and_overdeep_expressions_are_rejected() -> None:
    with pytest.raises(CompileError, match="nests deeper than"):
        compile(" + ".join(["request.size"] * 150), vocabulary=VOCAB)
    with pytest.raises(CompileError, match="nests deeper than"):
        compile("(" * 60 + "true" + ")" * 60)
    with pytest.raises(CompileError, match="longer than"):
        compile('"' + "a" * 20_000 + '"')
    # Long but shallow: 40 defaults in a chain are fine.
    chain = " | ".join(f'request.headers["h{i}"]' for i in range(40)) + ' | "none"'
    assert compile(chain, vocabulary=VOCAB).evaluate(BAG) == "none"


# -- generated code ------------------------------------------------------------------------------

# Untyped, so wrong-typed values reach every operation.
GENERATED = [
    "a",
    'm["k"]',
    "m[a]",
    'a | "x"',
    'a | b | "x"',
    'm["k"] | "x"',
    'm["k"] | a | "x"',
    'm[a] | "x"',
    "m[a | b] | n[b] | a",
    "(m | n)[a] | b",
    '(m | emptyStringMap())[a | "k"] | "d"',
    'conditional(a, m, n)["k"] | "d"',
    'emptyStringMap()["k"] | a',
    "m | emptyStringMap()",
    "a.b.c | 1",
    'a == "y"',
    'a != "y"',
    '"y" == a',
    "a == 1",
    "a != true",
    "a == b",
    "a != b",
    '(a | "x") == "y"',
    'a == ip("1.2.3.4")',
    "a && b",
    "a || b",
    "true && a",
    "false || a",
    "(a | false) && (b | true)",
    '(a == "x" || b == "y") && m["k"] == "v"',
    'match(a, "x*")',
    'match(a, "*z")',
    'match(a, "xyz")',
    "match(a, b)",
    'match(a, "x*") && b == "y"',
    'conditional(a, b, "z")',
    'conditional((a | "i") == "o", "c", "s")',
    "a + b",
    'a + "s"',
    "a < b",
    "a >= 1",
    '"^x".matches(a)',
    'a.startsWith("x")',
    "size(a)",
    "toLower(a)",
    'ip(a) == ip("1.2.3.4")',
    # Deeper than generation nests: the innermost nodes run as their closures.
    "m[" * 44 + "a" + "]" * 44 + ' | "deep"',
    "conditional(a, " * 44 + "b" + ", n)" * 44,
]
GENERATED_ACTIVATIONS: list[dict[str, object]] = [
    {},
    {"a": "x", "b": "y"},
    {"a": True, "b": False},
    {"a": False, "b": True},
    {"a": 1, "b": 2},
    {"a": "xyz", "m": StringMap({"k": "v", "xyz": "w"}), "n": StringMap({"y": "n"})},
    {"a": "k", "b": "y", "m": {"k": "v"}},
    {"a": bytes([1, 2, 3, 4]), "b": bytes(10) + b"\xff\xff" + bytes([1, 2, 3, 4])},
    {"a": "1.2.3.4", "m": 5, "n": StringMap({"k": "n"})},
    {"a": 0, "b": "", "m": StringMap(), "n": StringMap({"": "e"})},
    {"a": "", "b": 0.5, "a.b.c": 7},
    {"a": [1], "b": [2], "m": "text"},
]
# The service's common rule and dimension shapes, against the 1.4 vocabulary.
COMMON_SHAPES = [
    'source.workload.name | "unknown"',
    'destination.labels["app"] | "unknown"',
    'request.headers["x-user"] == "admin"',
    'match(request.path, "/api/*") && request.method == "GET"',
    '(context.reporter.kind | "inbound") == "outbound"',
    "response.code | 200",
    'conditional((context.reporter.kind | "inbound") == "outbound", "client", "server")',
    'context.protocol == "http" || context.protocol == "grpc"',
    "connection.mtls | false",
    "request.size | 0",
    'request.api_key | request.headers["x-api-key"] | "none"',
    "destination.labels.app",
]
# Attributes of the right names and the wrong types: the closures' truthiness and errors hold.
WRONG_TYPES = Bag(
    {
        "context.protocol": 7,
        "context.reporter.kind": b"outbound",
        "request.path": 42,
        "request.method": "GET",
        "request.headers": StringMap({"x-user": "admin"}),
        "destination.labels": "app",
        "connection.mtls": "yes",
        "request.size": "big",
    }
)


def _mixer_outcome(
    text: str, activation: Mapping[str, object], vocabulary: Mapping[str, str] | None = None
) -> tuple[object, ...]:
    """The value (or error) of `text` and what a TrackingBag saw it read."""
    tracking = TrackingBag(Bag(activation))
    try:
        value = compile(text, vocabulary=vocabulary).evaluate(tracking)
    except EvaluationError as err:
        # RE2 names a fresh options object in its TypeError: its address is no difference.
        return ("error", re.sub(" at 0x[0-9a-f]+", "", str(err)), tracking.refs.reads)
    return ("value", type(value), repr(value), tracking.refs.reads)


def _closures_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _mixer_codegen, "function", lambda node, text, unwraps: guarded(node.fn, text, unwraps)
    )


@pytest.mark.parametrize("text", GENERATED)
def test_generated_code_agrees_with_the_closures(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert compile(text).evaluate.__code__.co_filename == "<mixer>"
    generated = [_mixer_outcome(text, activation) for activation in GENERATED_ACTIVATIONS]
    _closures_only(monkeypatch)
    assert compile(text).evaluate.__code__.co_filename != "<mixer>"
    assert generated == [_mixer_outcome(text, activation) for activation in GENERATED_ACTIVATIONS]


@pytest.mark.parametrize("text", [text for text, _ in CASES] + COMMON_SHAPES)
def test_generated_typed_code_agrees_with_the_closures(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bags = [BAG, Bag(), WRONG_TYPES]
    generated = [_mixer_outcome(text, bag, VOCAB) for bag in bags]
    _closures_only(monkeypatch)
    assert generated == [_mixer_outcome(text, bag, VOCAB) for bag in bags]


def _python_calls(program: Any, activation: Mapping[str, object]) -> list[str]:
    """The Python functions (not C ones) entered while `program` evaluates `activation`, which
    may fail for lack of attributes."""
    entered: list[str] = []

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            entered.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        program.evaluate(activation)
    except EvaluationError:
        pass
    finally:
        sys.setprofile(None)
    return entered


@pytest.mark.parametrize("text", COMMON_SHAPES)
def test_common_shapes_run_as_one_generated_function(text: str) -> None:
    program = compile(text, vocabulary=VOCAB)
    assert program.evaluate.__code__.co_filename == "<mixer>"
    # Plain dicts for the bag and its maps: their `get` is C, so any other entry is a node call.
    full = {
        name: dict(value) if isinstance(value, Mapping) else value for name, value in BAG.items()
    }
    full.update({"request.method": "GET", "source.workload.name": "w", "response.code": 200})
    for activation in (full, {}):
        assert _python_calls(program, activation) == ["_f"], activation


def test_generated_code_shares_one_code_object_per_shape() -> None:
    a, b = (compile(f'(request.headers["{h}"] | "-") == "x"', vocabulary=VOCAB) for h in "ab")
    assert a.evaluate.__code__ is b.evaluate.__code__
    assert a.evaluate(BAG) is b.evaluate(BAG) is False
