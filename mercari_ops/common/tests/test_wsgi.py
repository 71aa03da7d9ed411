"""The WSGI entry point: machine endpoints on a lean middleware stack, browser pages on the full one."""

import json

import pytest
from django.conf import settings

from conftest import push_body
from mercari_ops.common.tests.wsgi_client import wsgi_call
from mercari_ops.inbox.models import InboxEvent

pytestmark = pytest.mark.django_db


def test_a_push_runs_without_the_browser_middleware_and_is_recorded(test_topic):
    name, calls, _ = test_topic
    auth = {"Authorization": f"Bearer {settings.PUBSUB_PUSH_TOKEN}"}
    status, headers, _ = wsgi_call(f"/pubsub/push/{name}", method="POST", body=push_body({"event_id": "w-1"}),
                                   headers=auth)
    assert status == 204
    assert InboxEvent.objects.get(topic=name, event_id="w-1").status == "processed"
    assert calls == [{"event_id": "w-1"}]
    # no browser middleware on a machine path: no clickjacking, session, CSRF or browser security headers
    assert "X-Frame-Options" not in headers and "Vary" not in headers
    assert "X-Content-Type-Options" not in headers and "Referrer-Policy" not in headers


def test_browser_paths_keep_the_full_middleware_stack():
    status, headers, _ = wsgi_call("/admin/login/")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert "csrftoken" in headers.get("Set-Cookie", "")


def test_machine_paths_keep_their_errors_in_the_api_shape(test_topic):
    status, headers, content = wsgi_call(f"/pubsub/push/{test_topic[0]}", method="POST",
                                         body=push_body({"event_id": "w-2"}), headers={"Authorization": "Bearer no"})
    assert status == 401
    assert json.loads(content) == {"error": "missing or wrong bearer token", "field": "Authorization"}
    assert not InboxEvent.objects.exists()


def test_every_api_authenticates_without_a_session():
    # the lean stack is only safe where no endpoint relies on a session cookie: DRF must authenticate by token
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.settings import api_settings

    assert "/api/" in settings.MACHINE_PATH_PREFIXES
    assert not any(issubclass(cls, SessionAuthentication) for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    status, headers, content = wsgi_call("/api/whoami", headers={"Authorization": "Token nope"})
    assert status == 401 and "X-Frame-Options" not in headers


def test_token_apis_work_end_to_end_on_the_machine_stack():
    # DRF authenticates by token without the session and auth middleware, and knows the calling service
    from campaigns.models import Campaign
    from campaigns.tests.test_campaign_api import BODY
    from mercari_ops.common.services import service_token_create

    auth = {"Authorization": f"Token {service_token_create(name='billing')}"}
    status, headers, content = wsgi_call("/api/campaigns", method="POST", body=json.dumps(BODY).encode(),
                                         headers=auth)
    assert status == 201, content
    assert "X-Frame-Options" not in headers
    campaign = Campaign.objects.get(pk=json.loads(content)["id"])
    assert campaign.name == "Autumn"
    status, _, content = wsgi_call("/api/whoami", headers=auth)
    assert (status, json.loads(content)) == (200, {"service": "billing"})


def middleware_chain(handler) -> list[str]:
    """The middleware a handler's chain runs, outermost first, walked down to Django's _get_response."""
    names, layer = [], handler._middleware_chain
    while hasattr(layer.__wrapped__, "get_response"):
        instance = layer.__wrapped__
        names.append(f"{type(instance).__module__}.{type(instance).__qualname__}")
        layer = instance.get_response
    assert layer.__wrapped__ == handler._get_response
    return names


def test_the_machine_handler_loads_its_own_middleware_without_changing_settings():
    from django.conf import LazySettings
    from django.core.handlers.wsgi import WSGIHandler

    from mercari_ops.wsgi import MachineWSGIHandler

    def refuse(self, name, value):
        raise AssertionError(f"settings.{name} assigned at runtime")

    # given: settings that refuse any assignment (restored before pytest-django's own settings teardown)
    allow = LazySettings.__setattr__
    LazySettings.__setattr__ = refuse
    try:
        # when
        machine, browser = MachineWSGIHandler(), WSGIHandler()
    finally:
        LazySettings.__setattr__ = allow
    # then: each handler runs its own list, in order, with the hooks Django would collect from it
    assert middleware_chain(machine) == settings.MACHINE_MIDDLEWARE
    assert middleware_chain(browser) == settings.MIDDLEWARE
    assert [type(hook.__self__).__name__ for hook in machine._exception_middleware] == [
        "DatabaseUnavailableMiddleware"]
    assert machine._view_middleware == machine._template_response_middleware == []


@pytest.mark.parametrize(("setting", "frozen"), [("1", True), ("0", False)])
def test_wsgi_gc_freeze_freezes_the_loaded_application_only_when_asked(setting, frozen):
    import os
    import subprocess
    import sys

    # a fresh interpreter loads the application, as a gunicorn worker does
    code = "import gc; import mercari_ops.wsgi; print(gc.get_freeze_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": "mercari_ops.settings",
                              "WSGI_GC_FREEZE": setting}, cwd=settings.BASE_DIR).stdout
    count = int(out.strip())
    assert (count > 10_000) if frozen else (count == 0), count  # Django and the apps: tens of thousands


def test_the_benchmarks_baseline_runs_the_fixed_browser_stack_not_the_admins_newer_middleware():
    import io
    from wsgiref.util import setup_testing_defaults

    from mercari_ops.wsgi import BenchBareWSGIHandler

    assert set(settings.BENCH_BARE_MIDDLEWARE) < set(settings.MIDDLEWARE)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/admin/login/", "wsgi.input": io.BytesIO(b""),
               "HTTP_HOST": "localhost", "SERVER_NAME": "localhost"}
    setup_testing_defaults(environ)
    answer = {}
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)  # as wsgi_call: keep the test's transaction's connection
    request_finished.disconnect(close_old_connections)
    try:
        b"".join(BenchBareWSGIHandler()(environ, lambda status, headers, exc=None: answer.update(headers)))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    # the old stack's headers (clickjacking, nosniff), none of the admin's later layers (locale, request ID)
    assert answer["X-Frame-Options"] == "DENY" and answer["X-Content-Type-Options"] == "nosniff"
    assert "Content-Language" not in answer and "X-Request-ID" not in answer
