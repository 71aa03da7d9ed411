from django.db import InterfaceError, OperationalError
from django.http import JsonResponse


class DatabaseUnavailableMiddleware:
    """An unreachable database answers 503 so callers (Pub/Sub, Braze) retry."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            return JsonResponse({"error": "database unavailable, retry later", "field": None}, status=503)
        return None

