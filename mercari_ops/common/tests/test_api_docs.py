"""Swagger UI and ReDoc pages for the schema: public, on the machine stack, from our own static files."""

import re

import pytest
from django.contrib.staticfiles import finders

from mercari_ops.common.tests.wsgi_client import wsgi_call

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("url", "script"), [("/api/docs", "swagger-ui-bundle.js"), ("/api/redoc", "redoc")])
def test_docs_page_answers_without_a_session_and_loads_only_our_files(url, script):
    # through the real WSGI entry point: /api/ runs the machine middleware (no session, no CSRF)
    status, headers, content = wsgi_call(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Set-Cookie" not in headers
    # the browser may load nothing from another server (ReDoc's bundle would fetch its logo from a CDN)
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data:" in csp and "http" not in csp
    page = content.decode()
    assert "/api/schema/" in page
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page), "a file from another server"
    assert "googleapis" not in page and "cdn" not in page.lower()
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", page)
    assert any(script in asset for asset in assets), assets
    for asset in assets:  # each one is a file of our static files (drf_spectacular_sidecar)
        assert finders.find(asset.removeprefix("/static/")), asset


def test_the_schema_the_pages_read_is_served():
    status, _, content = wsgi_call("/api/schema/")
    assert status == 200 and b"openapi:" in content
