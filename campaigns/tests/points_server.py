"""A real HTTP points service for tests: idempotent by key, with switchable failure modes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PointsServer:
    """mode: "ok", "down" (503, nothing granted), "lose_answer" (grants, then answers 500), "reject" (400)."""

    def __init__(self):
        self.mode = "ok"
        self.granted: dict[str, dict] = {}
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                key = self.headers.get("Idempotency-Key", "")
                server.requests.append((key, body))
                if self.path != "/v1/grants" or not key:
                    return self._answer(400, {"error": "bad request"})
                if server.mode == "down":
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

    def points_of(self, customer_id: str) -> int:
        return sum(b["points"] for b in self.granted.values() if b["customer_id"] == customer_id)
