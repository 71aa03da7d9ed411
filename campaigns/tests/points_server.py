"""A real HTTP points service for tests: idempotent by key, with switchable failure modes."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PointsServer:
    """mode: "ok", "down" (503, nothing granted), "lose_answer" (grants, then answers 500), "reject" (400).

    `fail_percent` (in mode "ok"): that share of requests answers 503 and grants nothing, chosen by a
    seeded hash of (seed, idempotency key, how many times the key was asked), so the same run refuses
    the same grants whatever the order or threads. `refused` counts the 503s per key.
    """

    def __init__(self, *, fail_percent: float = 0, seed: int = 0):
        self.mode = "ok"
        self.fail_percent = fail_percent
        self.seed = seed
        self.granted: dict[str, dict] = {}
        self.requests: list[tuple[str, dict]] = []
        self.refused: Counter[str] = Counter()
        self.asked: Counter[str] = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                key = self.headers.get("Idempotency-Key", "")
                with server.lock:
                    asked = server.asked[key]
                    server.asked[key] += 1
                    server.requests.append((key, body))
                    if self.path != "/v1/grants" or not key:
                        return self._answer(400, {"error": "bad request"})
                    if server.mode == "down" or (server.mode == "ok" and server.fails(key, asked)):
                        server.refused[key] += 1
                        return self._answer(503, {"error": "maintenance"})
                    if server.mode == "reject":
                        return self._answer(400, {"error": "customer closed"})
                    if key in server.granted:
                        return self._answer(409, {"error": "already granted"})
                    server.granted[key] = body
                if server.mode == "lose_answer":
                    return self._answer(500, {"error": "oops after commit"})
                return self._answer(201, {"grant_id": len(server.granted)})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PointsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fails(self, key: str, asked: int) -> bool:
        if not self.fail_percent:
            return False
        digest = hashlib.sha256(f"{self.seed}:{key}:{asked}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % 10_000 < self.fail_percent * 100

    def points_of(self, customer_id: str) -> int:
        return sum(b["points"] for b in self.granted.values() if b["customer_id"] == customer_id)
