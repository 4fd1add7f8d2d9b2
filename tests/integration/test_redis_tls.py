"""redisquota over TLS with client certificates (Debian's redis-server, built with TLS)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from adapters.base import Env, Instance, QuotaArgs
from adapters.redisquota import INFO
from tests.certs import issue, make_ca
from tests.mixer_process import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[dict[str, Path | int]]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server (Debian's, with TLS) is required; ./dev test installs it"
    ca = make_ca("redis-ca")
    server_cert, server_key = issue(ca, "redis", server=True).write(tmp_path, "redis")
    client_cert, client_key = issue(ca, "mixer").write(tmp_path, "client")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    port = free_port()
    log = tmp_path / "redis-tls.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(server_cert), "--tls-key-file", str(server_key),
             "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "yes",
             "--save", "", "--appendonly", "no"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    client = redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca_file),
        ssl_certfile=str(client_cert), ssl_keyfile=str(client_key), socket_timeout=1,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                text = log.read_text(errors="replace")
                raise RuntimeError(f"redis-server with TLS did not start:\n{text}") from None
            time.sleep(0.05)
    client.close()
    yield {"port": port, "ca": ca_file, "cert": client_cert, "key": client_key}
    proc.terminate()
    proc.wait(10)


def handler(url: str) -> object:
    params = INFO.parse_params(
        {
            "quotas": [{"name": "q.instance.ns", "maxAmount": 2, "validDuration": "10s"}],
            "redisServerUrl": url,
            "timeout": "2s",
        }
    )
    env = Env("h.handler.ns", logging.getLogger("test"), CollectorRegistry(), time.monotonic)
    return INFO.build(params, env)


async def test_quotas_over_tls_with_a_client_certificate(tls_redis: dict[str, Path | int]) -> None:
    t = tls_redis
    url = (
        f"rediss://127.0.0.1:{t['port']}?ssl_ca_certs={t['ca']}"
        f"&ssl_certfile={t['cert']}&ssl_keyfile={t['key']}"
    )
    h = handler(url)
    instance = Instance("q.instance.ns", "quota", {"dimensions": {}})
    grants = [(await h.quota(instance, QuotaArgs(1))).granted for _ in range(3)]  # type: ignore[attr-defined]
    await h.close()  # type: ignore[attr-defined]
    assert grants == [1, 1, 0]


async def test_a_client_without_certificate_is_refused(tls_redis: dict[str, Path | int]) -> None:
    t = tls_redis
    h = handler(f"rediss://127.0.0.1:{t['port']}?ssl_ca_certs={t['ca']}")
    instance = Instance("q.instance.ns", "quota", {"dimensions": {}})
    result = await h.quota(instance, QuotaArgs(1))  # type: ignore[attr-defined]
    await h.close()  # type: ignore[attr-defined]
    assert result.granted == 0
    assert result.status_code == 14  # UNAVAILABLE: fail closed
