"""One error family for the whole project and the DRF handler that renders it."""

from __future__ import annotations

import re

from django.db import DatabaseError, DataError, IntegrityError, InterfaceError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback


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


_PG_KEY_COLUMNS = re.compile(r"Key \((?P<columns>[^)]*)\)=")


def _integrity_error_body(exc: IntegrityError) -> tuple[dict, int]:
    """What was wrong with the input, from PostgreSQL's diagnostics (psycopg's `diag`).

    Only column and constraint names go back to the caller, never the values of the row.
    """
    diag = getattr(exc.__cause__, "diag", None)
    key = _PG_KEY_COLUMNS.match((diag.message_detail if diag else None) or "")
    columns = ",".join(c.strip() for c in key.group("columns").split(",")) if key else None
    kind = {"23505": "UNIQUE", "23502": "NOT NULL", "23503": "FOREIGN KEY", "23514": "CHECK"}.get(
        diag.sqlstate if diag else None)
    column, constraint = (columns or diag.column_name, diag.constraint_name) if diag else (None, None)
    if kind == "UNIQUE":
        return error_body(f"a record with the same {column or 'key'} already exists", column), 409
    if kind == "NOT NULL":
        return error_body(f"{column or 'a value'} is required", column), 400
    if kind == "FOREIGN KEY":
        return error_body(f"{column or 'a reference'} refers to a record that does not exist", column), 400
    if kind == "CHECK":
        return error_body(f"the input breaks the rule {constraint or '(check constraint)'}", None), 400
    return error_body("the input breaks a database constraint", None), 400


def _data_error_body(exc: DataError) -> dict:
    """A value the column cannot hold (too long, out of range, not a number)."""
    diag = getattr(exc.__cause__, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc).splitlines()[0] or "invalid value"
    return error_body(message, getattr(diag, "column_name", None))


def api_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc.message, exc.field), status=exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        message, field = _first_drf_error(exc.detail)
        return Response(error_body(message, field), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        # Bad input, not an outage: a retry of the same request can never succeed.
        set_rollback()
        body, code = _integrity_error_body(exc)
        return Response(body, status=code)
    if isinstance(exc, DataError):
        set_rollback()
        return Response(_data_error_body(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (DatabaseError, InterfaceError)):  # InterfaceError is not a DatabaseError
        # OperationalError / InterfaceError (server down, connection lost, lock timeout): the caller retries.
        set_rollback()
        return Response(error_body("database unavailable, retry later"), status=503)
    response = exception_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = error_body(str(detail))
    return response
