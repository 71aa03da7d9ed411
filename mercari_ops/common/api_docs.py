"""Swagger UI (/api/docs) and ReDoc (/api/redoc) over /api/schema/, public like the schema itself.

They live under /api/, a machine prefix (no session, no CSRF middleware): both pages are plain GETs that
need neither. Their JavaScript and CSS come from drf-spectacular-sidecar's static files (SPECTACULAR_SETTINGS
*_DIST = "SIDECAR"), and ReDoc's page is ours without its Google Fonts links: nothing is fetched from a CDN.
"""

from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

swagger_view = SpectacularSwaggerView.as_view(url_name="api-schema", authentication_classes=[],
                                              permission_classes=[])
redoc_view = SpectacularRedocView.as_view(url_name="api-schema", authentication_classes=[], permission_classes=[],
                                          template_name="api_docs/redoc.html")
