"""Load generator for the compose stack (standard library only): a mix of allowed, denied and
rate-limited requests through Envoy, so every dashboard has something to show.

    python loadgen.py [--target http://envoy:10001] [--rps 20] [--duration 0] [--seed 1]

Each request is one of (weights in brackets):

* [55] a user (alice, bob or carol) calling /api/items, /api/items/<n> (404 above 100),
  /api/slow or /api/flaky (503 one time in five): allowed, at most 10 a second per user;
* [10] a scraper with ``User-Agent: BadBot/2.1``: denied by mixer's ``blockagents`` rule (403);
* [25] the ``batch-job`` user: limited to 2 requests a second by mixer's rate limit (429);
* [10] the ``oncall`` user: never limited.

Every 10 seconds it prints the count of answers by HTTP status (0 = no answer). With
``--duration`` > 0 it stops after that many seconds; 0 runs until stopped.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

USERS = ("alice", "bob", "carol")
PATHS = ("/api/items", "/api/items/{n}", "/api/slow", "/api/flaky")


@dataclass(frozen=True)
class Request:
    """One request to send."""

    kind: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


def pick(rng: random.Random) -> Request:
    """A request drawn from the mix in the module docstring."""
    roll = rng.randrange(100)
    path = rng.choice(PATHS).format(n=rng.randint(1, 120))
    if roll < 55:
        user = rng.choice(USERS)
        return Request("user", path, {"x-user-id": user, "user-agent": "loadgen/1.0"})
    if roll < 65:
        return Request("scraper", path, {"user-agent": "BadBot/2.1"})
    if roll < 90:
        return Request("batch", "/api/items", {"x-user-id": "batch-job", "user-agent": "batch/1.0"})
    return Request("oncall", path, {"x-user-id": "oncall", "user-agent": "curl/8.5"})


def send(target: str, request: Request, timeout_s: float = 5.0) -> int:
    """GET the request; its HTTP status, or 0 when there was no answer."""
    req = urllib.request.Request(target.rstrip("/") + request.path, headers=request.headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


class Stats:
    """Answers by (kind, status), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, int]] = Counter()

    def add(self, kind: str, status: int) -> None:
        with self._lock:
            self.counts[(kind, status)] += 1

    def by_status(self) -> dict[int, int]:
        with self._lock:
            out: Counter[int] = Counter()
            for (_, status), n in self.counts.items():
                out[status] += n
            return dict(sorted(out.items()))


def _send_and_count(stats: Stats, target: str, request: Request) -> None:
    stats.add(request.kind, send(target, request))


def run(
    target: str, rps: float, duration_s: float, rng: random.Random, report_s: float = 10.0
) -> Stats:
    """Send `rps` requests a second (open loop) for `duration_s` seconds (0: until interrupted)."""
    stats = Stats()
    period = 1.0 / rps
    start = time.monotonic()
    next_report = start + report_s
    sent = 0
    with ThreadPoolExecutor(max_workers=max(4, int(rps))) as pool:
        while duration_s <= 0 or time.monotonic() - start < duration_s:
            request = pick(rng)
            pool.submit(_send_and_count, stats, target, request)
            sent += 1
            now = time.monotonic()
            if now >= next_report:
                print(f"{sent} sent, answers by status: {stats.by_status()}", flush=True)
                next_report = now + report_s
            time.sleep(max(0.0, start + sent * period - time.monotonic()))
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="http://envoy:10001", help="Envoy's egress listener")
    parser.add_argument("--rps", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = forever")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.rps <= 0:
        parser.error("--rps must be > 0")
    try:
        stats = run(args.target, args.rps, args.duration, random.Random(args.seed))
    except KeyboardInterrupt:
        return 0
    print(f"done, answers by status: {stats.by_status()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
