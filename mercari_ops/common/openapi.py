"""What the OpenAPI schema (GET /api/schema/) cannot learn from the DRF views, added after generation.

- `Error`, the one error body of the project ({"error", "field"}, mercari_ops/common/errors.py).
- 401 on every operation that takes `Authorization: Token <key>` (DRF answers it before the view runs),
  and 400 on every operation with a JSON body (a body that does not parse never reaches the view).
- The two plain Django views other systems call (CONTRACTS.md sections 1 and 2): `POST /pubsub/push/{topic}`
  and `POST /line/braze/webhook`, each with its own bearer scheme.

A postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) rather than annotations on those views:
they are hot paths written without DRF, and this keeps them so.
"""

from __future__ import annotations

import copy

from mercari_ops.inbox.registry import topic_names

ERROR_REF = {"$ref": "#/components/schemas/Error"}

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error the project answers: what is wrong, and the dotted field it is about (or null).",
    "properties": {"error": {"type": "string"}, "field": {"type": "string", "nullable": True}},
    "required": ["error", "field"],
}


def error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


_PUSH_MESSAGE = {
    "type": "object",
    "properties": {
        "data": {"type": "string", "format": "byte", "description": "Base64 of the event JSON"},
        "messageId": {"type": "string"}, "message_id": {"type": "string"},
        "publishTime": {"type": "string"}, "publish_time": {"type": "string"},
        "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
        "orderingKey": {"type": "string"},
    },
    "required": ["data"],
}

PUBSUB_PUSH = {
    "post": {
        "operationId": "pubsub_push",
        "summary": "A Pub/Sub push subscription delivers one event of `topic` (CONTRACTS.md section 1)",
        "description": (
            "The standard wrapped push body below, or, for a subscription with \"no wrapper\", the event JSON "
            "itself as the body (with \"write metadata\", the message ID, publish time and attributes arrive as "
            "`x-goog-pubsub-*` and plain headers). Messages up to 10 MB (PUBSUB_PUSH_MAX_BODY_BYTES). "
            "Authenticated by Google's OIDC ID token (PUBSUB_AUTH=oidc) or the static PUBSUB_PUSH_TOKEN. "
            "204 once the event is durably recorded (processed, waiting for another event, or a duplicate by "
            "its event_id). An event that can never succeed (bad base64, bad JSON, a missing or wrongly typed "
            "field, an unknown topic) answers 400 and is kept as a dead letter an operator can fix and replay."
        ),
        "tags": ["pubsub"],
        "parameters": [{"name": "topic", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "loyalty-activity, card-status, card-bill-settled, payment-events, ..."}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"message": _PUSH_MESSAGE, "subscription": {"type": "string"},
                           "deliveryAttempt": {"type": "integer"}},
            "required": ["message"],
        }}}},
        "security": [{"pubsubBearer": []}],
        "responses": {
            "204": {"description": "Recorded (or a duplicate): Pub/Sub acks"},
            "400": error_response("Can never succeed; kept as a dead letter"),
            "401": error_response("Missing or wrong bearer token; nothing stored"),
            "405": {"description": "Only POST"},
            "503": error_response("Database unreachable: Pub/Sub redelivers"),
        },
    },
}

BRAZE_WEBHOOK = {
    "post": {
        "operationId": "line_braze_webhook",
        "summary": "Braze asks for one LINE message to one customer (CONTRACTS.md section 2)",
        "description": (
            "202 when queued for delivery, also for a repeat of the same (dispatch_id, user_id), delivered "
            "once; 202 with {\"status\": \"skipped\", \"reason\": \"not_linked\"} when the customer has no "
            "linked LINE account. 400 for a bad body or an unknown template."
        ),
        "tags": ["line"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {
                "user_id": {"type": "string", "minLength": 1, "maxLength": 64},
                "dispatch_id": {"type": "string", "minLength": 1, "maxLength": 200},
                "campaign_id": {"type": "string", "minLength": 1, "maxLength": 200},
                "template": {"type": "string", "minLength": 1, "maxLength": 64},
                "params": {"type": "object"},
            },
            "required": ["user_id", "dispatch_id", "template"],
        }}}},
        "security": [{"brazeBearer": []}],
        "responses": {
            "202": {"description": "Accepted (queued), a repeat, or skipped",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
                        "required": ["status"],
                    }}}},
            "400": error_response("Bad body or unknown template"),
            "401": error_response("Missing or wrong bearer token (BRAZE_WEBHOOK_TOKEN)"),
            "405": {"description": "Only POST"},
            "503": error_response("Database unreachable: Braze retries"),
        },
    },
}

SECURITY_SCHEMES = {
    "pubsubBearer": {"type": "http", "scheme": "bearer",
                     "description": "Google OIDC ID token of the push subscription (or PUBSUB_PUSH_TOKEN)"},
    "brazeBearer": {"type": "http", "scheme": "bearer", "description": "BRAZE_WEBHOOK_TOKEN"},
}

STRINGS_NOTE = (
    "Errors are {\"error\": ..., \"field\": ...} (field: the dotted name of the offending field, or null). "
    "No string may contain NUL (U+0000) or a lone surrogate: PostgreSQL cannot store them, so they are "
    "refused with 400 naming the field."
)

_METHODS = ("get", "put", "post", "patch", "delete")


def _takes_token(operation: dict) -> bool:
    return any(requirement for requirement in operation.get("security", []))


def postprocess_schema(result, generator, request, public):
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method in _METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            if _takes_token(operation):
                responses.setdefault("401", error_response(
                    "Missing or unknown `Authorization: Token <key>` (WWW-Authenticate: Token)"))
            if "requestBody" in operation:
                # every body this API takes is required (drf-spectacular leaves a raw-schema body optional)
                operation["requestBody"]["required"] = True
                responses.setdefault("400", error_response("The body is not JSON, or a field is wrong"))
    paths = result.setdefault("paths", {})
    push = copy.deepcopy(PUBSUB_PUSH)
    push["post"]["parameters"][0]["schema"]["enum"] = topic_names()
    paths["/pubsub/push/{topic}"] = push
    paths["/line/braze/webhook"] = BRAZE_WEBHOOK
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    info = result.setdefault("info", {})
    info["description"] = (info.get("description", "") + " " + STRINGS_NOTE).strip()
    return result
