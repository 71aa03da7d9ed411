from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from mercari_ops.common import dashboard as ops_dashboard
from mercari_ops.common import otp_admin
from mercari_ops.common import views as common_views
from mercari_ops.common.api import WhoAmIApi
from mercari_ops.common.api_docs import redoc_bundle, redoc_view, swagger_view
from mercari_ops.common.i18n import language_set
from mercari_ops.common.metrics import views as metrics_views

urlpatterns = [
    # Hot machine-to-machine paths first: Django tries the patterns in order on every request (a push
    # passed eight patterns before its own when the probes and API docs came first).
    path("", include("mercari_ops.inbox.urls")),
    path("", include("campaigns.urls")),
    path("", include("line_integration.urls")),
    path("", include("history.urls")),
    path("", include("loyalty.urls")),
    path("healthz", common_views.healthz, name="healthz"),
    path("livez", common_views.livez, name="livez"),
    path("readyz", common_views.readyz, name="readyz"),
    path("metrics", metrics_views.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
         name="api-schema"),
    # Pages to read the schema, public like it, from our own static files (mercari_ops/common/api_docs.py).
    path("api/docs", swagger_view, name="api-docs"),
    path("api/redoc", redoc_view, name="api-redoc"),
    path("api/redoc/redoc.standalone.js", redoc_bundle, name="api-redoc-bundle"),
    path("api/whoami", WhoAmIApi.as_view(), name="api-whoami"),
    # Anything else under a machine prefix (an unknown path, an ID its converter refuses) is a JSON 404, also
    # with DEBUG on; the admin and other pages keep Django's HTML 404.
    re_path(r"^(?:api|line|pubsub)/", common_views.machine_not_found, name="machine-not-found"),
    # The admin's language switch: Django's set_language, remembered per user (mercari_ops/common/i18n.py).
    path("i18n/setlang/", language_set, name="set_language"),
    # The site has no page of its own: "/" (and the admin's "View site") is the admin.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    # The admin's second factor (mercari_ops/common/otp_admin.py) under the admin's own prefix (ADMIN_URL_PREFIX).
    path(f"{settings.ADMIN_URL_PREFIX}otp/", include(otp_admin.urlpatterns)),
    # The operations page (mercari_ops/common/dashboard.py): the metrics' figures and the last 24 hours.
    path(f"{settings.ADMIN_URL_PREFIX}operations/", ops_dashboard.operations_view, name="ops-operations"),
    path(settings.ADMIN_URL_PREFIX, admin.site.urls),
]

if settings.BENCH_BARE_VIEW:
    # The benchmarks' baseline (docs/benchmarks.md): no auth, so never in a production URLconf.
    urlpatterns.insert(0, path("bench/bare", common_views.bare, name="bench-bare"))

# Serves the admin's static files when DEBUG is on (make run); production serves them from STATIC_ROOT.
urlpatterns += staticfiles_urlpatterns()

handler404 = common_views.not_found
