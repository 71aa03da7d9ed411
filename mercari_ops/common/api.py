from datetime import UTC

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .api_auth import CachedTokenAuthentication, HasScope, scope_check  # noqa: F401  (the apps import them here)
from .services import SERVICE_USER_PREFIX
from .tokens import ANY_SCOPE, token_cache


class UTCDateTimeField(serializers.DateTimeField):
    """APIs answer in UTC (the contracts), whatever TIME_ZONE is (the business zone the admin shows)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default_timezone", UTC)
        super().__init__(*args, **kwargs)


class WhoAmIApi(APIView):
    """Lets a calling service check its token: answers with the service name."""

    required_scope = ANY_SCOPE

    @extend_schema(responses=inline_serializer("WhoAmI", {"service": serializers.CharField()}))
    def get(self, request):
        return Response({"service": request.user.get_username().removeprefix(SERVICE_USER_PREFIX)})


def token_authenticate(key: str, *, scope: str):
    """The lean hot paths' check (estimate, history GET): (user, TokenInfo), or AuthenticationFailed / ScopeMissing."""
    user, info = token_cache.check(key)
    info.require(scope)
    return user, info


class CachedTokenScheme(OpenApiAuthenticationExtension):
    """The same `Authorization: Token <key>` scheme, named apart so the schema has no clash."""

    target_class = "mercari_ops.common.api_auth.CachedTokenAuthentication"
    name = "cachedTokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": 'Token-based authentication with required prefix "Token"'}
