"""The quota benchmark runs (tiny and bounded) and its commands-per-check figures hold."""

from __future__ import annotations

import pytest

from bench import quota_bench, redis_client
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


async def test_bench_counts_at_most_one_command_per_check(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = quota_bench.parse_args(
        ["--checks", "200", "--seconds", "0.5", "--repeats", "1", "--concurrency", "16"]
    )
    await quota_bench.run(args, redis_server.url)
    out = capsys.readouterr().out
    rows = out.split("== Redis commands per check")[1].split("== Throughput")[0].splitlines()[2:]
    sent = {(int(r.split()[0]), int(r.split()[1])): float(r.split()[3]) for r in rows if r.strip()}
    assert set(sent) == {(n, c) for n in (1, 3, 10) for c in (1, 16)}
    assert all(value <= 1 for value in sent.values()), sent
    assert sent[(1, 1)] == 1.0  # sequential: exactly one EVALSHA per check
    assert "commands sent per check <= 1: yes" in out


async def test_redis_client_bench_compares_both_clients(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await redis_client._run(redis_server, commands=100, seconds=0.5, repeats=1)
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["one", "32"]
    for row in rows:
        old, new, ratio = row.split()[-3:]
        assert float(old) > 0 and float(new) > 0
        assert ratio.endswith("x") and float(ratio[:-1]) > 0
