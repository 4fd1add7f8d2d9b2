import datetime
import random

from mixer.config.model import RandomSampling, RateLimitSampling, Sampling
from mixer.expr import compile
from mixer.runtime.sampling import Sampler


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_random_sampling_keeps_about_the_configured_fraction() -> None:
    sampler = Sampler(Sampling(random=RandomSampling(25, 100)), rng=random.Random(7))
    kept = sum(sampler.keep({}) for _ in range(10_000))
    assert 2300 < kept < 2700


def test_random_sampling_keyed_by_an_attribute_keeps_or_drops_all_of_its_entries() -> None:
    program = compile("request.id", vocabulary={"request.id": "STRING"})
    spec = RandomSampling(50, 100, "request.id", program)
    sampler = Sampler(Sampling(random=spec))
    for request_id in (f"req-{i}" for i in range(50)):
        decisions = {sampler.keep({"request.id": request_id}) for _ in range(5)}
        assert len(decisions) == 1
    kept = sum(sampler.keep({"request.id": f"req-{i}"}) for i in range(2000))
    assert 850 < kept < 1150


def test_rate_limit_sampling_keeps_the_first_entries_then_one_in_n() -> None:
    clock = Clock()
    spec = RateLimitSampling(datetime.timedelta(seconds=1), 3, 4)
    sampler = Sampler(Sampling(rate_limit=spec), clock=clock)
    decisions = [sampler.keep({}) for _ in range(11)]
    assert decisions == [True, True, True, False, False, False, True, False, False, False, True]
    clock.now = 1.5  # a new window keeps the first entries again
    assert [sampler.keep({}) for _ in range(4)] == [True, True, True, False]
