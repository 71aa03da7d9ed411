"""Swagger UI and ReDoc pages for the schema: public, on the machine stack, from our own static files."""

import re

import pytest
from django.contrib.staticfiles import finders

from mercari_ops.common.tests.wsgi_client import wsgi_call

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("url", "script"), [
    ("/api/docs", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
    ("/api/redoc", "/api/redoc/redoc.standalone.js"),
])
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
    assert f'src="{script}"' in page
    for asset in re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", page):  # our static files (the sidecar's)
        assert finders.find(asset.removeprefix("/static/")), asset


def test_redocs_bundle_is_the_sidecars_without_its_cdn_address():
    status, headers, content = wsgi_call("/api/redoc/redoc.standalone.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    original = open(finders.find("drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"), "rb").read()
    assert b"cdn.redoc.ly" in original and b"cdn.redoc.ly" not in content
    assert len(content) > 0.99 * len(original)  # the same bundle, one address replaced


def test_the_schema_the_pages_read_is_served():
    status, _, content = wsgi_call("/api/schema/")
    assert status == 200 and b"openapi:" in content


def test_the_bundle_answers_get_only():
    assert wsgi_call("/api/redoc/redoc.standalone.js", method="POST", body=b"{}")[0] == 405
