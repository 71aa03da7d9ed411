import redis
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found

from mercari_ops.common.errors import error_body
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


def _machine_not_found_response(request) -> JsonResponse:
    return JsonResponse(error_body(f"no such resource: {request.path}", None), status=404)


@csrf_exempt
def machine_not_found(request, *args, **kwargs):
    """Any method on a path under a machine prefix that no view serves: the API's JSON 404."""
    return _machine_not_found_response(request)


def not_found(request, exception=None):
    """handler404: machine paths answer {"error", "field"}; pages keep Django's HTML 404."""
    if request.path_info.startswith(tuple(settings.MACHINE_PATH_PREFIXES)):
        return _machine_not_found_response(request)
    return page_not_found(request, exception)
