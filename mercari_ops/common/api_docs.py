"""Swagger UI (/api/docs) and ReDoc (/api/redoc) over /api/schema/, public like the schema itself.

They live under /api/, a machine prefix (no session, no CSRF middleware): both pages are plain GETs that
need neither. Their JavaScript and CSS come from drf-spectacular-sidecar's static files (SPECTACULAR_SETTINGS
*_DIST = "SIDECAR"), ReDoc's page is ours without its Google Fonts links, and a Content-Security-Policy
keeps the browser on our own server. ReDoc's bundle names its badge's logo on cdn.redoc.ly, so the page loads
the sidecar's bundle through `redoc_bundle`, with that address replaced by an empty inline image.
"""

import functools
from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

# Inline scripts and styles are the pages' own (the Swagger UI set-up, ReDoc's init); ReDoc runs a blob worker.
OWN_FILES_ONLY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                  "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")


def _own_files_only(view):
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = OWN_FILES_ONLY
        return response

    return wrapped


REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@functools.cache
def _redoc_bundle() -> bytes:
    return Path(finders.find(REDOC_BUNDLE)).read_bytes().replace(REDOC_LOGO, _EMPTY_IMAGE)


@require_GET
def redoc_bundle(request) -> HttpResponse:
    """The sidecar's ReDoc bundle, its one address on another server replaced (read once per process)."""
    response = HttpResponse(_redoc_bundle(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=86400"
    return response


class _RedocView(SpectacularRedocView):
    @staticmethod
    def _redoc_standalone() -> str:
        return reverse("api-redoc-bundle")


swagger_view = _own_files_only(SpectacularSwaggerView.as_view(
    url_name="api-schema", authentication_classes=[], permission_classes=[]))
redoc_view = _own_files_only(_RedocView.as_view(
    url_name="api-schema", authentication_classes=[], permission_classes=[], template_name="api_docs/redoc.html"))
