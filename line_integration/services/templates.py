"""Message templates: LINE message JSON with {placeholders}, validated against LINE's spec on save."""

from __future__ import annotations

import re
import time

import requests
from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext

from mercari_ops.common.audit import audit_record
from mercari_ops.common.errors import ValidationFailed

from .. import spec
from ..models import MessageTemplate

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_names_cache: dict = {"at": 0.0, "names": frozenset()}
NAMES_TTL = 5.0


class RenderError(Exception):
    pass


def template_names() -> frozenset[str]:
    """Active template names, cached a few seconds per process (the Braze hot path)."""
    if time.monotonic() - _names_cache["at"] > NAMES_TTL:
        _names_cache["names"] = frozenset(MessageTemplate.objects.filter(active=True).values_list("name", flat=True))
        _names_cache["at"] = time.monotonic()
    return _names_cache["names"]


def template_names_clear() -> None:
    _names_cache["at"] = 0.0


def _lookup(context: dict, dotted: str):
    value = context
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise RenderError(f"missing value for placeholder {{{dotted}}}")
    return value


def _fill(node, context: dict):
    if isinstance(node, str):
        return PLACEHOLDER.sub(lambda m: str(_lookup(context, m.group(1))), node)
    if isinstance(node, list):
        return [_fill(item, context) for item in node]
    if isinstance(node, dict):
        return {key: _fill(value, context) for key, value in node.items()}
    return node


def _sample_context(messages) -> dict:
    """A context that satisfies every placeholder (for validating a template on save)."""
    context: dict = {}

    def walk(node):
        if isinstance(node, str):
            for dotted in PLACEHOLDER.findall(node):
                target = context
                parts = dotted.split(".")
                for part in parts[:-1]:
                    target = target.setdefault(part, {})
                    if not isinstance(target, dict):
                        return
                target.setdefault(parts[-1], "x")
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(messages)
    return context


def messages_validate(messages, field: str = "messages") -> None:
    if not isinstance(messages, list) or not messages:
        # gettext: the admin form shows it in the operator's language; the API runs in English (machine paths)
        raise ValidationFailed(gettext("must be a non-empty list of LINE message objects"), field)
    rendered = _fill(messages, _sample_context(messages))
    errors = spec.messages_errors(rendered)
    if errors:
        first = errors[0]
        where = first["property"].replace("messages", field, 1) if first["property"] else field
        raise ValidationFailed(gettext("not a valid LINE message: %(error)s") % {"error": first["message"]}, where)


def template_save(*, name: str, messages: list, description: str = "", enrich_path: str = "",
                  fallback_messages: list | None = None, active: bool = True, by: str = "",
                  request=None) -> MessageTemplate:
    """Create or update a template after validating it (rendered with sample values) against the spec.

    What customers receive: every change that alters the template goes to the audit log."""
    messages_validate(messages, "messages")
    if fallback_messages is not None:
        messages_validate(fallback_messages, "fallback_messages")
    fields = {"messages": messages, "description": description, "enrich_path": enrich_path,
              "fallback_messages": fallback_messages, "active": active}
    with transaction.atomic():
        old = MessageTemplate.objects.select_for_update().filter(name=name).first()
        before = None if old is None else {field: getattr(old, field) for field in fields}
        template, created = MessageTemplate.objects.update_or_create(name=name, defaults=fields)
        if before != fields:
            audit_record(action="message_template.create" if created else "message_template.update",
                         target=template, before=before, after=fields, request=request,
                         actor=None if request else (by or None))
    template_names_clear()
    return template


def _enrich(template: MessageTemplate, params: dict) -> dict | None:
    if not template.enrich_path or not settings.ENRICH_URL:
        return None
    path = _fill(template.enrich_path, params)
    try:
        response = requests.get(settings.ENRICH_URL.rstrip("/") + path, timeout=settings.ENRICH_TIMEOUT_SECONDS)
        response.raise_for_status()
        data = response.json()
        return data if isinstance(data, dict) else {"value": data}
    except (requests.RequestException, ValueError):
        return {}


def template_render(*, template: MessageTemplate, params: dict) -> list[dict]:
    """Braze params (and enrichment data under `enrich`) -> LINE message objects."""
    context = dict(params)
    enriched = _enrich(template, params)
    if enriched == {}:  # enrichment failed or timed out: the fallback, without {enrich.*}
        if template.fallback_messages:
            return _fill(template.fallback_messages, context)
        raise RenderError("enrichment failed and the template has no fallback")
    if enriched is not None:
        context["enrich"] = enriched
    try:
        return _fill(template.messages, context)
    except RenderError:
        if template.fallback_messages and enriched is not None:
            return _fill(template.fallback_messages, params)
        raise
