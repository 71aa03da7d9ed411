import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
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


_migrations_applied = False  # once true, stays true for the life of the process (a deploy starts new ones)


def migrations_applied() -> bool:
    """No migration of the code left unapplied in the database; cached once true (the check reads the
    migration files and the django_migrations table, too much for every probe)."""
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connection)
        _migrations_applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrations_applied


def livez(request):
    """Kubernetes' liveness probe: the process answers. No database or Redis call (a database outage must not
    make Kubernetes restart every pod)."""
    return JsonResponse({"status": "ok"})


def readiness() -> dict[str, bool]:
    """The database answers, the broker's Redis answers, every migration is applied."""
    database = database_reachable()
    checks = {"database": database, "broker": broker_reachable()}
    try:
        checks["migrations"] = database and migrations_applied()
    except DatabaseError:
        checks["migrations"] = False
    return checks


def _readiness_response(checks: dict[str, bool], shown: dict[str, bool]) -> JsonResponse:
    ready = all(checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", **shown}, status=200 if ready else 503)


def readyz(request):
    """Kubernetes' readiness probe: 503 until the database, the broker and the schema are there."""
    checks = readiness()
    return _readiness_response(checks, checks)


def healthz(request):
    """The readiness verdict under its older name, in its older body (monitors configured before /readyz)."""
    checks = readiness()
    return _readiness_response(checks, {"database": checks["database"], "broker": checks["broker"]})


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
