from datetime import UTC

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.utils import timezone


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


class MachineUTCMiddleware:
    """Machine endpoints (APIs, webhooks) answer in UTC as the contracts say; pages show the business zone."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefixes = tuple(settings.MACHINE_PATH_PREFIXES)

    def __call__(self, request):
        if not request.path_info.startswith(self.prefixes):
            return self.get_response(request)
        timezone.activate(UTC)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
