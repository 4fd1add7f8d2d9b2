"""A test plugin adapter, loaded through the `mixer.adapters` entry point: slow or failing.

Params: ``delay`` (seconds each call sleeps), ``block`` (seconds each check holds the event
loop, as a request that computes for that long would), ``fail`` (raise after sleeping),
``recordTo`` (a file that receives one line per reported instance).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.base import AdapterInfo, CheckResult, Env, Instance, ParamError


@dataclass(frozen=True)
class Params:
    delay: float = 0.0
    fail: bool = False
    record_to: str = ""
    block: float = 0.0


def parse_params(raw: Mapping[str, Any]) -> Params:
    unknown = set(raw) - {"delay", "block", "fail", "recordTo"}
    if unknown:
        raise ParamError(sorted(unknown)[0], "unknown field")
    delay = raw.get("delay", 0.0)
    if not isinstance(delay, int | float) or delay < 0:
        raise ParamError("delay", "must be a number of seconds >= 0")
    block = raw.get("block", 0.0)
    if not isinstance(block, int | float) or block < 0:
        raise ParamError("block", "must be a number of seconds >= 0")
    return Params(
        float(delay), bool(raw.get("fail", False)), str(raw.get("recordTo", "")), float(block)
    )


class Sleepy:
    def __init__(self, params: Params) -> None:
        self.params = params

    async def check(self, instance: Instance) -> CheckResult:
        await asyncio.sleep(self.params.delay)
        time.sleep(self.params.block)  # on purpose: holds the event loop
        if self.params.fail:
            raise RuntimeError("sleepy was told to fail")
        return CheckResult()

    async def report(self, instances: Sequence[Instance]) -> None:
        await asyncio.sleep(self.params.delay)
        if self.params.fail:
            raise RuntimeError("sleepy was told to fail")
        if self.params.record_to:
            with open(self.params.record_to, "a") as out:
                for instance in instances:
                    out.write(instance.name + "\n")

    async def close(self) -> None:
        return None


def build(params: Params, env: Env) -> Sleepy:
    return Sleepy(params)


INFO = AdapterInfo(
    name="sleepy",
    description="test adapter: sleeps, fails or records on demand",
    templates=frozenset({"checknothing", "metric", "logentry"}),
    parse_params=parse_params,
    build=build,
)
