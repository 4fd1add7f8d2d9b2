"""The listchecker's provider URL against a real HTTP server on 127.0.0.1.

Refresh 1 s and ttl 2 s keep these tests to seconds; every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters import listchecker
from adapters.base import OK, PERMISSION_DENIED, UNAVAILABLE, CheckResult, Env, Instance

pytestmark = pytest.mark.integration


@dataclass
class ListServer:
    """A provider serving `body` with `status` at /list, counting requests; restartable."""

    body: bytes = b""
    status: int = 200
    hits: int = 0
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/list"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.hits += 1
                    status, body = owner.status, owner.body
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def serve(self, body: bytes, status: int = 200) -> None:
        with self._lock:
            self.body, self.status = body, status


@pytest.fixture
def server() -> Iterator[ListServer]:
    srv = ListServer()
    srv.start()
    yield srv
    srv.stop()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("test.listchecker.provider")
    logger.setLevel(logging.DEBUG)
    handler = Records()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def make_env() -> Env:
    return Env(
        handler_name="lc.handler.ns",
        logger=logging.getLogger("test.listchecker.provider"),
        registry=CollectorRegistry(),
        clock=time.monotonic,
    )


@pytest.fixture
async def built() -> AsyncIterator[Callable[..., listchecker.ListChecker]]:
    handlers: list[listchecker.ListChecker] = []

    def make(**params: Any) -> listchecker.ListChecker:
        h = listchecker.build(listchecker.parse_params(params), make_env())
        handlers.append(h)
        return h

    yield make
    for h in handlers:
        await h.close()


def entry(value: Any) -> Instance:
    return Instance("e.instance.ns", "listentry", {"value": value})


async def eventually(
    probe: Callable[[], Awaitable[CheckResult]],
    accept: Callable[[CheckResult], bool],
    timeout: float,
) -> CheckResult:
    """Poll `probe` every 50 ms until `accept` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if accept(result):
            return result
        assert time.monotonic() < deadline, f"condition not met in {timeout}s; last {result}"
        await asyncio.sleep(0.05)


async def test_list_is_picked_up_survives_outage_expires_and_recovers(
    server: ListServer, built: Callable[..., listchecker.ListChecker]
) -> None:
    server.serve(b"whitelist:\n- 10.0.0.0/8\n- 2001:db8::/32\n")
    h = built(
        providerUrl=server.url,
        refreshInterval="1s",
        ttl="2s",
        entryType="IP_ADDRESSES",
        overrides=["192.168.0.1"],
    )
    # The first check waits for the first fetch.
    assert (await h.check(entry("10.1.2.3"))).status_code == OK
    assert (await h.check(entry("2001:db8::1"))).status_code == OK
    assert (await h.check(entry("192.168.0.1"))).status_code == OK  # overrides join the list
    assert (await h.check(entry("11.0.0.1"))).status_code == PERMISSION_DENIED

    # A changed list is installed on a later refresh.
    server.serve(b"whitelist: [11.0.0.0/8]\n")
    await eventually(lambda: h.check(entry("11.0.0.1")), lambda r: r.status_code == OK, 4)
    assert (await h.check(entry("10.1.2.3"))).status_code == PERMISSION_DENIED

    # The provider goes away: the last good list keeps serving until ttl has passed...
    server.stop()
    gone = time.monotonic()
    assert (await h.check(entry("11.0.0.1"))).status_code == OK
    failed = await eventually(lambda: h.check(entry("11.0.0.1")), lambda r: r.status_code != OK, 5)
    # ...which is 2 s after the last good fetch, itself at most ~1 s before the outage.
    assert time.monotonic() - gone > 0.5
    assert failed.status_code == UNAVAILABLE
    assert "could not fetch list from" in failed.message
    assert failed.valid_duration.total_seconds() <= 1.0

    # The provider comes back on the same port: the list is served again.
    server.start()
    await eventually(lambda: h.check(entry("11.0.0.1")), lambda r: r.status_code == OK, 4)


async def test_bad_content_and_http_errors_keep_the_last_good_list(
    server: ListServer, built: Callable[..., listchecker.ListChecker], records: Records
) -> None:
    server.serve(b"alice\r\nbob\n")
    h = built(providerUrl=server.url, refreshInterval="1s", ttl="10s")
    assert (await h.check(entry("bob"))).status_code == OK

    for body, status in ((b"carol\n", 500), (b"\xff\xfe", 200)):
        server.serve(body, status)
        hits = server.hits
        deadline = time.monotonic() + 4
        while server.hits < hits + 2:  # two more refreshes have run against the bad answer
            assert time.monotonic() < deadline, "provider was not polled"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # let the last of them finish
        assert (await h.check(entry("bob"))).status_code == OK
        assert (await h.check(entry("carol"))).status_code == PERMISSION_DENIED
    assert any("HTTP 500" in m for m in records.messages)
    assert any("not UTF-8" in m for m in records.messages)


async def test_unchanged_content_is_not_rebuilt(
    server: ListServer, built: Callable[..., listchecker.ListChecker], records: Records
) -> None:
    server.serve(b"^svc-[0-9]+$\n")
    h = built(providerUrl=server.url, refreshInterval="1s", ttl="5s", entryType="REGEX")
    assert (await h.check(entry("svc-12"))).status_code == OK
    deadline = time.monotonic() + 5
    while server.hits < 3:
        assert time.monotonic() < deadline, "provider was not polled"
        await asyncio.sleep(0.05)
    installs = [m for m in records.messages if "installed list" in m]
    assert len(installs) == 1
    assert (await h.check(entry("svc-x"))).status_code == PERMISSION_DENIED


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_unreachable_provider_answers_the_configured_failure_status(
    built: Callable[..., listchecker.ListChecker],
) -> None:
    url = f"http://127.0.0.1:{unused_port()}/list"
    h = built(
        providerUrl=url,
        refreshInterval="1s",
        ttl="2s",
        overrides=["a"],
        failureStatus={"code": PERMISSION_DENIED, "message": "policy list unavailable"},
    )
    started = time.monotonic()
    result = await h.check(entry("a"))  # overrides alone are no list, as in Mixer
    assert time.monotonic() - started < 3
    assert result.status_code == PERMISSION_DENIED
    assert result.message == "policy list unavailable"
    default = await built(providerUrl=url, refreshInterval="1s", ttl="2s").check(entry("a"))
    assert default.status_code == UNAVAILABLE
    assert default.message.startswith(f"no valid list: could not fetch list from {url}")


def test_built_without_a_running_loop_starts_fetching_on_first_check(server: ListServer) -> None:
    server.serve(b"alice\n")
    h = listchecker.build(
        listchecker.parse_params({"providerUrl": server.url, "refreshInterval": "1s"}),
        make_env(),
    )
    assert server.hits == 0

    async def run() -> tuple[CheckResult, CheckResult]:
        try:
            return await h.check(entry("alice")), await h.check(entry("bob"))
        finally:
            await h.close()

    allowed, denied = asyncio.run(asyncio.wait_for(run(), 10))
    assert server.hits == 1
    assert allowed.status_code == OK
    assert denied.message == "bob is not whitelisted"
