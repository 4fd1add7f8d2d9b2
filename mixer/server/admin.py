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

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    status, ctype, body = 404, "text/plain", b"not found\n"
                else:
                    status, ctype, body = route()
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
