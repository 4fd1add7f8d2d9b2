"""The admin HTTP port: /metrics, /healthz, /readyz, /version and (when enabled) /debug/*.

It runs in its own thread so that a slow scrape never holds up the gRPC event loop's turn
order more than the GIL forces it to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mixer import __version__

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
        debug: dict[str, Callable[[], Any]] | None = None,
        posts: dict[str, PostRoute] | None = None,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: (200, "text/plain", b"ok\n"),
            "/readyz": lambda: (
                (200, "text/plain", b"ready\n") if ready() else (503, "text/plain", b"not ready\n")
            ),
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

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
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
