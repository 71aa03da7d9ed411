"""Optional error reporting to Sentry (SENTRY_DSN; off when empty), with personal data scrubbed before sending.

Sentry's own `send_default_pii=False` keeps users, cookies and IPs out; `before_send` then removes what it
does not know is personal here: request bodies (events, Braze and LINE payloads), Authorization and signature
headers, customer and LINE IDs anywhere in the event (`logging.text_scrub`, the formatters' scrubber), and
local variables of stack frames. Imported by
settings.py: no Django models here.
"""

from __future__ import annotations

import copy
from typing import Any

from mercari_ops.common.logging import text_scrub

FILTERED = "[Filtered]"
# Request headers kept (lower case); every other header (Authorization, Cookie, X-Line-Signature...) goes.
_SAFE_HEADERS = {"content-type", "content-length", "user-agent", "x-request-id", "x-cloud-trace-context", "host",
                 "accept"}
# Keys whose values are personal, wherever they appear (extra, contexts, breadcrumb data, tags).
_PERSONAL_KEY_ENDINGS = ("customer_id", "customer_ids", "user_id", "userid", "line_user_id", "line_user_ids", "to",
                         "email", "phone", "display_name", "username", "first_name", "last_name",
                         "authorization", "cookie", "signature", "token", "body",
                         "payload", "data", "params")


def _personal_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_").endswith(_PERSONAL_KEY_ENDINGS)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return text_scrub(value)
    if isinstance(value, dict):
        return {k: (FILTERED if _personal_key(k) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def _request_scrub(request: dict, transaction: str | None) -> dict:
    headers = request.get("headers") or {}
    kept = {"method": request.get("method")}
    kept["headers"] = {k: v for k, v in headers.items() if k.lower() in _SAFE_HEADERS}
    # The path can name a customer (/api/loyalty/customers/c-1): the route the transaction is named after
    # says which view without the IDs.
    if transaction:
        kept["url"] = transaction
    return kept


def _frames_scrub(exception: dict) -> None:
    for value in exception.get("values") or []:
        if "value" in value and isinstance(value["value"], str):
            value["value"] = text_scrub(value["value"])
        for frame in (value.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)


def before_send(event: dict, hint: dict | None = None) -> dict:
    """Sentry's before_send: the event without bodies, secrets, customer IDs or LINE IDs. Pure (a copy)."""
    event = copy.deepcopy(event)
    if "request" in event:
        event["request"] = _request_scrub(event["request"], event.get("transaction"))
    event.pop("user", None)
    if "exception" in event:
        _frames_scrub(event["exception"])
    if "threads" in event:
        for thread in (event["threads"] or {}).get("values") or []:
            for frame in (thread.get("stacktrace") or {}).get("frames") or []:
                frame.pop("vars", None)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        event["logentry"] = {"message": text_scrub(str(logentry.get("message", ""))),
                             "params": [FILTERED for _ in logentry.get("params") or []],
                             **({"formatted": text_scrub(logentry["formatted"])} if "formatted" in logentry
                                else {})}
    for key in ("extra", "contexts", "tags", "breadcrumbs", "message", "spans"):  # spans: outbound URLs, SQL
        if key in event:
            event[key] = _scrub(event[key])
    return event


def sentry_init(*, dsn: str, environment: str = "", release: str = "", traces_sample_rate: float = 0.0) -> bool:
    """Start the SDK when a DSN is set (web and worker: both load settings). False, and nothing imported,
    without one."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn, environment=environment or None, release=release or None,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False, include_local_variables=False, max_request_body_size="never",
        before_send=before_send, before_send_transaction=before_send, traces_sample_rate=traces_sample_rate,
    )
    return True
