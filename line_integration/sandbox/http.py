"""A minimal HTTP/1.1 keep-alive server on asyncio (stdlib only), fast enough to outrun our sender.

Only what the LINE clients send: Content-Length bodies, keep-alive, one request at a
time per connection (requests never pipelines). A handler returns a `Reply`; its
`delay` (latency or timeout injection) holds the response back without blocking
other connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
MAX_BODY = 2 * 1024 * 1024
MAX_HEADER = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encode(self, keep_alive: bool) -> bytes:
        if self.body is None:
            payload = b""
        elif isinstance(self.body, bytes):
            payload = self.body
        else:
            payload = json.dumps(self.body, separators=(",", ":")).encode()
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}",
                 f"Content-Length: {len(payload)}",
                 "Content-Type: application/json",
                 "Connection: keep-alive" if keep_alive else "Connection: close"]
        lines.extend(f"{k}: {v}" for k, v in self.headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler):
        self.handler = handler
        self.buffer = bytearray()
        self.transport = None
        self.waiting = False  # a delayed reply is pending: parse nothing more until it is written

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        self._process()

    def _process(self) -> None:
        while not self.waiting and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    self._finish(Reply(413, {"message": "headers too large"}), keep_alive=False)
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            request_line, _, header_block = head.partition("\r\n")
            try:
                method, target, version = request_line.split(" ", 2)
            except ValueError:
                self._finish(Reply(400, {"message": "bad request line"}), keep_alive=False)
                return
            headers = {}
            for line in header_block.split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._finish(Reply(411, {"message": "Content-Length required"}), keep_alive=False)
                return
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._finish(Reply(413, {"message": "Request Entity Too Large"}), keep_alive=False)
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            path, _, query = target.partition("?")
            keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
            try:
                reply = self.handler(Request(method, path, query, headers, body))
            except Exception:  # the sandbox must never die on one request
                logger.exception("sandbox handler failed")
                reply = Reply(500, {"message": "sandbox handler error"})
            if reply.delay > 0:
                self.waiting = True
                asyncio.get_running_loop().call_later(reply.delay, self._delayed, reply, keep_alive)
                return
            self._finish(reply, keep_alive)

    def _delayed(self, reply: Reply, keep_alive: bool) -> None:
        self.waiting = False
        self._finish(reply, keep_alive)
        self._process()

    def _finish(self, reply: Reply, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(reply.encode(keep_alive))
        if not keep_alive:
            self.transport.close()
            self.transport = None


async def serve(handler, host: str, port: int, ready=None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(handler), host, port, reuse_address=True, backlog=1024)
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()
