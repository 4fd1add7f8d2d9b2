import pytest

import mixer.expr
from mixer.attributes.bag import Bag, StringMap
from mixer.errors import DispatchError
from mixer.runtime.routing import HeaderOp, HeaderOperationResult, HeaderOperationTemplate

BAG = Bag({"request.headers": StringMap({"x-user": "ann"}), "request.size": 3})


def template(op: HeaderOp, *texts: str) -> HeaderOperationTemplate:
    return HeaderOperationTemplate("x-h", tuple(mixer.expr.compile(t) for t in texts), op)


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (('"v1"',), ["v1"]),
        (("true",), ["true"]),  # Mixer's text for a boolean
        (('""', '"a"'), ["a"]),  # an empty value is skipped
        (('request.headers["x-user"] | "anonymous"',), ["ann"]),
        (('request.headers["x-other"] | "anonymous"', "request.size"), ["anonymous", "3"]),
    ],
)
def test_values_become_operations_whether_constant_or_read(
    texts: tuple[str, ...], expected: list[str]
) -> None:
    op = template(HeaderOp.APPEND, *texts)
    results = list(op.evaluate(BAG, "r"))
    assert results == [HeaderOperationResult("x-h", v, HeaderOp.APPEND) for v in expected]
    assert list(op.evaluate(Bag({"request.size": 3}), "r")) == [
        HeaderOperationResult("x-h", v if v != "ann" else "anonymous", HeaderOp.APPEND)
        for v in expected
    ]


def test_a_removal_has_no_value_and_a_failing_value_names_the_rule() -> None:
    remove = template(HeaderOp.REMOVE)
    assert list(remove.evaluate(BAG, "r")) == [HeaderOperationResult("x-h", "", HeaderOp.REMOVE)]
    failing = template(HeaderOp.REPLACE, "request.user")  # an absent attribute
    with pytest.raises(DispatchError, match=r"rule r7: header x-h: expression .* failed"):
        list(failing.evaluate(BAG, "r7"))
