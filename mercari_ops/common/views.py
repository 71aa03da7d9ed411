import os

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from mercari_ops.inbox.services import database_reachable


def broker_reachable() -> bool:
    url = settings.CELERY_BROKER_URL
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
        if url.startswith("filesystem://"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
            return os.path.isdir(folder) and os.access(folder, os.W_OK)
        from kombu import Connection

        with Connection(url, connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def healthz(request):
    checks = {"database": database_reachable(), "broker": broker_reachable()}
    return JsonResponse({"status": "ok" if all(checks.values()) else "unavailable", **checks},
                        status=200 if all(checks.values()) else 503)


@csrf_exempt
def bare(request):
    """The benchmark baseline: a Django view that does nothing but answer 204."""
    return HttpResponse(status=204)
