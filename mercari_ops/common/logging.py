"""Log lines an on-call engineer can follow and nobody can mine for personal data.

- `LOG_FORMAT=json`: one JSON object per line (`JsonFormatter`); `plain` (default): one text line
  (`PlainFormatter`). Both stamp UTC (RFC 3339, `Z`): Django sets the process time zone to TIME_ZONE
  (Japan's), which `logging` would otherwise use.
- A request ID per request (`RequestIdMiddleware`, first in both middleware lists), taken from
  `X-Request-ID` or the trace part of Google's `X-Cloud-Trace-Context`, made when absent, answered in
  `X-Request-ID`. It travels in a contextvar, into the Celery tasks the request enqueues (a message header,
  restored in the worker by `task_prerun`) and onto every record (`log_context_record_factory`).
- Records carry `topic`, `event_id` and `task_id` when the log call passes them (`extra=`) or the context has them.
- No personal data: customer IDs are logged as `log_safe_customer(customer_id)` (a short sha256); LINE IDs
  never -- the formatters also mask anything shaped like one (`U` + 32 hex), as a net under the log calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import logging.config
import os
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
# Celery message header carrying the request ID into the worker.
TASK_HEADER = "mercari_request_id"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)
_fields_var: ContextVar[dict | None] = ContextVar("log_fields", default=None)

CONTEXT_FIELDS = ("topic", "event_id", "task_id")
# What a caller may send as its request ID: no spaces or control characters (log injection), bounded.
_REQUEST_ID_SAFE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# LINE user, group and room IDs (U/C/R + 32 lowercase hex).
_LINE_ID = re.compile(r"\b[UCR][0-9a-f]{32}\b")
LINE_ID_MASK = "<line-id>"
# Our customer IDs ("c-00001"), and the path segment naming a customer in our URLs (API and admin): hashed.
_CUSTOMER_ID = re.compile(r"(?<![\w:-])c-\d+\b")
_CUSTOMER_SEGMENT = re.compile(r"(/customers?/)(?!add/|cust:)([^/\s?#\"']+)")
# The query string of a path in a text (`/admin/...?q=U123...`): dropped, it holds what an operator searched.
_PATH_QUERY = re.compile(r"((?:^|(?<=[\s\"'(=]))/[^\s?\"']*)\?[^\s\"']*")
# Payload keys whose values are personal: their values are hashed out of error texts (`log_safe_error`).
_PERSONAL_KEYS = ("customer_id", "user_id", "userid", "line_user_id", "to", "email", "phone", "name")


# --- personal data --------------------------------------------------------------


def log_safe_customer(customer_id: object) -> str:
    """A customer ID as it may appear in logs: `cust:` + 12 hex of its sha256 (stable, so lines correlate)."""
    if customer_id in (None, ""):
        return "-"
    return "cust:" + hashlib.sha256(str(customer_id).encode()).hexdigest()[:12]


def line_ids_mask(text: str) -> str:
    return _LINE_ID.sub(LINE_ID_MASK, text)


def _customer_hash(match: re.Match) -> str:
    return match.group(1) + log_safe_customer(match.group(2))


def text_scrub(text: str) -> str:
    """Any text bound for a log line or Sentry without personal data: LINE IDs masked, customer IDs hashed
    (the segment after `/customers/` or `/customer/` in a path, and anything shaped like ours, `c-` + digits),
    query strings of paths dropped (`?q=` searches by customer or LINE ID). The one scrubber of every
    formatter and of Sentry's before_send."""
    if not text:
        return text
    text = _PATH_QUERY.sub(r"\1", text)
    text = _CUSTOMER_SEGMENT.sub(_customer_hash, text)
    text = _CUSTOMER_ID.sub(lambda m: log_safe_customer(m.group(0)), text)
    return _LINE_ID.sub(LINE_ID_MASK, text)


def path_scrub(path: str) -> str:
    """A request path as logs may show it: no query string, customer IDs hashed, LINE IDs masked."""
    return text_scrub(str(path).split("?", 1)[0])


def _personal_values(payload: object) -> Iterator[str]:
    if isinstance(payload, dict):
        for key, value in payload.items():
            if isinstance(value, (dict, list)):
                yield from _personal_values(value)
            elif isinstance(value, str) and value and str(key).lower().endswith(_PERSONAL_KEYS):
                yield value
    elif isinstance(payload, (list, tuple)):
        for item in payload:
            yield from _personal_values(item)


def log_safe_error(exc: BaseException, payload: object = None) -> str:
    """`Type: message` of an exception, with the payload's personal values hashed and LINE IDs masked.

    A database error quotes the failing row ("Key (customer_id)=(c-1) already exists"); the event's own
    customer ID is replaced by its hash so the line still says which customer without naming them.
    """
    text = f"{type(exc).__name__}: {exc}"
    for value in sorted(set(_personal_values(payload)), key=len, reverse=True):
        text = text.replace(value, log_safe_customer(value))
    return text_scrub(text)


# --- context ------------------------------------------------------------------------


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Records logged inside the block carry `fields` (topic, event_id...) unless the call passes its own."""
    token = _fields_var.set({**(_fields_var.get() or {}), **fields})
    try:
        yield
    finally:
        _fields_var.reset(token)


def current_request_id() -> str | None:
    return request_id_var.get()


def request_id_from(meta: dict) -> str:
    """The caller's request ID, the trace of Google's load balancer, or a new one (16 hex, no uuid4: cheap)."""
    given = meta.get("HTTP_X_REQUEST_ID")
    if given is not None and _REQUEST_ID_SAFE.fullmatch(given):
        return given
    trace = meta.get("HTTP_X_CLOUD_TRACE_CONTEXT")  # TRACE_ID/SPAN_ID;o=1
    if trace:
        trace_id = trace.split("/", 1)[0].split(";", 1)[0]
        if _REQUEST_ID_SAFE.fullmatch(trace_id):
            return trace_id
    return os.urandom(8).hex()


def _request_id_clear(**kwargs) -> None:
    request_id_var.set(None)


class RequestIdMiddleware:
    """Sets the request ID for the request's log lines and answers it in `X-Request-ID`. First in
    MIDDLEWARE and MACHINE_MIDDLEWARE, so every other layer's lines carry it (one contextvar set per request).

    The ID stays set until the response is closed (`request_finished`), not only while the middleware
    runs: Django logs a 4xx/5xx answer ("Bad Request: ...") after the whole middleware chain returned.
    """

    def __init__(self, get_response):
        from django.core.signals import request_finished

        request_finished.connect(_request_id_clear, dispatch_uid="mercari_ops.logging.request_id_clear")
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.META)
        request_id_var.set(request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


_base_factory = logging.getLogRecordFactory()


def log_context_record_factory(*args, **kwargs) -> logging.LogRecord:
    """Every record gets `request_id` and `task_id` at creation (also records a test's caplog captures)."""
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id_var.get()
    record.task_id = task_id_var.get()
    fields = _fields_var.get()
    if fields:
        for name, value in fields.items():
            record.__dict__.setdefault(name, value)
    return record


# --- Celery ------------------------------------------------------------------------


def task_publish_annotate(headers: dict | None = None, **kwargs) -> None:
    """before_task_publish: the enqueuing request's ID goes with the message."""
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


_task_tokens: dict[str, tuple] = {}


def task_context_enter(task_id: str | None = None, task=None, **kwargs) -> None:
    """task_prerun: the worker's lines carry the task ID and the request ID that queued it (an eager task,
    run inside the request, keeps the request's)."""
    request_id = None
    if task is not None:
        request_id = getattr(task.request, TASK_HEADER, None)
    tokens = (task_id_var.set(task_id), request_id_var.set(request_id or request_id_var.get()))
    if task_id:
        _task_tokens[task_id] = tokens


def task_context_exit(task_id: str | None = None, **kwargs) -> None:
    """task_postrun: back to the context the task ran in (an eager task returns to its request's)."""
    tokens = _task_tokens.pop(task_id, None) if task_id else None
    if tokens is None:
        return
    task_token, request_token = tokens
    try:
        request_id_var.reset(request_token)
        task_id_var.reset(task_token)
    except ValueError:  # reset from another context (a pool thread): set, rather than restore
        request_id_var.set(None)
        task_id_var.set(None)


def celery_signals_connect() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(task_publish_annotate, dispatch_uid="mercari_ops.logging.publish", weak=False)
    task_prerun.connect(task_context_enter, dispatch_uid="mercari_ops.logging.prerun", weak=False)
    task_postrun.connect(task_context_exit, dispatch_uid="mercari_ops.logging.postrun", weak=False)


# --- formatters ---------------------------------------------------------------------


def _utc_rfc3339(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


def _django_request_safe(record: logging.LogRecord) -> str:
    """django.request's "Not Found: /api/loyalty/customers/c-1" names a customer in the path: its route
    (`api/loyalty/customers/<str:customer_id>`) is logged instead when the path was resolved."""
    request = getattr(record, "request", None)
    match = getattr(request, "resolver_match", None)
    if match is not None and record.args and isinstance(record.args, tuple):
        path = getattr(request, "path", None)
        escaped = path.encode("unicode_escape").decode("ascii") if isinstance(path, str) else None
        args = tuple(f"/{match.route}" if arg in (path, escaped) else arg for arg in record.args)
        try:
            return record.msg % args
        except (TypeError, ValueError):
            pass
    return record.getMessage()


def _access_fields(record: logging.LogRecord) -> dict | None:
    """gunicorn's access line (its atoms in `record.args`) as our fields: method, path without its query
    string and with customer IDs hashed, status, duration; no client address, user agent or referrer."""
    atoms = record.args
    if record.name != "gunicorn.access" or not isinstance(atoms, dict):
        return None
    return {"method": atoms.get("m"), "path": path_scrub(atoms.get("U") or ""),
            "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
            "duration_ms": atoms.get("M"), "response_request_id": atoms.get("{x-request-id}o")}


def _message(record: logging.LogRecord, access: dict | None = None) -> str:
    if access is not None:
        return f"{access['method']} {access['path']} {access['status']} {access['duration_ms']}ms"
    if record.name == "django.request" or record.name == "django.server":
        return _django_request_safe(record)
    return record.getMessage()


class PlainFormatter(logging.Formatter):
    """`2026-12-05T12:00:00.000Z INFO logger [request_id] message` in UTC, LINE IDs masked."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{name}={getattr(record, name)}" for name in ("request_id",) + CONTEXT_FIELDS
                           if getattr(record, name, None))
        line = f"{_utc_rfc3339(record.created)} {record.levelname} {record.name}" \
               f"{' [' + context + ']' if context else ''} {_message(record, _access_fields(record))}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return text_scrub(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, RFC 3339), level, logger, message, request_id and, where
    there is one, topic, event_id, task_id; an exception's traceback under `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        access = _access_fields(record)
        entry = {"timestamp": _utc_rfc3339(record.created), "level": record.levelname, "logger": record.name,
                 "message": text_scrub(_message(record, access)), "request_id": getattr(record, "request_id", None)}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = text_scrub(value) if isinstance(value, str) else value
        if access is not None:
            # gunicorn logs after the response: the ID it answered, should the context be gone
            entry["request_id"] = entry["request_id"] or access.pop("response_request_id")
            access.pop("response_request_id", None)
            entry.update(access)
        if record.exc_info:
            entry["exception"] = text_scrub(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = text_scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_configure(config: dict) -> None:
    """settings.LOGGING_CONFIG: Django's dictConfig, plus the record factory that adds the request context."""
    if logging.getLogRecordFactory() is not log_context_record_factory:
        logging.setLogRecordFactory(log_context_record_factory)
    if config:
        logging.config.dictConfig(config)
