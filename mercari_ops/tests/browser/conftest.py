"""The admin in a real browser: Debian's Chromium driven by Playwright against gunicorn on the test database.

Never `playwright install` (it cannot download here): the browser is /usr/bin/chromium (`.ci/run` installs it).
On a failure the test leaves a screenshot and the page's HTML in var/test/browser-failures/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FAILURES = ROOT / "var" / "test" / "browser-failures"
# Flags for a closed network and a root user (the machine's notes): no sandbox, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
PASSWORD = "browser-test-Passw0rd!"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True, scope="package")
def _orm_beside_playwright():
    """Playwright's sync API keeps an event loop running in this thread; the tests' own ORM calls (fixtures, the
    database flush after each test) are synchronous and never run inside it (Django's documented switch for this
    case). Package-scoped: it outlives every browser test's database teardown and is gone before any other test
    (a check --deploy subprocess must not inherit it)."""
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def live_admin(transactional_db):
    """gunicorn with DEBUG on (the admin's static files) and tasks run inline (no worker needed)."""
    port = _free_port()
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    env = {**os.environ, "DATABASE_URL": f"{base}/{connection.settings_dict['NAME']}", "DEBUG": "1",
           "CELERY_TASK_ALWAYS_EAGER": "1", "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "mercari_ops.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "4", "--log-level", "warning"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/admin/login/", timeout=10)
            break
        except requests.RequestException:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="package")
def browser():
    """One Chromium for the browser tests; closed (and Playwright's event loop with it) before any other test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context (no cookies) speaking Japanese unless a test asks otherwise."""
    marker = request.node.get_closest_marker("browser_locale")
    context = browser.new_context(locale=marker.args[0] if marker else "ja-JP", timezone_id="Asia/Tokyo")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        tab.screenshot(path=str(FAILURES / f"{name}.png"), full_page=True)
        (FAILURES / f"{name}.html").write_text(tab.content(), encoding="utf-8")
    context.close()


def staff_user(username: str, *groups: str):
    user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


@pytest.fixture
def marketer(transactional_db):
    return staff_user("browser-marketer", "marketers")


@pytest.fixture
def operator(transactional_db):
    """An operator with a confirmed TOTP device (operators must use a second factor)."""
    from django.apps import apps

    user = staff_user("browser-operator", "operators")
    if apps.is_installed("django_otp.plugins.otp_totp"):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        TOTPDevice.objects.create(user=user, name="browser test", confirmed=True)
    return user


def log_in(page, base_url: str, user, password: str = PASSWORD) -> None:
    """The admin's login form, then the second factor when the site asks for one (a TOTP code from the user's
    confirmed device)."""
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", user.get_username())
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.press("#id_password", "Enter")
    token_field = page.locator("input[name=token]")
    if "/otp/verify/" in page.url and token_field.count():
        token_field.fill(totp_now(user))
        with page.expect_navigation():
            token_field.press("Enter")


def totp_now(user) -> str:
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"
