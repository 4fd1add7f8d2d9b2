import random
from collections.abc import Mapping

import pytest

from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.expr import compile
from mixer.expr.predicates import Equality, required_equalities
from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY as VOCAB
from mixer.runtime.routing import Rule, RuleIndex

HOST_A = Equality("destination.service.host", None, "a")


@pytest.mark.parametrize(
    ("text", "dialect", "expected"),
    [
        ('destination.service.host == "a"', "mixer", HOST_A),
        ('"a" == destination.service.host', "cel", HOST_A),
        ('destination.labels["app"] == "x" && request.path == "/"', "mixer",
         Equality("destination.labels", "app", "x")),
        ('destination.labels["app"] == "x" && request.path == "/"', "cel",
         Equality("destination.labels", "app", "x")),
        ('request.path == "/" || destination.service.host == "a"', "mixer", None),
        ('(destination.service.host | "x") == "a"', "mixer", HOST_A),
        ('(destination.service.host | "a") == "a"', "mixer", None),  # absent matches too
        ('(destination.labels["app"] | "") == "x"', "mixer",
         Equality("destination.labels", "app", "x")),
        ('response.duration == "10s"', "mixer", None),  # a DURATION constant in Mixer's dialect
        ("response.code == 200", "mixer", None),
        ('match(request.path, "/api*") && request.host == "h"', "mixer", None),
        ("not valid ((", "mixer", None),
    ],
)  # fmt: skip
def test_leading_equality(text: str, dialect: str, expected: Equality | None) -> None:
    found, leading = required_equalities(text, dialect, VOCAB)
    assert (found[0] if leading else None) == expected


@pytest.mark.parametrize(
    ("text", "dialect", "expected"),
    [
        ('match(request.path, "/a*") && destination.labels["app"] == "x"', "mixer",
         ((Equality("destination.labels", "app", "x"),), False)),
        ('request.method == "GET" && (match(request.path, "/a*") && request.host == "h")', "cel",
         ((Equality("request.method", None, "GET"), Equality("request.host", None, "h")), True)),
        ('request.path == "/" || destination.service.host == "a"', "mixer", ((), False)),
        ('request.size > 1 && (request.headers["u"] | "d") == "x"', "mixer",
         ((Equality("request.headers", "u", "x"),), False)),
        ("not valid ((", "mixer", ((), False)),
    ],
)  # fmt: skip
def test_required_equalities_are_every_equality_conjunct_in_evaluation_order(
    text: str, dialect: str, expected: tuple[tuple[Equality, ...], bool]
) -> None:
    assert required_equalities(text, dialect, VOCAB) == expected


SERVICES = ["a", "b", "c", "d"]
APPS = ["ratings", "reviews", "details"]


def random_rules(rng: random.Random, count: int) -> tuple[Rule, ...]:
    rules = []
    for i in range(count):
        kind = rng.randrange(8)
        if kind == 0:
            text = f'destination.service.host == "{rng.choice(SERVICES)}"'
        elif kind == 1:
            text = (
                f'destination.labels["app"] == "{rng.choice(APPS)}" && '
                f'source.labels["version"] == "v{rng.randrange(3)}"'
            )
        elif kind == 2:
            text = f'match(request.path, "/{rng.choice(APPS)}*")'
        elif kind == 3:
            text = f'request.headers["x-user"] == "u{rng.randrange(3)}" && request.method == "GET"'
        elif kind == 4:  # indexed by its second conjunct, which kind 1 reads first
            text = (
                f'match(request.path, "/{rng.choice(APPS)}*") && '
                f'destination.labels["app"] == "{rng.choice(APPS)}"'
            )
        elif kind == 5:  # not indexed: nothing reads request.scheme first
            text = f'match(request.path, "/{rng.choice(APPS)}*") && request.scheme == "http"'
        else:  # a defaulted equality: indexed unless the default is the constant
            text = (
                f'(request.headers["x-user"] | "{rng.choice(["", "u0"])}") == "u{rng.randrange(3)}"'
            )
        dialect = rng.choice(["mixer", "cel"]) if kind < 6 else "mixer"
        requires, leading = required_equalities(text, dialect, VOCAB)
        rules.append(
            Rule(
                name=f"r{i}",
                namespace="istio-system",
                match=compile(text, dialect=dialect, vocabulary=VOCAB),
                actions=(),
                requires=requires,
                leading=leading,
            )
        )
    return tuple(rules)


def random_bag(rng: random.Random) -> Bag:
    data: dict[str, object] = {"request.method": rng.choice(["GET", "POST"])}
    if rng.random() < 0.8:
        data["destination.service.host"] = rng.choice(SERVICES)
    if rng.random() < 0.8:
        data["destination.labels"] = StringMap({"app": rng.choice(APPS)})
    data["source.labels"] = StringMap({"version": f"v{rng.randrange(3)}"})
    data["request.path"] = f"/{rng.choice(APPS)}/1"
    if rng.random() < 0.5:
        data["request.scheme"] = rng.choice(["http", "https"])
    if rng.random() < 0.5:
        data["request.headers"] = StringMap({"x-user": f"u{rng.randrange(3)}"})
    return Bag(data)  # type: ignore[arg-type]


def matching(rules: object, activation: TrackingBag) -> list[str]:
    out = []
    for rule in rules:  # type: ignore[attr-defined]
        try:
            if rule.match.evaluate(activation) is True:
                out.append(rule.name)
        except Exception:
            pass
    return out


def test_index_selects_exactly_the_rules_that_can_match_and_reads_no_more() -> None:
    # CEL evaluates the right of `&&` when the left is an error (a missing map), reads that the
    # index saves; they cannot change the decision, since an error never matches.
    rng = random.Random(11)
    rules = random_rules(rng, 60)
    index = RuleIndex(rules)
    for _ in range(500):
        bag = random_bag(rng)
        everything, indexed = TrackingBag(bag), TrackingBag(bag)
        assert matching(index.select(indexed), indexed) == matching(rules, everything)
        assert indexed.refs.reads.items() <= everything.refs.reads.items()


def test_index_skips_rules_whose_equality_fails() -> None:
    rules = random_rules(random.Random(3), 40)
    index = RuleIndex(rules)
    selected = index.select(Bag({"destination.service.host": "a"}))
    assert len(selected) < len(rules)
    assert all(
        not r.leading
        or (r.requires[0].attribute, r.requires[0].value) == ("destination.service.host", "a")
        for r in selected
    )


def test_a_later_or_defaulted_equality_skips_rules_when_its_key_is_read_anyway() -> None:
    rng = random.Random(5)
    rules = random_rules(rng, 80)
    index = RuleIndex(rules)
    bag = Bag(
        {
            "destination.labels": StringMap({"app": "nobody"}),
            "request.headers": StringMap({"x-user": "nobody"}),
            "request.path": "/ratings/1",
        }
    )
    selected = {r.name for r in index.select(bag)}
    by_text = {r.name: r for r in rules}
    later = [r for r in rules if r.requires and not r.leading]
    assert later, "the random rules include later equalities"
    for name, rule in by_text.items():
        eq = rule.requires[0] if rule.requires else None
        if eq is not None and eq.attribute in ("destination.labels", "request.headers"):
            assert name not in selected, name
        if any(e.attribute == "request.scheme" for e in rule.requires):
            assert name in selected, name  # request.scheme is nobody's leading equality


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("request.method", None),  # present
        ("request.host", None),  # absent
        ("request.headers", "x-user"),  # a map key present
        ("request.headers", "x-other"),  # a map key absent
        ("source.labels", "version"),  # an absent map
        ("request.method", "x"),  # a key into a value that is not a map
    ],
)
def test_value_at_reads_and_records_what_get_then_a_key_would(name: str, key: str | None) -> None:
    bag = Bag(
        {
            "request.method": "GET",
            "request.headers": StringMap({"x-user": "u1"}),
        }
    )
    one, other = TrackingBag(bag), TrackingBag(bag)
    value = other.get(name)
    if key is not None:
        value = value.get(key) if isinstance(value, Mapping) else None
    assert one.value_at(name, key) == value
    assert one.refs.reads == other.refs.reads
