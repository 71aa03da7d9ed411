from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .services import SERVICE_USER_PREFIX


class WhoAmIApi(APIView):
    """Lets a calling service check its token: answers with the service name."""

    @extend_schema(responses=inline_serializer("WhoAmI", {"service": serializers.CharField()}))
    def get(self, request):
        return Response({"service": request.user.get_username().removeprefix(SERVICE_USER_PREFIX)})
