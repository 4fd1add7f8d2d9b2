"""``POST /debug/explain`` (only with ``--enable-debug``): a Check evaluated on the live runtime,
answered with the explanation of `mixer.runtime.explain`.

The body is JSON: ``{"attributes": {NAME: VALUE}}`` (typed by the config's vocabulary, as
``mixer check --attr`` types them) or ``{"authz": CheckRequest}`` (Envoy's ext_authz request in its
JSON form). No quota is requested, so explaining never charges one. The body is bounded by
``--max-message-bytes`` and the attributes by the same bounds as gRPC requests; each request is
counted in ``mixer_debug_explain_total{result}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from prometheus_client import Counter

from mixer.attributes.bag import Bag
from mixer.attributes.envoy import bag_from_check_request
from mixer.attributes.limits import Limits, check_bag
from mixer.config.values import bag_from_data
from mixer.envoy.service.auth.v3 import external_auth_pb2
from mixer.errors import MixerError
from mixer.runtime.explain import explain_check
from mixer.runtime.runtime import RuntimeHolder


class ExplainRoute:
    """The route; called on the admin server's threads, it runs the check on the event loop."""

    def __init__(
        self,
        holder: RuntimeHolder,
        loop: asyncio.AbstractEventLoop,
        counter: Counter,
        *,
        limits: Limits,
        max_body: int,
        timeout: float,
    ) -> None:
        self._holder = holder
        self._loop = loop
        self._counter = counter
        self._limits = limits
        self._max_body = max_body
        self._timeout = timeout

    def __call__(self, length: int, read: Callable[[int], bytes]) -> tuple[int, Any]:
        if length < 0 or length > self._max_body:
            self._counter.labels("too_large").inc()
            return 413, {"error": f"body over the limit of {self._max_body} bytes"}
        try:
            bag = self._bag(read(length))
        except (ValueError, MixerError, json_format.ParseError) as exc:
            self._counter.labels("bad_request").inc()
            return 400, {"error": str(exc)}
        future = asyncio.run_coroutine_threadsafe(self._explain(bag), self._loop)
        try:
            answer = future.result(self._timeout)
        except Exception as exc:
            future.cancel()
            self._counter.labels("error").inc()
            return 500, {"error": f"{type(exc).__name__}: {exc}"}
        self._counter.labels("ok").inc()
        return 200, answer

    def _bag(self, body: bytes) -> Bag:
        data = json.loads(body)
        if not isinstance(data, dict) or len(data) != 1 or not {"attributes", "authz"} & set(data):
            raise ValueError('expected {"attributes": {...}} or {"authz": CheckRequest}')
        if "authz" in data:
            request = json_format.ParseDict(data["authz"], external_auth_pb2.CheckRequest())
            bag = bag_from_check_request(request)
        else:
            attributes = data["attributes"]
            if not isinstance(attributes, dict):
                raise ValueError("attributes must be an object")
            config = self._holder.current.config
            bag = bag_from_data(attributes, config.vocabulary if config is not None else {})
        check_bag(bag, self._limits, "attributes")
        return bag

    async def _explain(self, bag: Bag) -> dict[str, Any]:
        with self._holder.use() as rt:
            outcome = await rt.dispatcher.check(bag)
            return explain_check(rt, bag, outcome).to_dict()
