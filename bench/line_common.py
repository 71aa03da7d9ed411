"""Shared plumbing for the LINE benchmarks: bench env, the sandbox as a subprocess, SQL seeding.

The LINE benches use database mops_bench_line and Redis db 5 (cache, limiter and broker) on the bench
servers: the embedded ones under var/bench by default, BENCH_DATABASE_URL / BENCH_REDIS_URL to override
(see bench.harness).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from contextlib import closing

from bench.harness import ROOT, VENV_BIN, bench_env, database_create, free_port

DATABASE = "mops_bench_line"
REDIS_DB = 5


def line_env(**extra: str) -> dict:
    return bench_env(DATABASE, redis_db=REDIS_DB, broker_db=REDIS_DB, **extra)


class Sandbox:
    """manage.py line_sandbox on a free port (any bearer token accepted)."""

    def __init__(self, env: dict, job_seconds: float = 5.0):
        self.env, self.port, self.job_seconds = env, free_port(), job_seconds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/__sandbox/{path}", data=data,
                                         method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def __enter__(self) -> Sandbox:
        self.proc = subprocess.Popen([str(VENV_BIN / "python"), "manage.py", "line_sandbox", "--port", str(self.port),
                                      "--any-token", "--audience-job-seconds", str(self.job_seconds)],
                                     cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with closing(socket.create_connection(("127.0.0.1", self.port), timeout=0.2)):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sandbox did not start")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def sql(env: dict, statements: list[str]) -> None:
    import psycopg

    with closing(psycopg.connect(env["DATABASE_URL"], autocommit=True)) as conn:
        for statement in statements:
            conn.execute(statement)


def prepare(env: dict) -> None:
    database_create(env)
    sql(env, ['TRUNCATE line_integration_outboundmessage, line_integration_linerequest, line_integration_lineuser, '
              '"LineLinkageUsers", line_integration_audiencejob, line_integration_audiencegroup, '
              'line_integration_messagetemplate, line_integration_webhookevent RESTART IDENTITY CASCADE'])
    sql(env, ["""INSERT INTO line_integration_messagetemplate
                     (name, description, messages, enrich_path, active, updated_at)
                 VALUES ('saved_search_new_items', '', '[{"type": "text", "text": "New items for {search_id}"}]',
                         '', true, now())"""])
    reset_limiter(env)


def reset_limiter(env: dict) -> None:
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    for key in client.scan_iter("mops:*line*"):
        client.delete(key)


def link_users(env: dict, prefix: str, count: int) -> None:
    """Customers <prefix><n> (n = 1..count) linked to LINE users U<32 hex of n>."""
    sql(env, [f"""INSERT INTO line_integration_lineuser (line_user_id, customer_id, status, rich_menu_id, linked_at,
                                                         created_at, updated_at)
                  SELECT 'U' || lpad(to_hex(n), 32, '0'), '{prefix}' || n, 'linked', '', now(), now(), now()
                  FROM generate_series(1, {count}) AS n"""])


def manage_py(env: dict, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, **popen)
