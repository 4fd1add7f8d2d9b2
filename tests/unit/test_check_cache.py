from mixer.attributes.bag import Bag, StringMap
from mixer.attributes.tracking import TrackingBag
from mixer.runtime.check_cache import CheckCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def remember(cache: CheckCache, bag: Bag, value: str, seconds: float = 10, uses: int = 5) -> None:
    tracking = TrackingBag(bag)
    # what a rule `destination.labels["app"] == "x" && source.user | "none"` would read
    labels = tracking.get("destination.labels")
    assert labels is not None
    labels.get("app")  # type: ignore[attr-defined]
    tracking.get("source.user")
    cache.put(tracking.refs, bag, value, seconds, uses)


def bag(**extra: object) -> Bag:
    base: dict[str, object] = {
        "destination.labels": StringMap({"app": "ratings", "version": "v1"}),
        "request.path": "/a",
    }
    base.update(extra)
    return Bag(base)  # type: ignore[arg-type]


def test_identical_request_hits() -> None:
    cache = CheckCache(clock=Clock())
    remember(cache, bag(), "deny")
    assert cache.get(bag()) == "deny"


def test_difference_in_an_attribute_not_read_still_hits() -> None:
    cache = CheckCache(clock=Clock())
    remember(cache, bag(), "deny")
    assert cache.get(bag(**{"request.path": "/other"})) == "deny"
    other_version = bag(**{"destination.labels": StringMap({"app": "ratings", "version": "v9"})})
    assert cache.get(other_version) == "deny"


def test_difference_in_a_read_attribute_misses() -> None:
    cache = CheckCache(clock=Clock())
    remember(cache, bag(), "deny")
    assert cache.get(bag(**{"destination.labels": StringMap({"app": "reviews"})})) is None


def test_an_absent_read_that_becomes_present_misses() -> None:
    cache = CheckCache(clock=Clock())
    remember(cache, bag(), "deny")
    assert cache.get(bag(**{"source.user": "bob"})) is None


def test_entries_expire_by_time_and_by_use_count() -> None:
    clock = Clock()
    cache = CheckCache(clock=clock)
    remember(cache, bag(), "deny", seconds=10, uses=2)
    assert cache.get(bag()) == "deny"
    assert cache.get(bag()) == "deny"
    assert cache.get(bag()) is None  # third use
    remember(cache, bag(), "deny", seconds=10, uses=100)
    clock.now += 11
    assert cache.get(bag()) is None


def test_cache_is_bounded_lru() -> None:
    cache = CheckCache(max_entries=2, clock=Clock())
    for app in ("a", "b", "c"):
        remember(cache, bag(**{"destination.labels": StringMap({"app": app})}), app)
    assert len(cache) == 2
    assert cache.get(bag(**{"destination.labels": StringMap({"app": "a"})})) is None
    assert cache.get(bag(**{"destination.labels": StringMap({"app": "c"})})) == "c"


def test_zero_validity_is_not_cached() -> None:
    cache = CheckCache(clock=Clock())
    remember(cache, bag(), "deny", seconds=0)
    assert cache.get(bag()) is None


def test_equal_values_of_different_types_miss() -> None:
    cache = CheckCache(clock=Clock())
    remember(cache, bag(**{"source.user": 1}), "deny")
    assert cache.get(bag(**{"source.user": 1})) == "deny"
    assert cache.get(bag(**{"source.user": True})) is None
    assert cache.get(bag(**{"source.user": 1.0})) is None


def test_rare_hits_make_most_checks_skip_the_cache_until_one_hits_again() -> None:
    cache = CheckCache(clock=Clock())
    remember(cache, bag(), "deny", uses=1_000_000)

    def other(i: int) -> Bag:
        return bag(**{"destination.labels": StringMap({"app": f"a{i}"})})

    # A whole window of lookups that miss: from then on, 1 check in 64 uses the cache.
    for i in range(1024):
        assert cache.in_use()
        assert cache.get(other(i)) is None
    assert [cache.in_use() for _ in range(256)].count(True) == 4

    # The next check that uses the cache and hits puts every check back on it.
    while not cache.in_use():
        pass
    assert cache.get(bag()) == "deny"
    assert all(cache.in_use() for _ in range(100))

    # 1 hit in 32 lookups is enough to stay there.
    for i in range(1024):
        assert cache.in_use()
        hit = i % 32 == 0
        assert (cache.get(bag() if hit else other(i)) == "deny") == hit
    assert all(cache.in_use() for _ in range(100))
