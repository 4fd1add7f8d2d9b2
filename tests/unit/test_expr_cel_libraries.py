"""CEL extension libraries: named units a compile may leave out, compiled like the core, and
bounded against hostile expressions like the core (1 MiB per built string or list)."""

from __future__ import annotations

from typing import Any

import pytest

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.expr import CEL_LIBRARIES, CompileError, EvaluationError, compile
from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY as VOCAB

BIG = "a" * 600_000


def _eval(text: str, **activation: Any) -> Any:
    return compile(text, dialect="cel").evaluate(activation)


def test_every_library_is_on_by_default() -> None:
    assert {"strings", "math", "encoders"} <= set(CEL_LIBRARIES)
    assert _eval("'TacoCat'.lowerAscii()") == "tacocat"
    assert _eval("math.greatest(1, 2.5, 2u)") == 2.5
    assert _eval("base64.encode(b'hello')") == "aGVsbG8="


def test_a_library_left_out_names_itself_when_checked() -> None:
    with pytest.raises(CompileError, match="in the CEL library 'math', which is not enabled"):
        compile("math.abs(x) > 1", dialect="cel", vocabulary={"x": "INT64"}, libraries=())


def test_a_library_left_out_fails_evaluation_when_unchecked() -> None:
    program = compile("'a'.charAt(0)", dialect="cel", libraries=("math",))
    with pytest.raises(EvaluationError, match="library 'strings'"):
        program.evaluate({})


def test_an_unknown_library_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="unknown CEL libraries"):
        compile("1", dialect="cel", libraries=("nope",))


def test_library_calls_are_part_of_the_generated_function() -> None:
    program = compile("s.upperAscii() == 'AB'", dialect="cel", vocabulary={"s": "STRING"})
    assert program.evaluate.__code__.co_filename == "<cel>"
    assert program.evaluate({"s": "ab"}) is True
    assert program.result_type == "BOOL"


def test_qualified_function_results_are_typed() -> None:
    assert compile("math.isNaN(1.0)", dialect="cel", vocabulary={}).result_type == "BOOL"
    with pytest.raises(CompileError, match="must be"):
        compile("math.ceil(1.5) && true", dialect="cel", vocabulary={})


@pytest.mark.parametrize(
    ("text", "s"),
    [
        ("s.replace('a', 'aa')", BIG),
        ("[s, s].join()", BIG),
        ("[s, s].join(',')", BIG),
        ("'%s%s'.format([s, s])", BIG),
        ("'%s'.format([[s, s]])", BIG),
        ("'%s'.format([{'k': s, 'l': s}])", BIG),
        ("'%.2000000f'.format([1.0])", ""),
        ("strings.quote(s)", "\n" * 600_000),
        ("base64.encode(bytes(s))", "a" * 800_000),
    ],
)
def test_strings_never_grow_past_the_limit(text: str, s: str) -> None:
    with pytest.raises(EvaluationError, match=r"(longer|larger) than"):
        _eval(text, s=s)


def test_strings_within_the_limit_are_built() -> None:
    assert len(_eval("s.replace('a', 'b')", s=BIG)) == len(BIG)
    assert len(_eval("'%s'.format([s])", s=BIG)) == len(BIG)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("math.bitShiftLeft(1, 63)", -(2**63)),
        ("math.bitShiftRight(-1, 1)", 2**63 - 1),
        ("math.bitShiftLeft(1u, 64)", 0),
        ("math.round(0.49999999999999994)", 0.0),
        ("math.round(-2.5)", -3.0),
        ("'%d'.format([1.5])", "1.5"),
        ("'%s'.format([1e20])", "100000000000000000000"),
        ("'a,b,c'.split(',', 2)", ["a", "b,c"]),
        ("'abc'.split('', 2)", ["a", "bc"]),
        ("'\\x1ca\\x1c'.trim()", "\x1ca\x1c"),
        ("base64.decode('aGk')", b"hi"),
    ],
)
def test_cel_go_semantics_at_the_edges(text: str, value: Any) -> None:
    assert _eval(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "math.abs(-9223372036854775807 - 1)",
        "math.greatest([])",
        "math.greatest('a', 1)",
        "math.bitAnd(1, 1u)",
        "base64.decode('a')",
        "'%'.format([1])",
        "'%.3'.format([1.0])",
    ],
)
def test_cel_go_errors(text: str) -> None:
    with pytest.raises(EvaluationError):
        _eval(text)


def test_bind_shadows_an_attribute_and_reads_others() -> None:
    program = compile(
        "cel.bind(x, y + 1, x * x)", dialect="cel", vocabulary={"x": "INT64", "y": "INT64"}
    )
    assert program.evaluate({"x": 100, "y": 2}) == 9


def test_two_variable_comprehensions_share_the_iteration_budget() -> None:
    text = "r.all(i, v, r.exists(j, w, j == i && w == v))"
    assert _eval(text, r=list(range(300))) is True
    with pytest.raises(EvaluationError, match="iterate more than"):
        _eval(text, r=list(range(400)))


def test_transform_map_over_a_list_keys_by_index() -> None:
    assert _eval("['a', 'b'].transformMap(i, v, v + v)") == {0: "aa", 1: "bb"}
    assert _eval("{'a': 1, 'b': 2}.transformMap(k, v, v > 1, k)") == {"b": "b"}


def test_two_variable_forms_need_their_library() -> None:
    with pytest.raises(CompileError, match="wrong number of arguments"):
        compile("[1].all(i, v, v > 0)", dialect="cel", vocabulary={}, libraries=())


def test_block_slots_cannot_be_spelled_by_an_expression() -> None:
    assert _eval("cel.block([1, cel.index(0) + 1], cel.index(1) * 2)") == 4
    with pytest.raises(CompileError):
        compile("cel.block([1], cel.index(x))", dialect="cel")


def test_an_optional_header_reads_only_its_key() -> None:
    program = compile(
        "request.headers[?'x-user'].orValue('anonymous')", dialect="cel", vocabulary=VOCAB
    )
    headers = {"request.headers": StringMap({"x-user": "john"})}
    tracking = TrackingBag(Bag(headers))
    assert program.evaluate(tracking) == "john"
    assert tracking.refs.reads == {("request.headers", "x-user"): True}
    tracking = TrackingBag(Bag({"request.headers": StringMap({})}))
    assert program.evaluate(tracking) == "anonymous"
    assert tracking.refs.reads == {("request.headers", "x-user"): False}


def test_optional_syntax_needs_its_library() -> None:
    with pytest.raises(CompileError, match="library 'optionals'"):
        compile("{}.?a", dialect="cel", libraries=("strings",))
    with pytest.raises(CompileError, match="library 'optionals'"):
        compile("[?x]", dialect="cel", libraries=())


def test_optional_elements_must_be_optionals() -> None:
    assert _eval("[1, ?optional.none(), ?optional.of(2)]") == [1, 2]
    assert _eval("{?'a': optional.none(), 'b': 1}") == {"b": 1}
    with pytest.raises(EvaluationError, match="must be an optional"):
        _eval("[?1]")


def test_optionals_are_not_map_keys() -> None:
    with pytest.raises(EvaluationError):
        _eval("{optional.none(): 1}")


NET_BAG = Bag({"source.ip": bytes([10, 1, 2, 3]), "destination.ip": bytes(15) + b"\x01"})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("cidr('10.0.0.0/8').containsIP(source.ip)", True),
        ("cidr('10.2.0.0/16').containsIP(source.ip)", False),
        ("source.ip == ip('10.1.2.3')", True),
        ("ip('10.1.2.3') == source.ip", True),
        ("[source.ip].exists(a, a == ip('::ffff:a01:203'))", True),
        ("source.ip.family() == 4 && destination.ip.isLoopback()", True),
        ("string(ip(string(ip('2001:DB8::1'))))", "2001:db8::1"),
    ],
)
def test_network_functions_take_mixer_ip_attributes(text: str, value: Any) -> None:
    program = compile(text, dialect="cel", vocabulary=VOCAB)
    assert program.evaluate(NET_BAG) == value


def test_an_address_leaves_the_program_as_plain_bytes() -> None:
    program = compile("ip(request.path)", dialect="cel", vocabulary=VOCAB)
    assert program.result_type == "IP_ADDRESS"
    value = program.evaluate(Bag({"request.path": "10.0.0.1"}))
    assert type(value) is bytes and value == bytes([10, 0, 0, 1])
    assert type(compile("ip('::1')", dialect="cel").constant) is bytes


def test_network_parsing_is_strict() -> None:
    for text in ("ip('fe80::1%eth0')", "ip('::ffff:1.2.3.4')", "cidr('10.0.0.0/33')"):
        with pytest.raises(EvaluationError):
            _eval(text)
