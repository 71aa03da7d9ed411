"""One error family for the whole project and the DRF handler that renders it."""

from __future__ import annotations

from django.db import DatabaseError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class DomainError(Exception):
    """A request that cannot be honoured as asked. Rendered as {"error", "field"}."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(DomainError):
    status_code = status.HTTP_400_BAD_REQUEST


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT


class Unprocessable(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


def error_body(message: str, field: str | None = None) -> dict:
    return {"error": message, "field": field}


def _first_drf_error(detail, prefix: str = "") -> tuple[str, str | None]:
    """Flatten DRF's nested validation detail to its first (message, dotted field)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            message, field = _first_drf_error(value, name)
            return message, (None if field == "non_field_errors" else field)
    if isinstance(detail, list) and detail:
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                return _first_drf_error(value, f"{prefix}.{index}" if prefix else str(index))
            if not isinstance(value, (dict, list)):
                return str(value), prefix or None
    return str(detail), prefix or None


def api_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc.message, exc.field), status=exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        message, field = _first_drf_error(exc.detail)
        return Response(error_body(message, field), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DatabaseError):
        return Response(error_body("database unavailable, retry later"), status=503)
    response = exception_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = error_body(str(detail))
    return response
