"""The embedded stack: real PostgreSQL and Redis from the wheels, the process order, and a clean stop."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from mercari_ops.embedded import (
    URL_VARIABLES,
    EmbeddedPostgres,
    EmbeddedRedis,
    StackError,
    _free_port,
    procfile_read,
    stack,
)

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose
        return stat.read().split(") ", 1)[1][0] != "Z"


def _settings_subprocess(env_overrides: dict, tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    env.update({"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "mercari_ops.settings", **env_overrides})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_settings_without_the_urls_name_them_and_the_command_that_starts_the_servers(tmp_path):
    done = _settings_subprocess({}, tmp_path, "import django; django.setup()")

    assert done.returncode != 0
    assert "DATABASE_URL, REDIS_URL, CELERY_BROKER_URL not set" in done.stderr
    assert "make run" in done.stderr


def test_settings_read_a_running_stack_file_and_decode_a_socket_directory(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stack.env").write_text(
        "DATABASE_URL=postgres://postgres@%2Fsome%2Fsocket%20dir:5433/mercari_ops\n"
        "REDIS_URL=redis://127.0.0.1:1/1\nCELERY_BROKER_URL=redis://127.0.0.1:1/2\n")

    done = _settings_subprocess({}, tmp_path, "from django.conf import settings as s; d = s.DATABASES['default'];"
                                              "print(d['HOST'], d['PORT'], d['NAME'], s.REDIS_URL)")

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/some/socket", "dir", "5433", "mercari_ops", "redis://127.0.0.1:1/1"]


def test_settings_refuse_another_database_engine(tmp_path):
    done = _settings_subprocess({"DATABASE_URL": "mysql://user@127.0.0.1:3306/mercari_ops", "REDIS_URL": "redis://x/1",
                                 "CELERY_BROKER_URL": "redis://x/2"}, tmp_path, "import django; django.setup()")

    assert done.returncode != 0
    assert "must be a PostgreSQL URL" in done.stderr


def test_stack_uses_the_given_urls_and_starts_nothing(tmp_path, monkeypatch):
    given = {name: f"redis://given/{index}" for index, name in enumerate(URL_VARIABLES)}
    for name, value in given.items():
        monkeypatch.setenv(name, value)

    with stack(tmp_path, persistent=False) as urls:
        assert urls == given
    assert list(tmp_path.iterdir()) == []


def test_stack_refuses_some_urls_without_the_others(tmp_path, monkeypatch):
    for name in URL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://x/y")

    with pytest.raises(StackError, match="all of DATABASE_URL, REDIS_URL, CELERY_BROKER_URL or none"):
        with stack(tmp_path, persistent=False):
            pass


@pytest.fixture
def pg_home():
    """A folder for a throwaway cluster outside pytest's tmp_path: pytest makes /tmp/pytest-of-<user> 0700
    again whenever a session starts, and the server's own system user must traverse the folder's parents."""
    home = Path(tempfile.mkdtemp(prefix="mops-embedded-test-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_embedded_postgres_applies_its_settings_creates_the_database_and_stops(pg_home):
    server = EmbeddedPostgres(pg_home / "pg", {"max_connections": "37", "synchronous_commit": "off"})
    try:
        url = server.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW max_connections").fetchone()[0] == "37"  # took a restart
            assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"  # took a reload
            assert conn.execute("SELECT current_database()").fetchone()[0] == "mercari_ops"
        pid = int((pg_home / "pg" / "postmaster.pid").read_text().split()[0])
    finally:
        server.stop()

    assert not (pg_home / "pg" / "postmaster.pid").exists()
    assert not _alive(pid)


def test_embedded_postgres_shared_by_two_launchers_stops_with_the_last_one(pg_home):
    server = EmbeddedPostgres(pg_home / "pg", {})
    url = server.start()
    try:
        # given a second launcher (another `make test`) that adopts the running cluster and finishes first
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; from mercari_ops.embedded import "
             "EmbeddedPostgres as E; s = E(Path(sys.argv[1]), {}); s.start(); s.stop()", str(pg_home / "pg")],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert other.returncode == 0, other.stderr
        # then the cluster still serves this one
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
    assert not (pg_home / "pg" / "postmaster.pid").exists()


def test_embedded_redis_answers_with_its_password_only_and_stops(tmp_path):
    import redis

    server = EmbeddedRedis(tmp_path, persistent=False)
    url = server.start()
    try:
        assert redis.Redis.from_url(f"{url}/3").set("k", "v")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url.replace(url.split("@")[0], "redis://")).get("k")
    finally:
        server.stop()
    assert server.process.poll() is not None


PROCFILE = """\
first: {python} -c "import os, socket, sys, time; open('first.pid', 'w').write(str(os.getpid())); time.sleep(0.5); s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); print('first listening', flush=True); time.sleep(600)" --port {port}
second: {python} -c "import os, socket, time; socket.create_connection(('127.0.0.1', {port})); open('second.pid', 'w').write(str(os.getpid())); print('second found first', flush=True); time.sleep(600)"
"""  # noqa: E501


def _launch(tmp_path: Path) -> subprocess.Popen:
    port = _free_port()
    (tmp_path / "Procfile").write_text(PROCFILE.format(python=sys.executable, port=port))
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from mercari_ops import embedded
        embedded.ROOT = Path({str(tmp_path)!r})
        env = dict(os.environ)
        sys.exit(embedded.processes_run(embedded.procfile_read(embedded.ROOT / "Procfile", env), env))
    """)
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def _wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed; output: {seen}")


def test_processes_start_in_procfile_order_each_once_the_one_before_listens_and_ctrl_c_stops_all(tmp_path):
    launcher = _launch(tmp_path)
    seen = _wait_for_line(launcher, "second found first")  # second exits 1 if first was not listening yet
    pids = [int((tmp_path / name).read_text()) for name in ("first.pid", "second.pid")]

    launcher.send_signal(signal.SIGINT)

    assert launcher.wait(30) == 0
    assert [line.split("|")[0].strip() for line in seen] == ["first", "second"]
    assert not any(_alive(pid) for pid in pids)


def test_processes_die_with_a_killed_launcher(tmp_path):
    launcher = _launch(tmp_path)
    _wait_for_line(launcher, "second found first")
    pids = [int((tmp_path / name).read_text()) for name in ("first.pid", "second.pid")]

    launcher.kill()
    launcher.wait(30)

    for pid in pids:  # the kernel's parent-death signal, not the launcher, stops them
        _wait_gone(pid)
        assert not _alive(pid)


def _wait_gone(pid: int) -> None:
    """Poll until the process is gone; SIGTERM reaches it at once, its exit is not instantaneous."""
    for _ in range(3000):
        if not _alive(pid):
            return
        time.sleep(0.01)


def test_procfile_readiness_ports():
    entries = procfile_read(ROOT / "Procfile", {"PORT": "8123"})

    assert [e.name for e in entries] == ["sandbox", "web", "worker", "beat"]
    assert [e.ready for e in entries] == [("127.0.0.1", 8089), ("127.0.0.1", 8123), None, None]
