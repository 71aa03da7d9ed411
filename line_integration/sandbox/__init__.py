"""The LINE sandbox: a real HTTP server that behaves like the LINE Messaging API (issue 5, point 1).

    manage.py line_sandbox --port 8089          # make run starts it (Procfile "sandbox")
    with SandboxThread() as sandbox: ...          # tests: a thread on a free port
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import urllib.request

from mercari_ops.common.gcfreeze import loaded_objects_freeze

from .behaviour import Sandbox
from .http import serve

__all__ = ["Sandbox", "SandboxThread", "run"]


def run(*, host: str = "127.0.0.1", port: int = 8089, access_token: str | None = None,
        audience_job_seconds: float = 5.0, ready=None) -> None:
    """Serve until interrupted (one event loop, one thread)."""
    sandbox = Sandbox(access_token=access_token, audience_job_seconds=audience_job_seconds)
    # The sandbox keeps every request's record (hundreds of thousands in a benchmark). Python's cyclic
    # collector walks them all in each full collection: a pause of 100 ms and more during which no
    # request is answered and the sender under test loses its paced slots. Records hold no cycles, so
    # collect young objects far less often; what was loaded at start-up (Django, the specs) is frozen
    # out of every collection.
    loaded_objects_freeze()
    gc.set_threshold(50_000, 50, 1000)
    asyncio.run(serve(sandbox.handle, host, port, ready=ready))


class SandboxThread:
    """The sandbox on a free loopback port in a daemon thread, with a tiny control client."""

    def __init__(self, *, access_token: str | None = None, audience_job_seconds: float = 1.0, clock=time):
        self.sandbox = Sandbox(access_token=access_token, audience_job_seconds=audience_job_seconds, clock=clock)
        self.port: int | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="line-sandbox", daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()

        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        self._loop.run_until_complete(serve(self.sandbox.handle, "127.0.0.1", 0, ready=ready))

    def start(self) -> SandboxThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("LINE sandbox did not start")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, path: str, body: dict | None = None, method: str | None = None) -> dict:
        """GET (or POST with a body) /__sandbox/<path>; returns the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/__sandbox/{path}", data=data,
                                         method=method or ("POST" if data is not None else "GET"))
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        pass  # a daemon thread: it ends with the test process
