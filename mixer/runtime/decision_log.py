"""Decision logs: an opt-in, sampled, structured record of Check and ext_authz decisions.

Each sampled decision becomes one ``logentry`` instance offered to a handler of the config (a
``stdio`` or ``otel`` handler: stdout, a file, OTLP), through that handler's bounded report queue,
so a slow sink drops entries (counted) rather than holding up checks. An entry's variables:
``api``, ``rule`` (that decided, "" when none), ``code``, ``message``, ``latency_ms`` and
``attributes``, the attributes the decision referenced with their values.

Masking: an attribute named in the mask (``request.api_key``) or a map key of one
(``request.headers[authorization]``, keys compared without case) is written as ``<masked>``; a
whole map that was read is written with its masked keys replaced the same way, and any masked
value that appears in the message is replaced too. A masked value never reaches the handler.
"""

from __future__ import annotations

import datetime
import ipaddress
import random
from collections.abc import Callable, Mapping

from prometheus_client import Counter

from adapters.base import Instance
from mixer import codes
from mixer.attributes.bag import Bag
from mixer.attributes.mask import MASKED, Mask
from mixer.runtime.dispatcher import CheckOutcome
from mixer.runtime.reporting import ReportWorker
from mixer.runtime.runtime import Runtime

INSTANCE_NAME = "decisionlog.instance.mixer"
# Masked values shorter than this are not searched for in messages (they would mask words).
_MIN_SEARCHED = 4


class DecisionLog:
    """Samples decisions and offers them, masked, to the named handler's report queue."""

    def __init__(
        self,
        handler: str,
        sample: float,
        mask: Mask,
        counter: Counter,
        *,
        rng: Callable[[], float] = random.random,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"decision log sample rate must be from 0 to 1, got {sample}")
        self.handler = handler
        self.sample = sample
        self.mask = mask
        self._rng = rng
        self._now = now
        self._logged = counter.labels("logged")
        self._sampled_out = counter.labels("sampled_out")
        self._dropped = counter.labels("dropped")
        self._no_handler = counter.labels("no_handler")

    def record(
        self, rt: Runtime, api: str, bag: Bag, outcome: CheckOutcome, seconds: float
    ) -> None:
        """Log one decision (or count why not: sampled out, no such handler, queue full)."""
        if self.sample < 1.0 and self._rng() >= self.sample:
            self._sampled_out.inc()
            return
        worker = _worker(rt, self.handler)
        if worker is None:
            self._no_handler.inc()
            return
        instance = self.entry(api, bag, outcome, seconds)
        if worker.offer([instance]):
            self._dropped.inc()
        else:
            self._logged.inc()

    def entry(self, api: str, bag: Bag, outcome: CheckOutcome, seconds: float) -> Instance:
        """The logentry instance for a decision, masked."""
        attributes: dict[str, str] = {}
        secrets: list[str] = []
        for (name, key), present in sorted(
            outcome.references.reads.items(), key=lambda r: (r[0][0], r[0][1] or "")
        ):
            shown = f"{name}[{key}]" if key is not None else name
            if not present:
                attributes[shown] = "<absent>"
                continue
            value = bag.get(name)
            if key is not None and isinstance(value, Mapping):
                value = value.get(key)
            if self.mask.masks(name, key):
                attributes[shown] = MASKED
                secrets.append(str(value))
            elif isinstance(value, Mapping):
                attributes[shown] = str(self._masked_map(name, value, secrets))
            else:
                attributes[shown] = _text(value)
        message = outcome.message
        for secret in secrets:
            if len(secret) >= _MIN_SEARCHED:
                message = message.replace(secret, MASKED)
        return Instance(
            INSTANCE_NAME,
            "logentry",
            {
                "severity": "Info",
                "timestamp": self._now(),
                "variables": {
                    "api": api,
                    "rule": outcome.decided_by,
                    "code": codes.name(outcome.status_code),
                    "message": message,
                    "latency_ms": round(seconds * 1000.0, 3),
                    "attributes": attributes,
                },
            },
        )

    def _masked_map(
        self, name: str, value: Mapping[str, object], secrets: list[str]
    ) -> dict[str, str]:
        out = {}
        for k, v in value.items():
            if self.mask.masks(name, str(k)):
                secrets.append(str(v))
                out[str(k)] = MASKED
            else:
                out[str(k)] = str(v)
        return out


def _text(value: object) -> str:
    if isinstance(value, bytes) and len(value) in (4, 16):
        return str(ipaddress.ip_address(value))
    return str(value)


def _worker(rt: Runtime, handler: str) -> ReportWorker | None:
    worker = rt.workers.get(handler)
    if worker is None:
        # A short name (``stdio``) finds ``stdio.handler.<namespace>``.
        prefix = handler + ".handler."
        worker = next((w for name, w in rt.workers.items() if name.startswith(prefix)), None)
    return worker
