"""Report sampling of a rule, as Mixer's `Sampling`: random, and rate-limit based.

Random sampling keeps ``numerator / denominator`` of the entries (independently per entry, or
keyed by an attribute expression's value so that all reports of one trace or request are kept
or dropped together). Rate-limit sampling keeps every entry up to ``max_unsampled_entries`` per
``sampling_duration`` window, then one in ``sampling_rate``.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Mapping

from mixer.config.model import Sampling


class Sampler:
    """Decides, per report entry, whether a rule's instances are built and sent."""

    def __init__(
        self,
        spec: Sampling,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._random = spec.random
        self._limit = spec.rate_limit
        self._clock = clock
        self._rng = rng or random.Random()
        self._window_start = clock()
        self._seen = 0

    def programs(self) -> tuple[object, ...]:
        """The expressions `keep` may evaluate (the random sampling key)."""
        program = self._random.program if self._random is not None else None
        return (program,) if program is not None else ()

    def keep(self, activation: Mapping[str, object]) -> bool:
        """True when this entry is sampled in."""
        if self._random is not None and not self._keep_random(activation):
            return False
        return self._limit is None or self._keep_rate_limited()

    def _keep_random(self, activation: Mapping[str, object]) -> bool:
        spec = self._random
        assert spec is not None
        if spec.numerator >= spec.denominator:
            return True
        if spec.program is not None and not spec.use_independent_randomness:
            try:
                value = spec.program.evaluate(activation)
            except Exception:
                value = None
            if value is not None:
                bucket = zlib.crc32(str(value).encode()) % spec.denominator
                return bucket < spec.numerator
        return self._rng.randrange(spec.denominator) < spec.numerator

    def _keep_rate_limited(self) -> bool:
        spec = self._limit
        assert spec is not None
        now = self._clock()
        if now - self._window_start >= spec.sampling_duration.total_seconds():
            self._window_start = now
            self._seen = 0
        self._seen += 1
        if self._seen <= spec.max_unsampled_entries:
            return True
        rate = max(1, spec.sampling_rate)
        return (self._seen - spec.max_unsampled_entries) % rate == 0
