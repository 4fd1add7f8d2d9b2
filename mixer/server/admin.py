"""The admin HTTP port: /metrics, /healthz, /readyz, /version and (when enabled) /debug/*.

It runs in its own thread so that a slow scrape never holds up the gRPC event loop's turn
order more than the GIL forces it to.

Bounds (a client that opens connections and sends nothing must not hold threads): at most
`max_connections` connections are served at once, one more is closed at once; a connection
that sends nothing for `timeout` seconds is closed. Each is counted through `on_limit` (the
flag's name) and a client that goes away is one log line, not a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mixer import __version__

logger = logging.getLogger(__name__)

# What a client that goes away or stalls raises in the serving thread.
_CLIENT_GONE = (ConnectionError, TimeoutError)


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_connections: int,
        on_limit: Callable[[str], None],
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._on_limit = on_limit

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._on_limit("admin_max_connections")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, _CLIENT_GONE):
            if isinstance(error, TimeoutError):
                self._on_limit("admin_timeout")
            logger.info(
                "admin client %s: %s",
                "timed out" if isinstance(error, TimeoutError) else "disconnected",
                type(error).__name__,
                extra={"peer": str(client_address[0]) if client_address else ""},
            )
            return
        logger.error("admin request failed: %s: %s", type(error).__name__, error)


PostRoute = Callable[[int, Callable[[int], bytes]], tuple[int, Any]]
"""A POST route: (Content-Length, read(n)) -> (HTTP status, JSON-ready answer). The route reads
the body itself, so that it can refuse one over its limit without reading it."""


class AdminServer:
    """A small threaded HTTP server reading state through callables (no shared mutation)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        *,
        ready: Callable[[], bool],
        live: Callable[[], tuple[bool, str]] = lambda: (True, ""),
        debug: dict[str, Callable[[], Any]] | None = None,
        timeout: float = 10.0,
        max_connections: int = 32,
        on_limit: Callable[[str], None] = lambda flag: None,
        posts: dict[str, PostRoute] | None = None,
    ) -> None:
        """`live()`: whether the serving path works, and a line saying why (/healthz);
        `ready()`: whether a config is loaded and serving (/readyz needs both)."""

        def healthz() -> tuple[int, str, bytes]:
            ok, why = live()
            return (
                (200 if ok else 503),
                "text/plain",
                f"{'ok' if ok else 'not ok'}\n{why}\n".encode(),
            )

        def readyz() -> tuple[int, str, bytes]:
            ok, why = live()
            if not ready():
                ok, why = False, "no config serving"
            return (
                (200 if ok else 503),
                "text/plain",
                f"{'ready' if ok else 'not ready'}\n{why}\n".encode(),
            )

        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": healthz,
            "/readyz": readyz,
            "/version": lambda: (
                200,
                "application/json",
                json.dumps({"version": __version__}).encode(),
            ),
        }
        for path, fn in (debug or {}).items():
            routes[path] = _json_route(fn)

        post_routes = dict(posts or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    status, ctype, body = 404, "text/plain", b"not found\n"
                else:
                    status, ctype, body = route()
                self._answer(status, ctype, body)

            def do_POST(self) -> None:
                post = post_routes.get(self.path.split("?", 1)[0])
                if post is None:
                    self._answer(404, "text/plain", b"not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._answer(411, "text/plain", b"Content-Length required\n")
                    return
                status, data = post(length, self.rfile.read)
                body = json.dumps(data, indent=2, default=str).encode()
                self._answer(status, "application/json", body)

            def _answer(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

            def log_error(self, format: str, *args: Any) -> None:
                # The base class closes a connection whose request stalls past `timeout` and
                # says so here; other errors (bad request lines) are the client's and unlogged.
                if format.startswith("Request timed out"):
                    on_limit("admin_timeout")
                    logger.info("admin client timed out", extra={"peer": self.client_address[0]})

        Handler.timeout = timeout  # set on each connection's socket by StreamRequestHandler
        self._server = _BoundedServer((host, port), Handler, max_connections, on_limit)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="admin-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _json_route(fn: Callable[[], Any]) -> Callable[[], tuple[int, str, bytes]]:
    def route() -> tuple[int, str, bytes]:
        return 200, "application/json", json.dumps(fn(), indent=2, default=str).encode()

    return route
