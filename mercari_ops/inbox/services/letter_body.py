"""A dead letter's body as an operator reads it: the Pub/Sub envelope opened, the event as JSON.

Pure functions, no database: the admin shows `letter_body_decode`'s event and attributes, the
operator edits them, and `letter_body_encode` writes them back into the same envelope (base64
`message.data`), so the replay goes through the push path exactly as Pub/Sub would send it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from dataclasses import dataclass

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.jsonsafe import json_loads_strict, text_storable


@dataclass(frozen=True)
class DecodedBody:
    envelope: dict
    event_text: str  # message.data decoded, as sent (it may be the very thing that is not valid JSON)
    event: dict | None  # the event, when event_text is a JSON object
    attributes: dict


def _parse(text: str):
    try:
        return json_loads_strict(text, field="body")
    except ValidationFailed:
        return None


def letter_body_decode(raw_body: str) -> DecodedBody | None:
    """The envelope opened, or None when the body is no Pub/Sub envelope whose data is UTF-8 text."""
    envelope = _parse(raw_body)
    if not isinstance(envelope, dict) or "message" not in envelope or "subscription" not in envelope:
        return None
    message = envelope["message"]
    if not isinstance(message, dict):
        return None
    data = message.get("data", "")
    if not isinstance(data, str):
        return None
    try:
        event_text = base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    event = _parse(event_text) if event_text else None
    attributes = message.get("attributes")
    return DecodedBody(envelope=envelope, event_text=event_text, event=event if isinstance(event, dict) else None,
                       attributes=attributes if isinstance(attributes, dict) else {})


def letter_body_encode(decoded: DecodedBody, *, event: dict, attributes: dict | None = None) -> str:
    """The same envelope with `event` as its data (and `attributes`, when given; {} removes them)."""
    envelope = copy.deepcopy(decoded.envelope)
    message = envelope["message"]
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    message["data"] = base64.b64encode(data).decode("ascii")
    if attributes is not None:
        if attributes:
            message["attributes"] = attributes
        else:
            message.pop("attributes", None)
    return json.dumps(envelope, ensure_ascii=False)


def letter_event_id(raw_body: str) -> str:
    """The event_id of a body (wrapped or unwrapped) when it decodes that far, else ""."""
    decoded = letter_body_decode(raw_body)
    if decoded is not None:
        event = decoded.event
    else:
        event = _parse(raw_body)
    value = event.get("event_id") if isinstance(event, dict) else None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return text_storable(str(value))[:128]
    return ""


def attributes_clean(attributes) -> dict:
    """Pub/Sub attributes are a map of strings to strings."""
    if not isinstance(attributes, dict):
        raise ValidationFailed("attributes must be a JSON object of strings", "attributes")
    for key, value in attributes.items():
        if not isinstance(value, str):
            raise ValidationFailed(f"attributes.{key} must be a string (Pub/Sub attributes are strings)",
                                   f"attributes.{key}")
    return attributes
