"""The CEL dialect: CEL expressions over Mixer attributes, Mixer's functions, errors, tracking."""

from __future__ import annotations

import contextlib
import datetime
import re
from collections.abc import Iterator, Mapping

import pytest

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.expr import CompileError, EvaluationError, _cel_codegen, compile
from mixer.expr import _cel_runtime as rt
from mixer.expr._errors import guarded
from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY as VOCAB

T0 = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
BAG = Bag(
    {
        "destination.labels": StringMap({"app": "ratings", "version": "v1"}),
        "source.labels": StringMap({"app": "reviews", "version": "v3"}),
        "request.headers": StringMap({"x-user": "john", "content-type": "application/json"}),
        "source.ip": bytes([10, 1, 2, 3]),
        "request.size": 2048,
        "response.code": 503,
        "request.path": "/api/v1/reviews",
        "request.method": "GET",
        "connection.mtls": True,
        "response.duration": datetime.timedelta(milliseconds=25),
        "request.time": T0,
        "source.principal": "cluster.local/ns/prod/sa/gateway",
    }
)

CASES: list[tuple[str, object]] = [
    ('destination.labels["app"] == "ratings" && source.labels["version"] != "v3"', False),
    ('destination.labels.app == "ratings"', True),
    ('request.path.startsWith("/api/") && request.method in ["GET", "HEAD"]', True),
    (
        'request.headers["x-user"] == "admin" || source.principal.endsWith("/ns/prod/sa/gateway")',
        True,
    ),
    ("request.size > 1024 && response.code >= 500", True),
    ("!connection.mtls", False),
    ('connection.mtls ? "mutual_tls" : "none"', "mutual_tls"),
    ('"app" in destination.labels', True),
    ('"istio" in source.labels', False),
    ("has(destination.labels.app)", True),
    ("has(destination.labels.istio)", False),
    ("[1, 2, 3].all(x, x > 0)", True),
    ("[1, 2, 3].exists(x, x == 2)", True),
    ("[1, 2, 3].map(x, x * 2)", [2, 4, 6]),
    ("[1, 2, 3].filter(x, x > 1)", [2, 3]),
    ("size(request.path)", 15),
    ('request.path.matches("^/api/v[0-9]+")', True),  # CEL: the receiver is the subject
    ('request.path.contains("v1")', True),
    ("request.size + 1", 2049),
    ("request.size / 3", 682),
    ("request.size % 1000", 48),
    ('response.duration < duration("1s")', True),
    ('request.time == timestamp("2020-01-02T03:04:05Z")', True),
    ('request.time + duration("1h") > request.time', True),
    ("1 + 2", 3),
    ('"a" + "b"', "ab"),
    ("2.5 * 2.0", 5.0),
    # Mixer's functions as CEL functions
    ('match(request.path, "/api/*")', True),
    ('match(request.path, "*/ratings")', False),
    ('source.ip == ip("10.1.2.3")', True),
    ('ip("::1")', bytes(15) + b"\x01"),
    ('email("joe@example.com")', "joe@example.com"),
    ('dnsName("ratings.default.svc")', "ratings.default.svc"),
    ('uri("http://example.com/a")', "http://example.com/a"),
    ("emptyStringMap()", {}),
    ('reverse("abc")', "cba"),
    ('"abc".reverse()', "cba"),
    ('toLower("MiXeR")', "mixer"),
    ('conditional(connection.mtls, "a", "b")', "a"),
    ("destination.labels", {"app": "ratings", "version": "v1"}),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_cel_expression_evaluates(text: str, expected: object) -> None:
    program = compile(text, dialect="cel", vocabulary=VOCAB)
    value = program.evaluate(BAG)
    assert value == expected
    assert type(value) is type(expected) or isinstance(value, Mapping)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_cel_without_vocabulary_gives_the_same_values(text: str, expected: object) -> None:
    assert compile(text, dialect="cel").evaluate(BAG) == expected


def test_relational_and_logical_expressions_are_typed_bool() -> None:
    for text in ("request.size > 1", "!connection.mtls", "a == 1 || b == 2", '"a" in m'):
        assert compile(text, dialect="cel").result_type == "BOOL", text


def test_constant_cel_expressions_are_constants() -> None:
    assert compile("true", dialect="cel").constant is True
    assert compile('"1"', dialect="cel").constant == "1"
    assert compile("1 + 2", dialect="cel").constant == 3
    assert compile("request.size", dialect="cel", vocabulary=VOCAB).constant is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('destination.lables["app"] == "x"', "unknown attribute 'destination.lables' at column 1"),
        (
            'request.size > 1 && sourc.ip == ip("1.2.3.4")',
            "unknown attribute 'sourc.ip' at column 21",
        ),
        ("request.size >", "syntax error"),
        ("(1 + 2", "syntax error"),
    ],
)
def test_cel_compile_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(CompileError, match=re.escape(message)):
        compile(text, dialect="cel", vocabulary=VOCAB)


@pytest.mark.parametrize(
    "text",
    [
        'source.uid == "x"',
        'request.headers["x-missing"] == "admin"',
        'ip("not-an-ip") == source.ip',
        'email("no at sign") == "x"',
        "1 / 0",
    ],
)
def test_cel_evaluation_errors_raise_evaluation_error(text: str) -> None:
    program = compile(text, dialect="cel", vocabulary=VOCAB)
    with pytest.raises(EvaluationError):
        program.evaluate(BAG)


def test_cel_errors_are_absorbed_by_logical_operators() -> None:
    # CEL: `error || true` is true and `error && false` is false.
    assert compile('request.headers["x-missing"] == "a" || true', dialect="cel").evaluate(BAG)
    assert not compile('false && request.headers["x-missing"] == "a"', dialect="cel").evaluate(BAG)


def test_cel_reads_are_recorded_in_the_tracking_bag() -> None:
    tracking = TrackingBag(BAG)
    program = compile('destination.labels["app"] == "ratings"', dialect="cel", vocabulary=VOCAB)
    assert program.evaluate(tracking) is True
    assert tracking.refs.names() == {"destination.labels"}
    tracking = TrackingBag(BAG)
    with pytest.raises(EvaluationError):
        compile('source.uid == "x"', dialect="cel", vocabulary=VOCAB).evaluate(tracking)
    assert tracking.refs.reads == {("source.uid", None): False}


def _cel_reads(text: str, bag: Bag = BAG) -> dict[tuple[str, str | None], bool]:
    tracking = TrackingBag(bag)
    with contextlib.suppress(EvaluationError):
        compile(text, dialect="cel", vocabulary=VOCAB).evaluate(tracking)
    return tracking.refs.reads


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ('destination.labels["app"] == "ratings"', {("destination.labels", "app"): True}),
        ('destination.labels.app == "ratings"', {("destination.labels", "app"): True}),
        ('"istio" in source.labels', {("source.labels", "istio"): False}),
        ("has(destination.labels.version)", {("destination.labels", "version"): True}),
        ("has(request.api_key)", {("request.api_key", None): False}),
        ("size(source.labels) == 2", {("source.labels", None): True}),
        (
            'request.method == "POST" && source.uid == "x"',
            {("request.method", None): True},
        ),
        ("request.size > 1 || source.uid == 'x'", {("request.size", None): True}),
        (
            "connection.mtls ? request.path : source.uid",
            {("connection.mtls", None): True, ("request.path", None): True},
        ),
        ('source.uid == "x"', {("source.uid", None): False}),
    ],
)
def test_cel_records_exactly_the_reads_evaluation_needed(
    text: str, reads: dict[tuple[str, str | None], bool]
) -> None:
    assert _cel_reads(text) == reads


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('request.size == "2048"', "no matching overload for '==' applied to (int, string)"),
        ("request.size && true", "left operand of '&&' must be bool, got int"),
        ("!request.path", "operand of '!' must be bool, got string"),
        ('request.path["x"]', "an indexed value must be list or map, got string"),
        ("request.path.nosuch", "operand of '.nosuch' must be map, got string"),
        ("request.time < request.size", "no matching overload for '<'"),
        ('request.path - "x"', "no matching overload for '-' applied to (string, string)"),
        ("request.size ? 1 : 2", "condition of '?:' must be bool"),
        ("nosuch(request.path)", "unknown function 'nosuch'"),
        ("request.path in request.size", "right operand of 'in' must be list or map"),
        ("Foo{a: 1}", "message construction (Foo{...}) is not supported"),
        ("if", "reserved identifier 'if' at column 1"),
        ("request.size > ", "syntax error: unexpected end of expression at column 16"),
        ("'unterminated", "syntax error: unexpected character"),
        ('"\\q"', "invalid escape sequence"),
        ("18446744073709551616u", "uint literal out of range"),
        ("has(request)", "invalid argument to has() macro"),
        ("[1].all(x)", "wrong number of arguments to the all() macro"),
    ],
)
def test_cel_type_and_syntax_errors_are_compile_errors_with_a_vocabulary(
    text: str, message: str
) -> None:
    with pytest.raises(CompileError, match=re.escape(message)):
        compile(text, dialect="cel", vocabulary=VOCAB)


def test_without_vocabulary_unknown_names_and_functions_fail_only_when_evaluated() -> None:
    assert compile("x || true", dialect="cel").evaluate({}) is True
    assert compile("nosuch(1) || true", dialect="cel").evaluate({}) is True
    with pytest.raises(EvaluationError, match="undeclared reference to 'x'"):
        compile("x == 1", dialect="cel").evaluate({})
    with pytest.raises(EvaluationError, match="unbound function"):
        compile("nosuch(1)", dialect="cel").evaluate({})
    # The longest dotted name bound in the activation wins; the rest selects map fields.
    program = compile("a.b.c", dialect="cel")
    assert program.evaluate({"a.b.c": 1, "a.b": {"c": 2}}) == 1
    assert program.evaluate({"a.b": {"c": 2}}) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1u", rt.UInt(1)),
        ("type(1u) == uint", True),
        ("type(1) == int && type('a') == string && type([]) == list", True),
        ("1 == 1.0 && 2u == 2", True),
        ("[1, 2] == [1.0, 2u]", True),
        ("dyn(1) == 'a'", False),
        ("0.0 / 0.0 == 0.0 / 0.0", False),
        ("7 / -2", -3),
        ("-7 % 3", -1),
        ("9223372036854775807 - 1", 9223372036854775806),
        ("string(2.5) + string(10u) + string(true)", "2.510true"),
        ("string(duration('1.5s'))", "1.5s"),
        ("int('42') + int(2.9)", 44),
        ("size('πέντε')", 5),
        ("b'\\xff' + b'a'", b"\xffa"),
        ("{'a': 1, 2: 'b'}[2]", "b"),
        ("[1, 2, 3].exists_one(x, x > 2)", True),
        ("[1, 2, 3].map(x, x > 1, x * 10)", [20, 30]),
        ("duration('1h') > duration('59m')", True),
        ("timestamp('2020-01-01T00:00:00Z').getFullYear()", 2020),
        ("timestamp('2020-01-01T00:30:00Z').getHours('-01:00')", 23),
        ("1/0 != 0 || true", True),
        ("destination.labels.exists(k, k == 'version')", True),
        ("destination.labels.all(k, destination.labels[k] != '')", True),
        ("source.labels.filter(k, k.startsWith('v'))", ["version"]),
    ],
)
def test_cel_semantics(text: str, expected: object) -> None:
    value = compile(text, dialect="cel", vocabulary=VOCAB).evaluate(BAG)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9223372036854775807 + 1", "overflow"),
        ("-9223372036854775808 - 1", "overflow"),
        ("1u - 2u", "overflow"),
        ("dyn(1) + 1u", "no matching overload"),
        ("1 / 0", "divide by zero"),
        ("5 % 0", "modulo by zero"),
        ("[1, 2][2]", "index out of range"),
        ("{'a': 1}['b']", "no such key"),
        ("{1: 'a', 1u: 'b'}", "repeated key"),
        ("int(1e99)", "range"),
        ("timestamp('9999-12-31T23:59:59Z') + duration('1s')", "range"),
        ("duration('200000000000s') + duration('200000000000s')", "range"),
        ("'abc'.matches('[')", "invalid regular expression"),
        ("ip('nope')", "IP_ADDRESS"),
    ],
)
def test_cel_runtime_errors(text: str, message: str) -> None:
    program = compile(text, dialect="cel", vocabulary=VOCAB)  # errors never surface at compile
    with pytest.raises(EvaluationError, match=re.escape(message)):
        program.evaluate(BAG)


def test_cel_result_types_are_inferred() -> None:
    types = {
        "request.size + 1": "INT64",
        'request.path + "x"': "STRING",
        'ip("1.2.3.4")': "IP_ADDRESS",
        "source.ip": "IP_ADDRESS",
        "destination.labels": "STRING_MAP",
        'destination.labels["app"]': "STRING",
        "destination.labels.app": "STRING",
        "response.duration": "DURATION",
        "request.time + duration('1s')": "TIMESTAMP",
        "request.size > 1 && true": "BOOL",
        'email("a@b.c")': "EMAIL_ADDRESS",
        "1u": "DYNAMIC",
        "[1, 2]": "DYNAMIC",
    }
    for text, expected in types.items():
        assert compile(text, dialect="cel", vocabulary=VOCAB).result_type == expected, text


def test_hostile_expressions_are_bounded() -> None:
    program = compile("x.all(i, i >= 0)", dialect="cel")
    assert program.evaluate({"x": list(range(1000))}) is True
    with pytest.raises(EvaluationError, match="more than 100000 times"):
        program.evaluate({"x": list(range(100_001))})
    # Nested comprehensions share one budget: 400 x 400 iterations is too much work.
    nested = compile("x.all(i, x.all(j, i + j >= 0))", dialect="cel")
    with pytest.raises(EvaluationError, match="more than 100000 times"):
        nested.evaluate({"x": list(range(400))})
    assert nested.evaluate({"x": list(range(300))}) is True
    doubling = compile("[x, x, x, x, x, x, x, x].map(s, s + s + s + s)", dialect="cel")
    with pytest.raises(EvaluationError, match="longer than"):
        doubling.evaluate({"x": "a" * 300_000})
    with pytest.raises(CompileError, match="nests deeper than"):
        compile(" + ".join(["1"] * 200), dialect="cel")
    with pytest.raises(CompileError, match="nests deeper than"):
        compile("(" * 60 + "1" + ")" * 60, dialect="cel")
    with pytest.raises(CompileError, match="longer than"):
        compile("a" * 20_000, dialect="cel")


# -- generated code ------------------------------------------------------------------------------

GENERATED = [
    "x == 1",
    "x != 1",
    "x == 0",
    "x == 1.0",
    "x == true",
    'x == "a"',
    'x != "a"',
    'x == b"a"',
    "1 == x",
    "x == y",
    "x < 5",
    "x >= 5.0",
    'x < "m"',
    "x > y",
    'x in ["a", "b"]',
    "x in [1, 2]",
    '"k" in m',
    "x in m",
    "x && y",
    "x || y",
    "!x",
    "x ? y : z",
    "conditional(x, y, z)",
    'm["k"]',
    "m[x]",
    "has(m.k)",
    'x.startsWith("a")',
    "x.endsWith(y)",
    'x.contains("b")',
    "size(x)",
    "x.size()",
    "x + y",
    "-x",
    "[x, y]",
    'x.matches("^a")',
    "int(x)",
    '(x == 1 || y == 2) && m["k"] == "v"',
    '!(x in m) ? y.startsWith("a") : m[x] != "v"',
]
ACTIVATIONS: list[dict[str, object]] = [
    {},
    {"x": 1, "y": 2, "z": 3},
    {"x": True, "y": False, "z": "s"},
    {"x": False, "y": True},
    {"x": "a", "y": "abc", "m": StringMap({"k": "v"})},
    {"x": "k", "y": "b", "m": StringMap({"k": "w"})},
    {"x": 1.0, "y": rt.UInt(5), "m": {"k": 1}},
    {"x": [1], "y": [2], "m": ["k"]},
    {"x": b"a", "y": "a", "m": "text"},
    {"x": float("nan"), "y": 5},
    {"x": 2**63 - 1, "y": 1},
    {"x": None, "y": None},
]


def _outcome(text: str, activation: dict[str, object]) -> tuple[object, ...]:
    """The value (or error) of `text` and what a TrackingBag saw it read."""
    tracking = TrackingBag(Bag(activation))
    try:
        value = compile(text, dialect="cel").evaluate(tracking)
    except EvaluationError as err:
        return ("error", str(err), tracking.refs.reads)
    return ("value", type(value), repr(value), tracking.refs.reads)


@pytest.mark.parametrize("text", GENERATED)
def test_generated_code_agrees_with_the_closures(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert compile(text, dialect="cel").evaluate.__code__.co_filename == "<cel>"
    generated = [_outcome(text, activation) for activation in ACTIVATIONS]
    monkeypatch.setattr(
        _cel_codegen, "function", lambda node, text, unwraps: guarded(node.fn, text, unwraps)
    )
    assert compile(text, dialect="cel").evaluate.__code__.co_filename != "<cel>"
    assert generated == [_outcome(text, activation) for activation in ACTIVATIONS]


def test_generated_logic_absorbs_errors_like_cel() -> None:
    def evaluate(text: str) -> object:
        return compile(text, dialect="cel", vocabulary=VOCAB).evaluate(BAG)

    # source.uid is missing from BAG: an error that `&&`/`||` absorb from either side.
    assert evaluate('source.uid == "x" && request.size < 0') is False
    assert evaluate('request.size < 0 && source.uid == "x"') is False
    assert evaluate('source.uid == "x" || request.size > 0') is True
    assert evaluate('request.size > 0 || source.uid == "x"') is True
    with pytest.raises(EvaluationError, match=re.escape("no such attribute: 'source.uid'")):
        evaluate('source.uid == "x" && request.size > 0')
    with pytest.raises(EvaluationError, match=re.escape("no such attribute: 'source.uid'")):
        evaluate('source.uid == "x" || request.size < 0')
    with pytest.raises(EvaluationError, match="no such key: 'x-missing'"):
        evaluate('request.headers["x-missing"] == "a" || !connection.mtls')
    assert evaluate('request.headers["x-missing"] == "a" || connection.mtls') is True
    # Without a vocabulary, a non-bool operand is an error unless the other side decides.
    program = compile("x && y", dialect="cel")
    assert program.evaluate({"x": "s", "y": False}) is False
    with pytest.raises(EvaluationError, match="no matching overload for '_&&_'"):
        program.evaluate({"x": "s", "y": True})
    with pytest.raises(EvaluationError, match="undeclared reference to 'x'"):
        program.evaluate({"y": True})


def test_generated_comparisons_follow_cel_across_types() -> None:
    assert [compile("x == 1", dialect="cel").evaluate({"x": x}) for x in ("1", True, 1.0)] == [
        False,
        False,
        True,
    ]
    assert compile("x == 1", dialect="cel").evaluate({"x": rt.UInt(1)}) is True
    assert compile("x != 1", dialect="cel").evaluate({"x": True}) is True
    assert compile("x == true", dialect="cel").evaluate({"x": 1}) is False
    assert compile('x == "a"', dialect="cel").evaluate({"x": b"a"}) is False
    assert compile("x < 5", dialect="cel").evaluate({"x": 4.5}) is True
    for bad in ("a", True):
        with pytest.raises(EvaluationError, match="no matching overload for '_<_'"):
            compile("x < 5", dialect="cel").evaluate({"x": bad})
    assert compile("x < 5 || y", dialect="cel").evaluate({"x": "a", "y": True}) is True
    with pytest.raises(EvaluationError, match="int overflow"):
        compile("x + 1 > 0", dialect="cel").evaluate({"x": 2**63 - 1})


def test_generated_code_turns_python_errors_into_evaluation_errors() -> None:
    class Broken(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            raise ValueError("broken map")

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

    program = compile('m["k"] == "v" || y', dialect="cel")
    # Not a CEL error, so `||` does not absorb it; evaluate still raises EvaluationError only.
    with pytest.raises(EvaluationError, match="ValueError: broken map"):
        program.evaluate({"m": Broken(), "y": True})


def test_generated_code_reads_through_the_tracking_bag() -> None:
    assert _cel_reads('"x-user" in request.headers && request.headers["x-user"] == "john"') == {
        ("request.headers", "x-user"): True
    }
    assert _cel_reads('"x-tenant" in request.headers ? request.headers["x-tenant"] : "n"') == {
        ("request.headers", "x-tenant"): False
    }
    assert _cel_reads('request.method in ["GET"] || source.uid == "x"') == {
        ("request.method", None): True
    }
    assert _cel_reads('source.uid == "x" && request.size < 0') == {
        ("source.uid", None): False,
        ("request.size", None): True,
    }
    tracking = TrackingBag(BAG)
    program = compile(
        "connection.mtls ? destination.labels : source.labels", dialect="cel", vocabulary=VOCAB
    )
    assert program.evaluate(tracking) == {"app": "ratings", "version": "v1"}
    assert tracking.refs.reads == {
        ("connection.mtls", None): True,
        ("destination.labels", None): True,
    }


def test_rules_of_one_shape_keep_their_own_constants() -> None:
    get, post = (
        compile(f'request.method == "{m}"', dialect="cel", vocabulary=VOCAB)
        for m in ("GET", "POST")
    )
    assert (get.evaluate(BAG), post.evaluate(BAG)) == (True, False)
    assert get.evaluate.__code__ is post.evaluate.__code__


def test_deeply_nested_expressions_generate_and_keep_cel_logic() -> None:
    depth = 48  # the parser's limit is 50 nested parentheses
    program = compile("(" * depth + "x" + " && y)" * depth, dialect="cel")
    assert program.evaluate({"x": True, "y": True}) is True
    assert program.evaluate({"y": False}) is False  # x's error absorbed at the deepest level
    with pytest.raises(EvaluationError, match="undeclared reference to 'y'"):
        program.evaluate({"x": True})
    chain = compile("(x ? " * depth + "1" + " : 2)" * depth, dialect="cel")
    assert chain.evaluate({"x": True}) == 1
