"""Shared benchmark plumbing: a real gunicorn on PostgreSQL, driven by wrk from another process.

    from bench.harness import Server, wrk, machine
    with Server() as server:
        bare = wrk(server.url("/bench/bare"), method="POST")
        ...

Servers: by default every bench runs on the same engines as `make run` (mercari_ops/embedded.py): an
embedded PostgreSQL 18 and Redis 6.2 under var/bench/, started on first use by the bench process and
stopped when it exits (`bench_servers()`). Each script keeps its own database on that server
(mercari_ops_bench, mops_bench_history, ...) and its own Redis db numbers. BENCH_DATABASE_URL (a full
URL, database name included) and BENCH_REDIS_URL (a server, redis://[:password@]host:port; the
scripts add their db numbers) use servers of your own instead; DATABASE_URL, REDIS_URL and
CELERY_BROKER_URL in the environment are ignored, so a shell set up for the tests or `make run`
never sends a bench to their databases.

The embedded bench PostgreSQL runs with embedded.SERVER_SETTINGS (max_connections 200; durability and
everything else at PostgreSQL's defaults, autovacuum on). A bench opens at most about 70 connections
(gunicorn's 2 workers x 32 threads if every thread holds one, a group-commit connection per worker, the
script's own; the LINE senders 2 x 8), so 200 leaves room for BENCH_GUNICORN_THREADS up to about 60.
A bench killed with SIGKILL leaves its PostgreSQL running: the next bench adopts it (and stops it).

Requires wrk (`apt-get install wrk`).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from mercari_ops import embedded

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
BENCH_DIR = embedded.VAR_DIR / "bench"
DEFAULT_DATABASE = "mercari_ops_bench"
DEFAULT_REDIS_DB, DEFAULT_BROKER_DB = 9, 10


class BenchServers:
    """The PostgreSQL and Redis of this bench process: BENCH_DATABASE_URL / BENCH_REDIS_URL when set,
    otherwise embedded ones under var/bench, each started on first use and stopped when the process exits.

    A lock (var/bench/servers.lock) keeps a second bench process from adopting and then stopping the
    servers of one still running; the usual `flock /tmp/mops-bench.lock` already serialises the benches.
    """

    def __init__(self, folder: Path = BENCH_DIR):
        self.folder = folder
        self._postgres: embedded.EmbeddedPostgres | None = None
        self._postgres_url: str | None = None  # the server, without a database: postgres://user@host:port
        self._redis: embedded.EmbeddedRedis | None = None
        self._redis_url: str | None = None  # redis://:password@host:port, without a db number
        self._lock_file = None
        self._mutex = threading.Lock()

    def database_url(self, name: str) -> str:
        """BENCH_DATABASE_URL as given (database included), else database `name` on the embedded server."""
        given = os.environ.get("BENCH_DATABASE_URL")
        if given:
            return given
        with self._mutex:
            if self._postgres_url is None:
                self._claim()
                self._postgres = embedded.EmbeddedPostgres(self.folder / "pg", embedded.SERVER_SETTINGS)
                # the URL of its own database `mercari_ops`: the server's is everything before the last "/"
                self._postgres_url = self._postgres.start().rsplit("/", 1)[0]
        return f"{self._postgres_url}/{name}"

    def redis_url(self, db: int) -> str:
        """Redis db `db` on BENCH_REDIS_URL's server (a db number given in it is replaced), else on the embedded one."""
        given = os.environ.get("BENCH_REDIS_URL")
        if given:
            return f"{re.sub(r'/[0-9]*$', '', given.rstrip('/'))}/{db}"
        with self._mutex:
            if self._redis_url is None:
                self._claim()
                self._redis = embedded.EmbeddedRedis(self.folder / "redis", persistent=False)
                self._redis_url = self._redis.start()
        return f"{self._redis_url}/{db}"

    def _claim(self) -> None:
        """Before the first embedded server starts: take var/bench's lock, stop the servers at exit."""
        if self._lock_file is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.folder / "servers.lock", "w")  # not inherited by subprocesses
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Another bench is using the servers under {self.folder}: waiting for it "
                  "(run benches under `flock /tmp/mops-bench.lock`)", file=sys.stderr, flush=True)
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        atexit.register(self.stop)
        # SIGTERM (timeout, kill): exit through atexit so the servers stop too, as on Ctrl-C or a normal end
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    def stop(self) -> None:
        """Stop the embedded servers this process started (none when the URLs were given)."""
        if self._redis is not None:
            self._redis.stop()
            self._redis = self._redis_url = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = self._postgres_url = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


_servers: BenchServers | None = None


def bench_servers() -> BenchServers:
    """This process's bench servers (one set per process); see BenchServers."""
    global _servers
    if _servers is None:
        _servers = BenchServers()
    return _servers


def bench_env(database: str = DEFAULT_DATABASE, *, redis_db: int = DEFAULT_REDIS_DB,
              broker_db: int = DEFAULT_BROKER_DB, **extra: str) -> dict[str, str]:
    """The environment of the bench's processes (gunicorn, manage.py, the sandbox): database `database`
    and Redis dbs `redis_db` (cache, limiter) and `broker_db` (Celery) on the bench servers."""
    servers = bench_servers()
    env = dict(os.environ)
    env["DATABASE_URL"] = servers.database_url(database)
    env["REDIS_URL"] = servers.redis_url(redis_db)
    env["CELERY_BROKER_URL"] = servers.redis_url(broker_db)
    env["DEBUG"] = "0"
    env.setdefault("DJANGO_SECRET_KEY", "bench-secret-key-" + "x" * 40)
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    env["SECURE_SSL_REDIRECT"] = "0"
    env.setdefault("PUBSUB_AUTH", "token")  # production defaults to oidc; benches push with the static token
    env.setdefault("PUBSUB_PUSH_TOKEN", "bench-token")
    env.setdefault("BRAZE_WEBHOOK_TOKEN", "bench-braze")
    env.setdefault("LINE_CHANNEL_ACCESS_TOKEN", "bench-line")
    env.setdefault("LINE_CHANNEL_SECRET", "bench-secret")
    env["LOG_LEVEL"] = "WARNING"
    env["BENCH_BARE_VIEW"] = "1"  # POST /bench/bare, the baseline every share is measured against
    env.update(extra)
    return env


def django_in_process(database: str) -> dict[str, str]:
    """This process as a Django process on bench database `database` (created and migrated); returns the env.

    For in-process measurements beside the HTTP ones: the same settings the bench's gunicorn gets.
    """
    env = bench_env(database)
    database_create(env)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "DEBUG", "DJANGO_SECRET_KEY", "ALLOWED_HOSTS",
                                           "SECURE_SSL_REDIRECT", "REDIS_URL", "CELERY_BROKER_URL", "LOG_LEVEL",
                                           "PUBSUB_AUTH")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
    return env


def manage(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env or bench_env(),
                            capture_output=True, text=True)
    if check and result.returncode:
        sys.stderr.write(result.stderr[-4000:])  # what went wrong, not only that it did
        result.check_returncode()
    return result


def database_create(env: dict) -> None:
    """Create the bench database if it does not exist, then migrate it."""
    import psycopg

    # The last "/" ends the server part, for the embedded server's URL too (its socket directory is
    # percent-encoded in the host: postgres://postgres@%2Fpath%2Fto%2Fdir:port/name).
    url, _, query = env["DATABASE_URL"].partition("?")
    server, name = url.rsplit("/", 1)
    with closing(psycopg.connect(f"{server}/postgres" + (f"?{query}" if query else ""), autocommit=True)) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    manage("migrate", "--noinput", env=env)


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn on the bench database: 2 workers (one per core) with threads, as in the Procfile.

    Threads let a process have several requests in flight, which the inbox's group commit needs;
    `threads=1` gives gunicorn's sync workers (one request per process, no keep-alive).
    """

    def __init__(self, workers: int = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2")), env: dict | None = None,
                 migrate: bool = True,
                 threads: int = int(os.environ.get("BENCH_GUNICORN_THREADS", "32"))):
        self.env = env or bench_env()
        # --reuse-port as in the Procfile (each worker its own listening socket, the kernel spreads connections)
        self.extra_args = os.environ.get("BENCH_GUNICORN_ARGS", "--reuse-port").split()
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.migrate = migrate
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Server:
        if self.migrate:
            database_create(self.env)
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "mercari_ops.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", str(self.threads), "--log-level", "warning",
             "--backlog", "2048", *self.extra_args],
            cwd=ROOT, env=self.env,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with closing(socket.create_connection(("127.0.0.1", self.port), timeout=0.2)):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=15)


_LUA_TEMPLATE = """
wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
{headers}
local bodies = {bodies}
local i = 0
request = function()
  i = i + 1
  if #bodies == 0 then return wrk.format() end
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end
"""

_LUA_COUNTER = """
wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
{headers}
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local body = string.format({template}, tid, counter)
  return wrk.format(nil, nil, nil, body)
end
"""


_LUA_PUBSUB = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local sextet = {{}}
for i = 1, 64 do sextet[i - 1] = alphabet:sub(i, i) end
-- Three bytes at a time with arithmetic: the load generator shares the CPU with the server,
-- so its per-request cost must stay small next to the bare view's.
local function b64(data)
  local out, n = {{}}, #data
  for i = 1, n - 2, 3 do
    local a, b, c = data:byte(i, i + 2)
    local v = a * 65536 + b * 256 + c
    out[#out + 1] = sextet[math.floor(v / 262144)] .. sextet[math.floor(v / 4096) % 64]
      .. sextet[math.floor(v / 64) % 64] .. sextet[v % 64]
  end
  local rest = n % 3
  if rest == 1 then
    local v = data:byte(n) * 65536
    out[#out + 1] = sextet[math.floor(v / 262144)] .. sextet[math.floor(v / 4096) % 64] .. '=='
  elseif rest == 2 then
    local a, b = data:byte(n - 1, n)
    local v = a * 65536 + b * 256
    out[#out + 1] = sextet[math.floor(v / 262144)] .. sextet[math.floor(v / 4096) % 64]
      .. sextet[math.floor(v / 64) % 64] .. '='
  end
  return table.concat(out)
end
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local event = string.format({template}, tid, counter, tid, counter)
  local body = '{{"message":{{"data":"' .. b64(event) .. '","messageId":"' .. tid .. '-' .. counter
    .. '"}},"subscription":"projects/p/subscriptions/bench"}}'
  return wrk.format(nil, nil, nil, body)
end
"""


def _lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def wrk(url: str, *, method: str = "GET", headers: dict | None = None, bodies: list[str] | None = None,
        body_template: str | None = None, event_template: str | None = None, duration: int = 10,
        connections: int = 16, threads: int = 1,
        rate: int | None = None) -> dict:
    """Run wrk and return {"rps", "p50_ms", "p99_ms", "requests", "errors", "non2xx"}.

    `body_template` is a Lua format string with two %d (thread id, counter) so every request
    carries a unique body (e.g. a new event_id) without precomputing millions of them.
    `event_template` is the same for an event JSON, base64-wrapped into a Pub/Sub push
    envelope; it may use (thread id, counter) twice, e.g. for event_id and customer_id.
    """
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    header_lines = "\n".join(f'wrk.headers["{k}"] = {_lua_string(v)}' for k, v in (headers or {}).items())
    if event_template is not None:
        script = _LUA_PUBSUB.format(headers=header_lines, template=_lua_string(event_template))
    elif body_template is not None:
        script = _LUA_COUNTER.format(method=method, headers=header_lines, template=_lua_string(body_template))
    else:
        lua_bodies = "{" + ",".join(_lua_string(b) for b in (bodies or [])) + "}"
        script = _LUA_TEMPLATE.format(method=method, headers=header_lines, bodies=lua_bodies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", handle.name,
           url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(handle.name)
    return parse_wrk(out)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> dict:
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+(?:us|ms|s))", out)
        result[f"p{pct}_ms"] = round(_ms(match.group(1)), 3) if match else None
    served = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    result["requests"] = int(served.group(1))
    # wrk's own measure of the run: a sync worker's last slow requests can stretch it past -d
    result["seconds"] = float(served.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[served.group(3)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = sum(map(int, errors.groups())) if errors else 0
    return result


def cpu_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of the machine so far, from /proc/stat's first line."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return ticks[7], sum(ticks)


def rounds_interleaved(runs: dict[str, Callable[[], dict]], *, rounds: int, baseline: str,
                       max_steal: float | None = None) -> dict:
    """Run every wrk measurement of `runs` once per round, the order rotating from round to round.

    This host is a VM whose CPU steal (time the hypervisor gives to other guests) swings between nothing
    and half of the CPU within seconds, and with it every figure: a run in a stolen minute does half the
    requests of the same run a minute later. Short rounds that rotate their order put each side into
    the same mix of seconds; the pooled share (a side's requests per second over the baseline's, both
    over the runs' summed lengths) is the figure, the per-round shares show the spread. Each run's result
    gets "steal" (the share of the machine's CPU time stolen while it ran). With `max_steal`, a round in
    which any run had more stolen than that is kept in the output (accepted: false) but left out of the
    figure and run again, up to 3 x `rounds` rounds in all; the pooled share over every round is reported beside it.
    """
    names = list(runs)
    out = []
    while sum(row["accepted"] for row in out) < rounds and len(out) < 3 * rounds:
        shift = len(out) % len(names)
        row: dict = {"round": len(out) + 1, "order": names[shift:] + names[:shift]}
        for name in row["order"]:
            steal, total = cpu_ticks()
            result = runs[name]()
            steal_after, total_after = cpu_ticks()
            result["steal"] = round((steal_after - steal) / max(total_after - total, 1), 3)
            row[name] = result
        for name in names:
            if name != baseline:
                row[f"{name}_share_of_{baseline}"] = round(row[name]["rps"] / row[baseline]["rps"], 3)
        row["accepted"] = max_steal is None or max(row[name]["steal"] for name in names) <= max_steal
        out.append(row)
    accepted = [row for row in out if row["accepted"]]

    def pooled(name: str, rows: list[dict]) -> float | None:
        # rates pooled over the runs' own lengths (requests / seconds), so a run wrk stretched past -d
        # counts for what it lasted
        def rate(side: str) -> float:
            seconds = sum(row[side]["seconds"] for row in rows)
            return sum(row[side]["requests"] for row in rows) / seconds if seconds else 0.0

        base = rate(baseline)
        return round(rate(name) / base, 3) if base else None

    summary = {}
    for name in names:
        if name == baseline:
            continue
        shares = [row[f"{name}_share_of_{baseline}"] for row in accepted]
        summary[name] = {
            "pooled_share": pooled(name, accepted),
            "median_round_share": statistics.median(shares) if shares else None,
            "rounds_at_or_above_half": sum(share >= 0.5 for share in shares),
            "pooled_share_all_rounds": pooled(name, out),
        }
    steals = [row[name]["steal"] for row in out for name in names]
    return {"rounds": out, "shares": summary, "rounds_accepted": len(accepted), "rounds_run": len(out),
            "max_steal": max_steal,
            "steal": {"min": min(steals), "median": statistics.median(steals), "max": max(steals)}}


def rounds_digest(measured: dict) -> list[str]:
    """One line per round of a `rounds_interleaved` result: accepted or run again, the endpoints' shares of
    the baseline and every run's steal, in the order the runs went, e.g.
    " 3 ok        push=0.612 | steal push 0.021, bare_view 0.034"."""
    lines = []
    for row in measured["rounds"]:
        shares = ", ".join(f"{key.split('_share_of_')[0]}={value:.3f}" for key, value in row.items()
                           if "_share_of_" in key)
        steal = ", ".join(f"{name} {row[name]['steal']:.3f}" for name in row["order"])
        lines.append(f"{row['round']:>2} {'ok' if row['accepted'] else 'run again':<9} {shares} | steal {steal}")
    return lines


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def report(title: str, data: dict) -> None:
    print(f"\n## {title}\n{machine()}")
    print(json.dumps(data, indent=2))
