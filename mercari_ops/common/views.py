import redis
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from mercari_ops.inbox.services import database_reachable


def broker_reachable() -> bool:
    """One PING to the Celery broker (Redis), with a one-second budget."""
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
        with client:
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def healthz(request):
    checks = {"database": database_reachable(), "broker": broker_reachable()}
    return JsonResponse({"status": "ok" if all(checks.values()) else "unavailable", **checks},
                        status=200 if all(checks.values()) else 503)


@csrf_exempt
def bare(request):
    """The benchmark baseline: a Django view that does nothing but answer 204."""
    return HttpResponse(status=204)
