"""The operators' inbox pages: ages and age buckets in the lists, and the dead letter's page.

A dead letter whose body is a Pub/Sub envelope is shown as its decoded event (and attributes) in
editable JSON; saving checks the event against the topic's schema and writes it back into the
envelope (services.dead_letter_body_edit). Any other body stays editable as raw text. Replay and
Discard are buttons on the page (POST, change permission), calling the same services as the list
actions.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.jsonsafe import json_loads_strict

from . import services
from .models import DeadLetter
from .services.letter_body import letter_body_decode


def age_label(at: datetime | None, now: datetime | None = None) -> str:
    """'3 h ago': the coarsest unit that is at least 1, whole units (an operator's glance, not a timestamp)."""
    if at is None:
        return "\u2014"
    seconds = max(0, int(((now or timezone.now()) - at).total_seconds()))
    if seconds >= 86400:
        n = seconds // 86400
        return ngettext("%(n)d day ago", "%(n)d days ago", n) % {"n": n}
    if seconds >= 3600:
        n = seconds // 3600
        return ngettext("%(n)d h ago", "%(n)d h ago", n) % {"n": n}
    if seconds >= 60:
        n = seconds // 60
        return ngettext("%(n)d min ago", "%(n)d min ago", n) % {"n": n}
    return ngettext("%(n)d s ago", "%(n)d s ago", seconds) % {"n": seconds}


class AgeListFilter(admin.SimpleListFilter):
    """Buckets of time since the row was received (the lists' "age" column)."""

    title = _("age")
    parameter_name = "age"
    field = "received_at"
    BUCKETS = {
        "1h": (None, timedelta(hours=1)),
        "24h": (timedelta(hours=1), timedelta(hours=24)),
        "7d": (timedelta(hours=24), timedelta(days=7)),
        "older": (timedelta(days=7), None),
    }

    def lookups(self, request, model_admin):
        return [("1h", _("under 1 hour")), ("24h", _("1 to 24 hours")), ("7d", _("1 to 7 days")),
                ("older", _("over 7 days"))]

    def queryset(self, request, queryset):
        bucket = self.BUCKETS.get(self.value() or "")
        if bucket is None:
            return queryset
        now = timezone.now()
        at_least, under = bucket
        if at_least is not None:
            queryset = queryset.filter(**{f"{self.field}__lte": now - at_least})
        if under is not None:
            queryset = queryset.filter(**{f"{self.field}__gt": now - under})
        return queryset


class AgeColumnMixin:
    @admin.display(description=_("age"), ordering="received_at")
    def age(self, obj):
        return format_html('<span title="{}">{}</span>', timezone.localtime(obj.received_at).isoformat(),
                           age_label(obj.received_at))


def _json_text(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


class DeadLetterForm(forms.ModelForm):
    """The letter's editable part: the decoded event and attributes, or (no envelope) the raw body."""

    event_json = forms.CharField(
        label=_("event (decoded from message.data)"), required=True,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 100, "style": "font-family: monospace"}),
        help_text=_("The event as JSON. Saving checks it against the topic's schema and writes it back into "
                    "the Pub/Sub envelope (base64); then press Replay."))
    attributes_json = forms.CharField(
        label=_("attributes (message.attributes)"), required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 100, "style": "font-family: monospace"}),
        help_text=_("A JSON object of strings; empty for none."))

    class Meta:
        model = DeadLetter
        fields = ("raw_body",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decoded = letter_body_decode(self.instance.raw_body) if self.instance.pk else None
        if self.decoded is None:
            self.fields.pop("event_json", None)
            self.fields.pop("attributes_json", None)
            return
        self.fields.pop("raw_body", None)
        event = self.decoded.event
        self.fields["event_json"].initial = _json_text(event) if event is not None else self.decoded.event_text
        self.fields["attributes_json"].initial = _json_text(self.decoded.attributes) if self.decoded.attributes \
            else ""

    @staticmethod
    def _parse(text: str, field: str):
        try:
            return json_loads_strict(text, field=field)
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_event_json(self):
        event = self._parse(self.cleaned_data["event_json"], "event")
        if not isinstance(event, dict):
            raise forms.ValidationError(_("The event must be a JSON object."))
        return event

    def clean_attributes_json(self):
        text = self.cleaned_data["attributes_json"].strip()
        return self._parse(text, "attributes") if text else {}

    def clean(self):
        cleaned = super().clean()
        if self.decoded is not None and not self.errors:
            try:
                services.dead_letter_event_check(topic_name=self.instance.topic, event=cleaned["event_json"],
                                                 attributes=cleaned["attributes_json"])
            except ValidationFailed as exc:
                # The schema's message already names the field ("lines.0.amount must be ..."): shown once.
                target = "attributes_json" if (exc.field or "").startswith("attributes") else "event_json"
                self.add_error(target, exc.message)
        return cleaned


class DeadLetterPageMixin:
    """For DeadLetterAdmin: the decoded-event form, and Replay / Discard buttons on the change page."""

    form = DeadLetterForm
    change_form_template = "admin/inbox/deadletter/change_form.html"
    _info_fields = ("topic", "event_id", "status", "error", "field", "times_received", "received_at",
                    "last_received_at", "resolved_at", "resolved_by", "body_sha256")

    def get_fields(self, request, obj=None):
        if obj is None:
            return self._info_fields
        if letter_body_decode(obj.raw_body) is None:
            editable = ("raw_body",) if self._editable(request, obj) else ("raw_body_pretty",)
            return self._info_fields[:5] + editable + self._info_fields[5:]
        editable = ("event_json", "attributes_json") if self._editable(request, obj) else ("event_pretty",)
        return self._info_fields[:5] + editable + ("raw_body_pretty",) + self._info_fields[5:]

    def get_readonly_fields(self, request, obj=None):
        return self._info_fields + ("raw_body_pretty", "event_pretty")

    def has_change_permission(self, request, obj=None):
        # A replayed or discarded letter is a record: its page is read-only.
        if obj is not None and obj.status != DeadLetter.Status.OPEN:
            return False
        return super().has_change_permission(request, obj)

    def _editable(self, request, obj) -> bool:
        return obj.status == DeadLetter.Status.OPEN and self.has_change_permission(request, obj)

    @admin.display(description=_("raw body (as it will be replayed)"))
    def raw_body_pretty(self, obj):
        return format_html('<pre style="white-space:pre-wrap;word-break:break-all;max-width:60em">{}</pre>',
                           obj.raw_body)

    @admin.display(description=_("event (decoded from message.data)"))
    def event_pretty(self, obj):
        decoded = letter_body_decode(obj.raw_body)
        text = "" if decoded is None else (_json_text(decoded.event) if decoded.event is not None
                                           else decoded.event_text)
        return format_html('<pre style="white-space:pre-wrap;max-width:60em">{}</pre>', text)

    def save_model(self, request, obj, form, change):
        by = request.user.get_username()
        if getattr(form, "decoded", None) is not None:
            services.dead_letter_body_edit(letter_pk=obj.pk, event=form.cleaned_data["event_json"],
                                           attributes=form.cleaned_data["attributes_json"], by=by, request=request)
        elif "raw_body" in form.changed_data:
            services.dead_letter_raw_body_edit(letter_pk=obj.pk, raw_body=form.cleaned_data["raw_body"], by=by,
                                               request=request)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/replay/", wrap(require_POST(self.replay_one_view)),
                 name=self._url_name("replay_one")),
            path("<path:object_id>/discard/", wrap(require_POST(self.discard_one_view)),
                 name=self._url_name("discard_one")),
        ] + super().get_urls()

    def _url_name(self, view: str) -> str:
        # Per model: history's payment dead letters are a proxy of DeadLetter with this same page.
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def _button_target(self, request, object_id) -> DeadLetter:
        letter = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request):  # the model's: a closed letter answers a message
            raise PermissionDenied
        return letter

    def _back(self, letter) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(f"admin:{self._url_name('change')}", args=[letter.pk],
                                            current_app=self.admin_site.name))

    def replay_one_view(self, request, object_id):
        letter = self._button_target(request, object_id)
        if letter.status != DeadLetter.Status.OPEN:
            self.message_user(request, _("This dead letter is already closed."), messages.WARNING)
            return self._back(letter)
        result = services.dead_letter_replay(letter_pk=letter.pk, by=request.user.get_username(), request=request)
        if result.outcome.value == "dead":
            self.message_user(request, _("Still failing: %(error)s") % {"error": result.error}, messages.ERROR)
        else:
            self.message_user(request, _("Replayed: %(outcome)s (event %(event_id)s).")
                              % {"outcome": result.outcome.value, "event_id": result.event_id}, messages.SUCCESS)
        return self._back(letter)

    def discard_one_view(self, request, object_id):
        letter = self._button_target(request, object_id)
        if services.dead_letter_discard(letter_pk=letter.pk, by=request.user.get_username(), request=request):
            self.message_user(request, _("Discarded."), messages.WARNING)
        else:
            self.message_user(request, _("This dead letter is already closed."), messages.WARNING)
        return self._back(letter)

    def response_change(self, request, obj):
        if "_saveandreplay" in request.POST:
            return self.replay_one_view(request, str(obj.pk))
        return super().response_change(request, obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self._editable(request, obj):
            context["letter_buttons"] = {
                view: reverse(f"admin:{self._url_name(view)}", args=[obj.pk], current_app=self.admin_site.name)
                for view in ("replay_one", "discard_one")}
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)
