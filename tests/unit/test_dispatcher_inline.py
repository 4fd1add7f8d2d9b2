"""Handlers that answer inline are awaited in place; the others run in tasks under the timeout."""

from __future__ import annotations

import asyncio
import re

import pytest

from adapters.base import CheckResult, Instance
from mixer.attributes.bag import Bag
from mixer.errors import DispatchError
from mixer.runtime.dispatcher import Dispatcher
from mixer.runtime.routing import Action, HandlerEntry, InstanceBuilder, RoutingTable, Rule
from mixer.telemetry import ServerMetrics
from mixer.templates import Variety


class Recorder:
    """A check handler that notes the task it ran in; optionally inline, denying or hanging."""

    def __init__(
        self, *, inline: bool, code: int = 0, hang: bool = False, fail: bool = False
    ) -> None:
        self.answers_inline = inline
        self.code = code
        self.hang = hang
        self.fail = fail
        self.tasks: list[asyncio.Task[object] | None] = []

    async def check(self, instance: Instance) -> CheckResult:
        self.tasks.append(asyncio.current_task())
        if self.hang:
            await asyncio.sleep(60)
        if self.fail:
            raise RuntimeError("recorder was told to fail")
        return CheckResult(status_code=self.code, message="denied" if self.code else "")

    async def close(self) -> None:
        return None


def dispatcher(*handlers: Recorder, timeout: float = 1.0) -> Dispatcher:
    rules = tuple(
        Rule(
            name=f"rule{i}",
            namespace="istio-system",
            match=None,
            actions=(
                Action(
                    HandlerEntry(f"h{i}.handler.istio-system", "recorder", handler, ""),
                    (InstanceBuilder(f"i{i}.checknothing", f"i{i}", "checknothing", {}),),
                    Variety.CHECK,
                ),
            ),
        )
        for i, handler in enumerate(handlers)
    )
    return Dispatcher(
        RoutingTable(rules=rules), {}, ServerMetrics.create(), handler_timeout=timeout
    )


BAG = Bag({"destination.namespace": "default"})


async def test_inline_handlers_run_in_the_callers_task() -> None:
    first, second = Recorder(inline=True), Recorder(inline=True, code=7)
    outcome = await dispatcher(first, second).check(BAG)
    me = asyncio.current_task()
    assert first.tasks == [me] and second.tasks == [me]
    assert (outcome.status_code, outcome.decided_by) == (7, "rule1")


async def test_other_handlers_run_in_tasks_of_their_own() -> None:
    inline, other = Recorder(inline=True), Recorder(inline=False, code=7)
    outcome = await dispatcher(inline, other).check(BAG)
    me = asyncio.current_task()
    assert inline.tasks[0] is not None and other.tasks[0] is not None
    assert inline.tasks[0] is not me and other.tasks[0] is not me
    assert outcome.status_code == 7


async def test_a_hanging_handler_is_cut_off_even_beside_inline_ones() -> None:
    inline, hanging = Recorder(inline=True), Recorder(inline=False, hang=True)
    with pytest.raises(DispatchError, match=re.escape("h1.handler.istio-system: timed out")):
        await dispatcher(inline, hanging, timeout=0.2).check(BAG)
    assert len(inline.tasks) == 1


async def test_an_inline_handler_that_raises_fails_the_check_with_its_message() -> None:
    ok, failing = Recorder(inline=True), Recorder(inline=True, fail=True)
    expected = re.escape("h1.handler.istio-system: recorder was told to fail")
    with pytest.raises(DispatchError, match=expected):
        await dispatcher(ok, failing).check(BAG)
    assert len(ok.tasks) == 1


async def test_a_single_hanging_handler_is_cut_off_in_the_callers_task() -> None:
    hanging = Recorder(inline=False, hang=True)
    with pytest.raises(DispatchError, match=re.escape("h0.handler.istio-system: timed out")):
        await dispatcher(hanging, timeout=0.2).check(BAG)
    assert hanging.tasks == [asyncio.current_task()]
