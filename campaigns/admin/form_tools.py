"""The campaign change form's helpers: the live estimate for a sample purchase and the filter pickers.

Two JSON endpoints under the campaign admin's URLs (`CampaignFormToolsMixin`), behind the admin login, CSRF
and the campaign view/change permission:

- `form/estimate/` (POST, JSON): the form's unsaved values and a sample purchase -> the points it would earn
  or why it earns none. Body: {"campaign": {"starts_at": ["2026-10-01", "00:00:00"], "ends_at": [...],
  "upper_limit": "", "user_filters": "<the textarea's JSON>", "payment_filters": "...", "rates": [{"stage_from":
  "10", "stage_to": "19", "rate": "1.0"}]}, "sample": {"amount": 10000, "channel": "mercari", "stage": 10,
  "card_status": 2, "payment_method": "mercard", "master_id": "shop-77" or "merchant_id": "m-77", "paid_at":
  ["2026-10-05", "12:00:00"] (optional)}}; answer:
  {"eligible", "points", "points_within_cap", "rate", "reason", "reason_text", "stage_name", "text", ...}, or
  400 {"error", "field"} naming the bad field (e.g. "payment_filters.merchant.shop_id"). The values pass the
  same validation as a save (`campaign_validate`) and are compiled into the same pure rule
  (`rules.CampaignRule`) that the estimate API, the settlement and the backtest evaluate: nothing here
  computes points on its own, so the form cannot promise what settlement will not grant.
- `form/merchants/` (GET): merchant masters by ID, name or merchant ID, for the merchant picker.

The pickers' other choices (card statuses, stages, payment methods, categories) are written into the page by
`FilterPickerWidget`; campaigns/static/campaigns/admin/*.js draw the pickers and query the estimate.
"""

from __future__ import annotations

import re
from datetime import datetime

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import selectors as loyalty_selectors
from mercari_ops.common.errors import ValidationFailed, error_body
from mercari_ops.common.formatting import points, yen
from mercari_ops.common.jsonsafe import json_loads_strict
from mercari_ops.common.schema import MAX_YEN, Int, Schema, Str

from .. import rules
from ..models import MerchantAlias, MerchantMaster
from ..selectors import DEFAULT_PAYMENT_METHOD
from ..services import campaign_validate

# Mercard statuses as the card system sends them (../shared/CONTRACTS.md, topic `card-status`).
CARD_STATUSES = {1: _("applied"), 2: _("screening done"), 3: _("initial setup done"), 9: _("closed")}
# Payment methods named by the bill lines' contract; the merchant master may know more (aliases per method).
PAYMENT_METHODS = ("mercard", "id", "apple_pay", "google_pay", "e_money_charge")
CHANNELS = {"mercari": _("on the marketplace (inner)"), "outside": _("outside the marketplace (outer)")}
REASON_TEXT = {
    rules.UNKNOWN_MERCHANT: _("the merchant is not in the merchant master"),
    rules.CARD_STATUS: _("the card status is not one of the campaign's card statuses"),
    rules.STAGE: _("the stage is outside the campaign's stages or has no rate"),
    rules.CHANNEL: _("the channel (marketplace or outside) does not qualify"),
    rules.MERCHANT: _("the merchant filter excludes this merchant"),
    rules.PAYMENT_METHOD: _("the payment method is not one of the campaign's payment methods"),
    rules.CATEGORY: _("the payment method or the merchant's category is excluded"),
    rules.NOT_POSITIVE: _("the amount is not positive"),
    rules.OUTSIDE_PERIOD: _("the payment is outside the campaign period"),
}
MERCHANT_SEARCH_LIMIT = 20
# The pickers' words, handed to the script with the choices (the script holds no text of its own).
PICKER_LABELS = {
    "card_status": _("Card status (any when none is ticked)"),
    "stage_min": _("Lowest stage"), "stage_max": _("Highest stage"), "any": _("any"),
    "channel": _("Channel"), "inner": _("Marketplace payments (inner)"), "outer": _("Outside payments (outer)"),
    "merchants": _("Merchant masters (all when none is chosen)"), "merchant_search": _("Search by ID or name"),
    "invert": _("All merchants except these"), "remove": _("remove"), "unknown_master": _("not in the master"),
    "payment_methods": _("Payment methods (any when none is ticked)"),
    "excluded_categories": _("Excluded categories and payment methods"),
    "json_invalid": _("The JSON is not valid; the picker shows its last valid value until it is."),
}

SAMPLE_SCHEMA = Schema({
    "amount": Int(min_value=-MAX_YEN, max_value=MAX_YEN),
    "channel": Str(max_length=16, choices=tuple(CHANNELS)),
    "stage": Int(min_value=0, max_value=32767),
    "card_status": Int(min_value=0, max_value=32767, required=False, nullable=True),
    "payment_method": Str(max_length=32, required=False, nullable=True),
    "merchant_id": Str(max_length=64, required=False, nullable=True),  # as on bill lines (aliases)
    "master_id": Str(max_length=64, required=False, nullable=True),  # a merchant master picked in the form
})


# --- reading the form's unsaved values ---------------------------------------------------------------------


def _moment(value, field: str) -> datetime | None:
    """As the admin form reads it: [date, time] from the split widget (local time, localised formats) or a
    single date-time string; empty = missing (campaign_validate then says it is required)."""
    try:
        if isinstance(value, list):
            return forms.SplitDateTimeField(required=False).clean(value)
        if value in (None, ""):
            return None
        if isinstance(value, str):
            return forms.DateTimeField().clean(value)
    except ValidationError:
        pass
    raise ValidationFailed(gettext("%(field)s is not a valid date and time") % {"field": field}, field)


def _json_object(value, field: str):
    """A filter as typed in its textarea (a JSON string) or already parsed; the rules validate its shape."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return {}
    return json_loads_strict(value, field=field, prefix=field)  # its errors name the field ("... is not valid JSON")


_WHOLE = re.compile(r"-?[0-9]{1,12}")


def _whole(value, field: str, *, blank_ok: bool = False) -> int | None:
    if isinstance(value, str):
        value = value.strip()
        if value == "" and blank_ok:
            return None
        if _WHOLE.fullmatch(value):
            value = int(value)
    if value is None and blank_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(gettext("%(field)s must be a whole number") % {"field": field}, field)
    return value


def campaign_rule_from_form(values: dict) -> rules.CampaignRule:
    """The unsaved campaign as the pure rule settlement would evaluate; ValidationFailed names the bad field."""
    if not isinstance(values, dict):
        raise ValidationFailed(gettext("campaign must be an object"), "campaign")
    raw_rates = values.get("rates") or []
    if not isinstance(raw_rates, list) or not all(isinstance(r, dict) for r in raw_rates):
        raise ValidationFailed(gettext("rates must be a list of {stage_from, stage_to, rate}"), "rates")
    rates = [(_whole(r.get("stage_from"), f"rates.{i}.stage_from"), _whole(r.get("stage_to"), f"rates.{i}.stage_to"),
              r.get("rate")) for i, r in enumerate(raw_rates)]
    starts_at = _moment(values.get("starts_at"), "starts_at")
    ends_at = _moment(values.get("ends_at"), "ends_at")
    user_filters = _json_object(values.get("user_filters"), "user_filters")
    payment_filters = _json_object(values.get("payment_filters"), "payment_filters")
    upper_limit = _whole(values.get("upper_limit"), "upper_limit", blank_ok=True)
    campaign_validate(name=values.get("name") or "(unsaved)", starts_at=starts_at, ends_at=ends_at,
                      user_filters=user_filters, payment_filters=payment_filters, upper_limit=upper_limit,
                      rates=rates)
    return rules.CampaignRule.build(id=0, version=0, name=values.get("name") or "", starts_at=starts_at,
                                    ends_at=ends_at, upper_limit=upper_limit, user_filters=user_filters,
                                    payment_filters=payment_filters, rates=rates)


def _merchant_of(sample: dict, method: str) -> rules.MerchantInfo | None | str:
    """The sample's merchant as the rules see it; UNKNOWN_MERCHANT when named but not in the master."""
    if sample.get("merchant_id"):
        aliases = MerchantAlias.objects.filter(merchant_id=sample["merchant_id"]).values_list(
            "merchant_id", "payment_method", "master__master_id", "master__is_marketplace", "master__category")
        # the directory's own precedence: an alias for this payment method wins over a method-less one
        directory = rules.MerchantDirectory((merchant_id, alias_method, rules.MerchantInfo(*info))
                                            for merchant_id, alias_method, *info in aliases)
        return directory.lookup(sample["merchant_id"], method) or rules.UNKNOWN_MERCHANT
    if sample.get("master_id"):
        master = MerchantMaster.objects.filter(master_id=sample["master_id"]).values_list(
            "master_id", "is_marketplace", "category").first()
        return rules.MerchantInfo(*master) if master else rules.UNKNOWN_MERCHANT
    return None


def sample_estimate(*, campaign: dict, sample: dict) -> dict:
    """What the sample purchase earns under the unsaved campaign (the estimate API's answer for a customer of
    that stage and card status while the campaign is active), plus what the cap leaves of it. With `paid_at`
    the purchase is also checked against the period, as settlement checks each bill line."""
    rule = campaign_rule_from_form(campaign)
    paid_at = _moment(sample.get("paid_at"), "sample.paid_at") if isinstance(sample, dict) else None
    sample = SAMPLE_SCHEMA.clean(sample, "sample")
    method = sample.get("payment_method") or DEFAULT_PAYMENT_METHOD
    stage, amount = sample["stage"], sample["amount"]
    stage_name = loyalty_selectors.rules_active().name(stage)
    merchant = _merchant_of(sample, method)
    outcome = merchant if isinstance(merchant, str) else rule.evaluate(
        stage=stage, card_status=sample.get("card_status"), amount=amount, channel=sample["channel"],
        merchant=merchant, payment_method=method, paid_at=paid_at)
    answer = {"amount": amount, "stage": stage, "stage_name": stage_name, "upper_limit": rule.upper_limit}
    if isinstance(outcome, str):
        reason_text = str(REASON_TEXT.get(outcome, outcome))
        return {**answer, "eligible": False, "points": 0, "points_within_cap": 0, "rate": None, "reason": outcome,
                "reason_text": reason_text, "text": f"{yen(amount)} → {points(0)}: {reason_text}"}
    within_cap = rules.points_calculate(amount=amount, rate_tenths=outcome.rate_tenths, cap_left=rule.upper_limit)
    text = f"{yen(amount)} → {points(outcome.points)} ({outcome.rate}%, {gettext('stage')} {stage_name})"
    if within_cap != outcome.points:
        text += " " + gettext("(at most %(cap)s per customer for the whole campaign)") % {
            "cap": points(rule.upper_limit)}
    return {**answer, "eligible": True, "points": outcome.points, "points_within_cap": within_cap,
            "rate": outcome.rate, "reason": None, "reason_text": "", "text": text}


# --- choices for the pickers ----------------------------------------------------------------------------------


def merchant_masters_search(*, query: str = "", ids: list[str] | None = None,
                            limit: int = MERCHANT_SEARCH_LIMIT) -> list[dict]:
    """Masters whose ID or name contains `query` or that a merchant ID of the bills names; or those of `ids`."""
    masters = MerchantMaster.objects.all()
    if ids is not None:
        masters = masters.filter(master_id__in=ids[:limit])
    elif query:
        masters = masters.filter(Q(master_id__icontains=query) | Q(name__icontains=query)
                                 | Q(pk__in=MerchantAlias.objects.filter(merchant_id=query).values("master_id")))
    return [{"id": master_id, "name": name, "is_marketplace": is_marketplace, "category": category}
            for master_id, name, is_marketplace, category
            in masters.order_by("master_id").values_list("master_id", "name", "is_marketplace", "category")[:limit]]


def filter_choices() -> dict:
    """Everything the pickers offer besides merchants (payment methods and categories the master holds too)."""
    methods = list(PAYMENT_METHODS)
    for method in MerchantAlias.objects.exclude(payment_method="").order_by().values_list(
            "payment_method", flat=True).distinct()[:50]:
        if method not in methods:
            methods.append(method)
    categories = sorted(set(MerchantMaster.objects.exclude(category="").order_by().values_list(
        "category", flat=True).distinct()[:100]) | set(methods))
    return {
        # the contract's statuses only: a DISTINCT over every card holder's row would cost a scan per page
        "card_statuses": [{"value": value, "label": str(label)} for value, label in sorted(CARD_STATUSES.items())],
        "stages": [{"value": rule.stage, "label": rule.name} for rule in loyalty_selectors.rules_active().stages],
        "payment_methods": methods,
        "categories": categories,
        "channels": [{"value": value, "label": str(label)} for value, label in CHANNELS.items()],
    }


class FilterPickerWidget(forms.Textarea):
    """The JSON textarea, still the value that is saved, with a picker the script draws beside it."""

    template_name = "admin/campaigns/campaign/form_filter_picker.html"

    def __init__(self, kind: str, attrs: dict | None = None):
        super().__init__(attrs={"rows": 6, "cols": 80, **(attrs or {})})
        self.kind = kind

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        choices = {**filter_choices(), "labels": {key: str(text) for key, text in PICKER_LABELS.items()}}
        context["widget"].update(kind=self.kind, choices=choices,
                                 merchant_url=reverse("admin:campaigns_campaign_form_merchants"))
        return context


# --- the endpoints ------------------------------------------------------------------------------------------------


def _refused() -> JsonResponse:
    return JsonResponse(error_body(gettext("You may not view campaigns."), None), status=403)


class CampaignFormToolsMixin:
    """Mixed into CampaignAdmin: the URLs and views above (`form_tool_urls()` goes before the admin's own)."""

    def form_tool_urls(self) -> list:
        return [
            path("form/estimate/", self.admin_site.admin_view(self.form_estimate_view),
                 name="campaigns_campaign_form_estimate"),
            path("form/merchants/", self.admin_site.admin_view(self.form_merchants_view),
                 name="campaigns_campaign_form_merchants"),
        ]

    def form_estimate_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_or_change_permission(request):
            return _refused()
        if request.method != "POST":
            return JsonResponse(error_body("POST the form's values as JSON", None), status=405)
        try:
            body = json_loads_strict(request.body)
            if not isinstance(body, dict):
                raise ValidationFailed("the body must be a JSON object", None)
            return JsonResponse(sample_estimate(campaign=body.get("campaign"), sample=body.get("sample")))
        except ValidationFailed as exc:
            return JsonResponse(error_body(exc.message, exc.field), status=400)

    def form_merchants_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_or_change_permission(request):
            return _refused()
        ids = request.GET.get("ids")
        results = merchant_masters_search(query=request.GET.get("q", "").strip()[:64],
                                          ids=[i for i in ids.split(",") if i] if ids is not None else None)
        return JsonResponse({"results": results})

    @admin.display(description=_("estimate"))
    def sample_estimate_panel(self, obj=None) -> str:
        """The sample purchase's inputs and the answer box (a read-only field of the change form)."""
        return render_to_string("admin/campaigns/campaign/form_estimate.html", {
            "url": reverse("admin:campaigns_campaign_form_estimate"), "choices": filter_choices(),
            "merchant_url": reverse("admin:campaigns_campaign_form_merchants"),
        })

