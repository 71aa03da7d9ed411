"""Schemathesis against the live server: gunicorn on the project's WSGI application and this test's database,
every operation of GET /api/schema/ generated from the schema, `--checks all`, zero failures.

Bounded and deterministic: derandomized generation, a few examples per operation (settings in
schemathesis.toml beside this file, with why some operations accept a 400 for schema-valid data).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from mercari_ops.common.services import service_token_create

ROOT = Path(__file__).resolve().parents[3]
CONFIG = Path(__file__).with_name("schemathesis.toml")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_env(**extra: str) -> dict:
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    return {
        **os.environ, "DATABASE_URL": f"{base}/{connection.settings_dict['NAME']}",
        # production settings, as the bench's gunicorn runs them (bench/harness.py bench_env)
        "DEBUG": "0", "DJANGO_SECRET_KEY": "schemathesis-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0", "PUBSUB_AUTH": "token", "PUBSUB_PUSH_TOKEN": "st-push-token",
        "BRAZE_WEBHOOK_TOKEN": "st-braze-token", "LINE_CHANNEL_ACCESS_TOKEN": "st-line",
        "LINE_CHANNEL_SECRET": "st-line-secret", "LOG_LEVEL": "ERROR", **extra,
    }


@pytest.fixture
def live_server_url(transactional_db):
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "mercari_ops.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=_server_env())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_schemathesis_finds_nothing_against_the_live_server(live_server_url, tmp_path):
    env = {**_server_env(), "MOPS_ST_API_TOKEN": service_token_create(name="schemathesis"),
           "MOPS_ST_PUSH_TOKEN": "st-push-token", "MOPS_ST_BRAZE_TOKEN": "st-braze-token"}
    # --wait-for-schema: schemathesis polls the schema URL until gunicorn answers (no sleep of ours)
    done = subprocess.run(
        [str(BIN / "schemathesis"), "--config-file", str(CONFIG), "run", f"{live_server_url}/api/schema/",
         "--checks", "all", "--wait-for-schema", "60", "--no-color"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
