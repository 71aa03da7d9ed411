import threading
import time
from datetime import UTC

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from .services import SERVICE_USER_PREFIX


class UTCDateTimeField(serializers.DateTimeField):
    """APIs answer in UTC (the contracts), whatever TIME_ZONE is (the business zone the admin shows)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default_timezone", UTC)
        super().__init__(*args, **kwargs)


class WhoAmIApi(APIView):
    """Lets a calling service check its token: answers with the service name."""

    @extend_schema(responses=inline_serializer("WhoAmI", {"service": serializers.CharField()}))
    def get(self, request):
        return Response({"service": request.user.get_username().removeprefix(SERVICE_USER_PREFIX)})


class CachedTokenAuthentication(TokenAuthentication):
    """DRF token auth with a per-process cache, so hot API paths (estimate, history) spend no query on auth.

    A revoked or deactivated token keeps working in a process for at most API_TOKEN_CACHE_SECONDS.
    """

    _cache: dict[str, tuple[float, tuple]] = {}
    _lock = threading.Lock()

    def authenticate_credentials(self, key):
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        result = super().authenticate_credentials(key)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + settings.API_TOKEN_CACHE_SECONDS, result)
        return result


class CachedTokenScheme(OpenApiAuthenticationExtension):
    """The same `Authorization: Token <key>` scheme, named apart so the schema has no clash."""

    target_class = "mercari_ops.common.api.CachedTokenAuthentication"
    name = "cachedTokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": 'Token-based authentication with required prefix "Token"'}
