"""Benchmark of the listchecker adapter's decisions.

Run from the repository root: ``.venv/bin/python -m bench.listchecker_bench``.

1. A 10,000-entry CIDR list (IPv4 and IPv6): µs per ``check`` through the handler, for values as
   raw bytes (as the attribute bag holds IPs) and as text, against a naive linear scan with
   `ipaddress` in the same run. Target: well under 50 µs per check.
2. The pathological regex ``(a+)+$`` against ``"a" * n + "b"``: RE2 through the adapter, against
   Python's backtracking `re` on small n (stopped once one search takes over a second).

Every loop is bounded in count. The exit status is 1 if the CIDR target is missed or the adapter
disagrees with the linear scan.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
import sys
import time
from typing import Any, Final

from prometheus_client import CollectorRegistry

from adapters import listchecker
from adapters.base import OK, Env, Instance

TARGET_US: Final = 50.0
LIST_SIZE: Final = 10_000
CHECKS: Final = 50_000
NAIVE_CHECKS: Final = 300
PATHOLOGICAL: Final = "(a+)+$"
RE_SIZES: Final = (14, 16, 18, 20, 22, 24, 26)
RE_BUDGET_S: Final = 1.0
RE2_SIZES: Final = (30_000, 1_000_000)

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def make_env() -> Env:
    return Env(
        handler_name="bench.handler.ns",
        logger=logging.getLogger("bench.listchecker"),
        registry=CollectorRegistry(),
        clock=time.monotonic,
    )


def random_networks(rng: random.Random, count: int) -> list[_Network]:
    """Mostly IPv4 /16../32 with some IPv6 /48../128, as an IP reputation list might hold."""
    networks: list[_Network] = []
    for _ in range(count):
        if rng.random() < 0.85:
            networks.append(ipaddress.ip_network((rng.getrandbits(32), rng.randint(16, 32)), False))
        else:
            number = rng.getrandbits(128) | 1 << 127
            networks.append(ipaddress.ip_network((number, rng.randint(48, 128)), False))
    return networks


def random_probes(rng: random.Random, networks: list[_Network], count: int) -> list[_Address]:
    """Half inside a listed network, half random IPv4 addresses (mostly misses)."""
    out: list[_Address] = []
    for i in range(count):
        if i % 2:
            net = rng.choice(networks)
            out.append(net.network_address + rng.randrange(net.num_addresses))
        else:
            out.append(ipaddress.IPv4Address(rng.getrandbits(32)))
    return out


async def run_checks(
    handler: listchecker.ListChecker, values: list[Any]
) -> tuple[float, list[bool]]:
    """Seconds per check over `values`, and which were allowed."""
    instances = [Instance("e.instance.ns", "listentry", {"value": v}) for v in values]
    allowed: list[bool] = []
    start = time.perf_counter()
    for instance in instances:
        allowed.append((await handler.check(instance)).status_code == OK)
    return (time.perf_counter() - start) / len(instances), allowed


async def cidr_bench() -> bool:
    rng = random.Random(20240501)
    networks = random_networks(rng, LIST_SIZE)
    started = time.perf_counter()
    params = listchecker.parse_params(
        {"entryType": "IP_ADDRESSES", "overrides": [str(n) for n in networks]}
    )
    handler = listchecker.build(params, make_env())
    build_ms = (time.perf_counter() - started) * 1e3

    probes = random_probes(rng, networks, CHECKS)
    bytes_s, allowed = await run_checks(handler, [a.packed for a in probes])
    text_s, _ = await run_checks(handler, [str(a) for a in probes])
    await handler.close()

    # Same-run baseline: a linear scan of the list with ipaddress.
    naive = probes[:NAIVE_CHECKS]
    start = time.perf_counter()
    expected = [any(a.version == n.version and a in n for n in networks) for a in naive]
    naive_s = (time.perf_counter() - start) / len(naive)
    agrees = expected == allowed[:NAIVE_CHECKS]

    v6 = sum(n.version == 6 for n in networks)
    print(f"CIDR list: {LIST_SIZE} entries ({v6} IPv6), parsed and built in {build_ms:.0f} ms")
    print(
        f"  adapter check, bytes value: {bytes_s * 1e6:9.2f} µs/check  ({CHECKS} checks, "
        f"{sum(allowed)} allowed)"
    )
    print(f"  adapter check, text value:  {text_s * 1e6:9.2f} µs/check  ({CHECKS} checks)")
    print(f"  naive linear scan:          {naive_s * 1e6:9.2f} µs/check  ({NAIVE_CHECKS} checks)")
    print(f"  naive / adapter (bytes):    {naive_s / bytes_s:9.0f}x")
    print(f"  adapter agrees with the linear scan on {NAIVE_CHECKS} probes: {agrees}")
    ok = max(bytes_s, text_s) * 1e6 < TARGET_US and agrees
    print(f"  target < {TARGET_US:.0f} µs/check: {'PASS' if ok else 'FAIL'}")
    return ok


async def regex_bench() -> None:
    params = listchecker.parse_params({"entryType": "REGEX", "overrides": [PATHOLOGICAL]})
    handler = listchecker.build(params, make_env())
    print(f"\nRegex {PATHOLOGICAL!r} against 'a' * n + 'b' (no match):")
    backtracking = re.compile(PATHOLOGICAL)
    for n in RE_SIZES:
        value = "a" * n + "b"
        start = time.perf_counter()
        await handler.check(Instance("e.instance.ns", "listentry", {"value": value}))
        re2_s = time.perf_counter() - start
        start = time.perf_counter()
        assert backtracking.search(value) is None
        re_s = time.perf_counter() - start
        print(
            f"  n={n:>9,}: adapter (RE2) {re2_s * 1e6:10.1f} µs   Python re {re_s * 1e3:10.1f} ms"
        )
        if re_s > RE_BUDGET_S:
            print(f"  (Python re stopped: over {RE_BUDGET_S:.0f} s, doubling per extra a)")
            break
    for n in RE2_SIZES:
        value = "a" * n + "b"
        start = time.perf_counter()
        result = await handler.check(Instance("e.instance.ns", "listentry", {"value": value}))
        re2_s = time.perf_counter() - start
        assert result.status_code != OK
        print(f"  n={n:>9,}: adapter (RE2) {re2_s * 1e3:10.2f} ms")
    await handler.close()


async def main() -> int:
    ok = await cidr_bench()
    await regex_bench()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
