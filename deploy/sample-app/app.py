"""A tiny HTTP service for the compose stack, behind Envoy (standard library only).

    python app.py [--port 8080]

Routes (JSON answers):

* ``GET /healthz`` -- ``{"status": "ok"}``
* ``GET /api/items`` -- a small list, fast
* ``GET /api/items/<id>`` -- one item, or 404 for ids above 100
* ``GET /api/slow`` -- the same after 50-300 ms, for the latency panels
* ``GET /api/flaky`` -- 503 for one request in five, for the success-rate panels

Every answer echoes the ``x-mixer-policy`` header mixer's ``tagallowed`` rule adds upstream
(rules/policy.yaml), so a caller can see the policy ran.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ITEMS = [{"id": i, "name": f"item-{i}"} for i in range(1, 6)]
_counter = itertools.count()
_lock = threading.Lock()


def route(path: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for a GET of `path`."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if path == "/healthz":
        return 200, {"status": "ok"}
    if path == "/api/items":
        return 200, {"items": ITEMS}
    if path.startswith("/api/items/"):
        item = path.removeprefix("/api/items/")
        if item.isdigit() and 0 < int(item) <= 100:
            return 200, {"id": int(item), "name": f"item-{item}"}
        return 404, {"error": f"no item {item}"}
    if path == "/api/slow":
        time.sleep(random.uniform(0.05, 0.3))
        return 200, {"items": ITEMS}
    if path == "/api/flaky":
        with _lock:
            n = next(_counter)
        if n % 5 == 4:
            return 503, {"error": "flaky backend"}
        return 200, {"items": ITEMS}
    return 404, {"error": f"no route {path}"}


class Handler(BaseHTTPRequestHandler):
    """Serves `route` as JSON."""

    server_version = "sample-app/1.0"

    def do_GET(self) -> None:
        status, body = route(self.path)
        policy = self.headers.get("x-mixer-policy")
        if policy:
            body = {**body, "x-mixer-policy": policy}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return  # Envoy's access log (through mixer) is the request log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"sample-app listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
