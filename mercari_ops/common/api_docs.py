"""Swagger UI (/api/docs) and ReDoc (/api/redoc) over /api/schema/, public like the schema itself.

They live under /api/, a machine prefix (no session, no CSRF middleware): both pages are plain GETs that
need neither. Their JavaScript and CSS come from drf-spectacular-sidecar's static files (SPECTACULAR_SETTINGS
*_DIST = "SIDECAR"), ReDoc's page is ours without its Google Fonts links, and a Content-Security-Policy
keeps the browser on our own server: ReDoc's bundle would still fetch its logo from cdn.redoc.ly.
"""

import functools

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


swagger_view = _own_files_only(SpectacularSwaggerView.as_view(
    url_name="api-schema", authentication_classes=[], permission_classes=[]))
redoc_view = _own_files_only(SpectacularRedocView.as_view(
    url_name="api-schema", authentication_classes=[], permission_classes=[], template_name="api_docs/redoc.html"))
