"""Issue 18, point 1: one masking rule on every admin page.

The walker visits every registered ModelAdmin (so a new one is covered without editing this file): its
changelist, the change page of one object, its own views (get_urls), and changelists with lookups, searches
and orderings on every column that holds a known raw personal value. A marketer must see no raw value and
get no answer that depends on one; an operator sees the raw values where they belong.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from datetime import timedelta
from urllib.parse import quote, quote_plus

import pytest
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import models
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, URLPattern, reverse
from django.utils import timezone

from mercari_ops.common.roles import MARKETERS, OPERATORS, can_see_pii

pytestmark = pytest.mark.django_db

RAW_LINE_ID = "U" + "5e1f" * 8  # LINE user IDs: "U" + 32 hex
RAW_NAME = "Hanako Himitsuyama"
RAW_MERCHANT = "m-privately-visited-shop"
RAW_AMOUNT = 7654321
# The same question about a value nobody has: a refused lookup answers both alike.
WRONG = {RAW_LINE_ID: "U" + "5e1f" * 7 + "0000", RAW_NAME: "Hanako Himitsuyamx",
         RAW_MERCHANT: "m-privately-visited-shox", RAW_AMOUNT: RAW_AMOUNT + 1}
STANDARD_VIEWS = ("changelist", "add", "history", "delete", "change")
CSRF = re.compile(r'(name="csrfmiddlewaretoken" value=")[^"]+"|("csrfToken": ")[^"]+"')


def _seed_personal_rows() -> None:
    """Demo data in every app, plus rows carrying the raw values above in every place personal data lives."""
    from campaigns.models import (
        Bill,
        BillLine,
        Campaign,
        CampaignBacktest,
        CampaignReward,
        CustomerNotification,
        MerchantImportJob,
    )
    from history.canonical import TOPIC
    from history.models import PaymentEntry
    from line_integration.models import LineLinkageUser, LineRequest, LineUser, OutboundMessage, WebhookEvent
    from loyalty.models import Customer, MonthlyTotal, StageChange, StagePin
    from mercari_ops.inbox.models import DeadLetter, InboxEvent

    call_command("seed_demo", stdout=io.StringIO())
    now = timezone.now()
    LineUser.objects.create(line_user_id=RAW_LINE_ID, customer_id="c-priv-1", status=LineUser.Status.LINKED,
                            linked_at=now)
    LineLinkageUser.objects.create(line_id=RAW_LINE_ID, created=now, updated=now)
    WebhookEvent.objects.create(webhook_event_id="01PRIVACYWALK", event_type="follow", line_user_id=RAW_LINE_ID)
    OutboundMessage.objects.create(dispatch_id="privacy-walk", user_id="c-priv-1", line_user_id=RAW_LINE_ID,
                                   campaign_id="braze-privacy", template="saved_search_new_items",
                                   params={"name": RAW_NAME}, status=OutboundMessage.Status.FAILED,
                                   reason="LINE answered 400", created_at=now)
    LineRequest.objects.create(kind=LineRequest.Kind.PUSH, next_attempt_at=now, created_at=now,
                               body={"to": RAW_LINE_ID, "messages": [{"type": "text", "text": f"Hi {RAW_NAME}"}]})
    event = {"event_id": "privacy-walk-1", "line_user_id": RAW_LINE_ID, "name": RAW_NAME, "amount": RAW_AMOUNT}
    InboxEvent.objects.create(topic=TOPIC, event_id="privacy-walk-1", status=InboxEvent.Status.DEAD, payload=event,
                              last_error="parent never came")
    InboxEvent.objects.create(topic=TOPIC, event_id="privacy-walk-2", status=InboxEvent.Status.WAITING,
                              payload=event, waiting_on="pur-unknown")
    DeadLetter.objects.create(topic=TOPIC, raw_body=json.dumps(event), body_sha256="0" * 64, error="unknown type")
    PaymentEntry.objects.create(payment_id="pay-privacy-1", customer_id="c-priv-1", type="merpay.payment",
                                amount=RAW_AMOUNT, state="completed", state_at=now, occurred_at=now,
                                title=RAW_MERCHANT, attributes={"merchant_id": RAW_MERCHANT}, event_id="e-priv")
    campaign = Campaign.objects.order_by("pk").first()
    bill = Bill.objects.create(bill_id="bill-privacy-1", customer_id="c-priv-1", billing_month="2026-11",
                               settled_at=now)
    BillLine.objects.create(bill=bill, payment_id="pay-privacy-1", customer_id="c-priv-1", amount=RAW_AMOUNT,
                            merchant_id=RAW_MERCHANT, payment_method="mercard", channel="card", paid_at=now)
    CampaignReward.objects.create(campaign=campaign, campaign_version=campaign.version, customer_id="c-priv-1",
                                  payment_id="pay-privacy-1", bill=bill, rate="1.0", amount=RAW_AMOUNT, points=3,
                                  settled_at=now)
    CustomerNotification.objects.create(customer_id="c-priv-1", idempotency_key="privacy-walk",
                                        text=f"{RAW_NAME}, you earned 3 points")
    # Rows behind the admins' own views (a backtest's page, an import job's page) so the walk opens them.
    CampaignBacktest.objects.create(campaign=Campaign.objects.order_by("-pk").first(), month="2026-10")
    MerchantImportJob.objects.create(file_name="merchants.csv")
    customer = Customer.objects.create(customer_id="c-priv-1")
    MonthlyTotal.objects.create(customer=customer, kind="pay", month=now.date().replace(day=1), amount=RAW_AMOUNT,
                                count=3)
    StageChange.objects.create(customer=customer, from_stage=10, to_stage=20, from_rules_stage=10, to_rules_stage=20,
                               cause="rules", reason={"pay_amount": RAW_AMOUNT})
    StagePin.objects.create(customer=customer, floor=30, reason=f"complaint by {RAW_NAME}",
                            expires_at=now + timedelta(days=30), created_by="op")


def _staff(group: str) -> User:
    user = User.objects.create_user(f"{group}-walker", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def walk(client):
    _seed_personal_rows()
    marketer, operator = _staff(MARKETERS), _staff(OPERATORS)
    as_marketer, as_operator = Client(), Client()
    as_marketer.force_login(marketer)
    as_operator.force_login(operator)
    from line_integration.models import LineUser

    raw_values = {RAW_LINE_ID, RAW_NAME, RAW_MERCHANT, str(RAW_AMOUNT), f"{RAW_AMOUNT:,}"}
    raw_values |= set(LineUser.objects.values_list("line_user_id", flat=True))  # the demo's 300 LINE IDs too
    # Every role without the permission walks like the marketer (approvers, and any role added later).
    viewers = [(marketer, as_marketer)]
    for group in Group.objects.exclude(name__in=[MARKETERS, OPERATORS]).exclude(
            permissions__codename="view_personal_data"):
        user, viewer = _staff(group.name), Client()
        viewer.force_login(user)
        viewers.append((user, viewer))
    return {"marketer": marketer, "operator": operator, "as_marketer": as_marketer, "as_operator": as_operator,
            "raw": raw_values, "viewers": viewers}


def _leaks(content: bytes, raw_values) -> list[str]:
    text = content.decode(errors="replace")
    return [value for value in raw_values if value in text]


def _info(model) -> tuple[str, str]:
    return model._meta.app_label, model._meta.model_name


def _last_object(model, model_admin, user):
    request = RequestFactory().get("/")
    request.user = user
    return model_admin.get_queryset(request).order_by("-pk").first()


def _custom_views(model, model_admin, obj) -> list[str]:
    """URLs of the admin's own views (not Django's standard five), URL kwargs filled from the object."""
    urls = []
    for pattern in model_admin.get_urls():
        if not isinstance(pattern, URLPattern) or not pattern.name:
            continue
        if any(pattern.name == f"{'_'.join(_info(model))}_{view}" for view in STANDARD_VIEWS):
            continue
        kwargs = {name: _kwarg_value(name, model, obj) for name in pattern.pattern.converters}
        if None in kwargs.values():
            continue
        try:
            urls.append(reverse(f"admin:{pattern.name}", kwargs=kwargs))
        except NoReverseMatch:
            continue
    return urls


def _kwarg_value(name: str, model, obj):
    if obj is None:
        return None
    if name in ("pk", "object_id") or name == f"{model._meta.model_name}_id":
        return obj.pk
    if hasattr(obj, name) and not isinstance(getattr(type(obj), name, None), property):
        return getattr(obj, name)
    prefix = name.removesuffix("_id")
    for related in model._meta.related_objects:  # e.g. backtest_id of a campaign: one of its backtests
        if related.related_model._meta.model_name.endswith(prefix):
            child = related.related_model.objects.filter(**{related.field.name: obj}).first()
            return child.pk if child else None
    for other in admin.site._registry:  # e.g. job_id of the merchant import: a job of the same app
        if other._meta.app_label == model._meta.app_label and other._meta.model_name.endswith(prefix):
            row = other.objects.order_by("-pk").first()
            return row.pk if row else None
    return None


def _personal_columns(model, model_admin, user) -> list[tuple[str, object]]:
    """(lookup path, raw value) of every column of this admin's rows that holds one of our raw values:
    found from the data, so an admin that forgot to declare a field is walked too."""
    request = RequestFactory().get("/")
    request.user = user
    rows = list(model_admin.get_queryset(request).order_by("-pk")[:50])
    found = {}
    for field in model._meta.concrete_fields:
        for row in rows:
            value = field.value_from_object(row)
            if isinstance(field, models.JSONField) and isinstance(value, dict):
                for key, item in value.items():
                    if _raw_in(item) is not None:
                        found[f"{field.name}__{key}"] = _raw_in(item)
                value = json.dumps(value, ensure_ascii=False)  # and anywhere in the document
            if _raw_in(value) is not None:
                found[field.name] = _raw_in(value)
    return list(found.items())


def _raw_in(value):
    """The raw value this column value is, or (text) contains."""
    if _is_raw(value):
        return value
    if isinstance(value, str):
        return next((raw for raw in WRONG if isinstance(raw, str) and raw in value), None)
    return None


def _is_raw(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and value in WRONG


def _lookup_pairs(path: str, raw) -> list[tuple[str, str]]:
    """Query-string values asking about the raw value, each with the same question about a wrong value."""
    wrong = WRONG[raw]
    if isinstance(raw, int):
        return [(path, str(raw), str(wrong)), (f"{path}__gte", str(raw), str(wrong)), ("q", str(raw), str(wrong))]
    return [(path, raw, wrong), (f"{path}__startswith", raw[:-1], wrong[:-1]),
            (f"{path}__icontains", raw[2:-1], wrong[2:-1]), (f"{path}__in", raw, wrong), ("q", raw, wrong)]


def _normalized(response, asked: str = "") -> tuple[int, str]:
    """Status and page with the value asked about (echoed in the search box and links) and CSRF tokens blanked."""
    text = response.content.decode(errors="replace")
    if asked:
        for echo in (asked, quote_plus(asked), quote(asked)):
            text = text.replace(echo, "<asked>")
    return response.status_code, CSRF.sub("<csrf>", text)


def _results(response) -> str:
    match = re.search(r"<tbody>.*</tbody>", response.content.decode(errors="replace"), re.S)
    # Rows only; their links carry the query string back (`?_changelist_filters=o%3D1`).
    return re.sub(r'\?_changelist_filters=[^"]*', "", match.group(0)) if match else ""


def test_walk_every_admin_url_as_marketer_and_operator(walk):
    as_operator, raw_values = walk["as_operator"], walk["raw"]
    leaks, errors, dependent, operator_blind, unguarded, visited = [], [], [], [], [], set()
    for model, model_admin in admin.site._registry.items():
        app_label, model_name = _info(model)
        changelist = reverse(f"admin:{app_label}_{model_name}_changelist")
        obj = _last_object(model, model_admin, walk["operator"])
        pages = [changelist]
        if obj is not None:
            pages += [reverse(f"admin:{app_label}_{model_name}_{view}", args=[obj.pk])
                      for view in ("change", "history")]
        pages += _custom_views(model, model_admin, obj)
        for url in pages:
            visited.add(url)
            if as_operator.get(url).status_code >= 500:
                errors.append(url)
            for user, viewer in walk["viewers"]:
                response = viewer.get(url)
                leaks += [(user.username, url, value) for value in _leaks(response.content, raw_values)]
                if response.status_code >= 500:
                    errors.append(url)
                # Custom views check the permission of their model's changelist.
                if not model_admin.has_view_or_change_permission(_request(user)):
                    status = response.status_code
                    if status == 302:  # e.g. a POST-only view sending a GET back to its list
                        status = viewer.get(response["Location"]).status_code
                    if status not in (403, 405):
                        unguarded.append(f"{user.username}: {url} {status}")

        columns = _personal_columns(model, model_admin, walk["operator"])
        for (user, viewer), (path, raw) in itertools.product(walk["viewers"], columns):
            for param, asked, wrong in _lookup_pairs(path, raw):
                answer = viewer.get(changelist, {param: asked})
                control = viewer.get(changelist, {param: wrong})
                shown = raw_values - {str(raw), f"{raw:,}" if isinstance(raw, int) else raw}
                leaks += [(user.username, f"{changelist}?{param}=", v) for v in _leaks(answer.content, shown)]
                if answer.status_code >= 500:
                    errors.append(f"{changelist}?{param}=")
                if _normalized(answer, asked) != _normalized(control, wrong):
                    dependent.append(f"{user.username}: {changelist}?{param}=")
        if columns:
            # Operators see raw personal data on the change page of a row that holds it.
            holder = _holder(model, model_admin, walk["operator"], columns)
            content = as_operator.get(reverse(f"admin:{app_label}_{model_name}_change", args=[holder.pk])).content
            if not _leaks(content, {RAW_LINE_ID, RAW_NAME, RAW_MERCHANT, str(RAW_AMOUNT), f"{RAW_AMOUNT:,}"}):
                operator_blind.append(model_name)
        for user, viewer in walk["viewers"]:
            dependent += _orderable_personal_columns(model, model_admin, user, viewer, columns)

    # The index and each app's index (dashboard panels, recent actions) too.
    for url in ["/admin/", *{f"/admin/{model._meta.app_label}/" for model in admin.site._registry}]:
        for user, viewer in walk["viewers"]:
            leaks += [(user.username, url, value) for value in _leaks(viewer.get(url).content, raw_values)]

    assert leaks == []
    assert dependent == []
    assert errors == []
    assert operator_blind == []
    assert unguarded == [], "\n".join(unguarded)
    # The walk reached the pages that hold raw values and the custom views of issue 18.
    assert "/admin/history/paymententry/customer/c-priv-1/" in visited
    assert any(url.startswith("/admin/loyalty/customer/") and url.endswith("/why/") for url in visited)
    assert any("/admin/line_integration/campaigndelivery/" in url and url.endswith("/change/") for url in visited)
    assert any(re.fullmatch(r"/admin/campaigns/campaign/\d+/backtest/\d+/", url) for url in visited)
    assert any(re.fullmatch(r"/admin/campaigns/merchantmaster/import-csv/\d+/", url) for url in visited)


def _holder(model, model_admin, user, columns):
    request = RequestFactory().get("/")
    request.user = user
    path, raw = columns[0]
    lookup = path if isinstance(raw, int) else f"{path}__icontains"
    return model_admin.get_queryset(request).filter(**{lookup: raw}).order_by("-pk").first()


def _orderable_personal_columns(model, model_admin, user, viewer, columns) -> list[str]:
    """Columns whose order would come from a personal field (what Django alone would sort `?o=<index>` by,
    or a masked column): the marketer's `?o=<index>` and `?o=-<index>` must not answer with rows."""
    request = RequestFactory().get("/")
    request.user = user
    if not columns or not model_admin.has_view_or_change_permission(request):
        return []
    changelist = model_admin.get_changelist_instance(request)
    personal = {path.split("__")[0] for path, _ in columns}
    url = reverse(f"admin:{'_'.join(_info(model))}_changelist")
    found = []
    for index, name in enumerate(changelist.list_display):
        order_field = ChangeList.get_ordering_field(changelist, name)
        order_name = order_field if isinstance(order_field, str) else getattr(order_field, "name", None)
        masked = isinstance(name, str) and name.endswith("_masked")
        if masked or (order_name and order_name.lstrip("-").split("__")[0] in personal):
            for order in (f"{index}", f"-{index}"):
                response = viewer.get(url, {"o": order})
                if response.status_code != 302 or not response["Location"].endswith("?e=1"):
                    found.append(f"{url}?o={order}")
    return found


# ---- the permission -------------------------------------------------------------------------------------
def test_view_personal_data_is_the_operators_and_never_the_marketers():
    marketer, operator = _staff(MARKETERS), _staff(OPERATORS)
    assert can_see_pii(operator) is True
    assert can_see_pii(marketer) is False
    assert can_see_pii(User.objects.create_superuser("root-walker", password="pw")) is True
    assert not Group.objects.get(name=MARKETERS).permissions.filter(codename="view_personal_data").exists()


# ---- the three reproductions of issue 18 ----------------------------------------------------------------
def test_reproduction_1_campaign_delivery_page_masks_the_line_id(walk):
    from line_integration.models import OutboundMessage

    message = OutboundMessage.objects.get(dispatch_id="privacy-walk")
    url = f"/admin/line_integration/campaigndelivery/{message.pk}/change/"
    marketer_page = walk["as_marketer"].get(url)
    assert marketer_page.status_code == 200
    assert RAW_LINE_ID not in marketer_page.content.decode()
    assert RAW_NAME not in marketer_page.content.decode()
    assert RAW_LINE_ID[:4] + "\u2022" in marketer_page.content.decode()  # shown masked, not left out
    assert RAW_LINE_ID in walk["as_operator"].get(url).content.decode()


@pytest.mark.parametrize("url", [
    f"/admin/line_integration/lineuser/?line_user_id={RAW_LINE_ID}",
    "/admin/line_integration/lineuser/?line_user_id__startswith=U5",
    f"/admin/line_integration/outboundmessage/?line_user_id={RAW_LINE_ID}",
    "/admin/line_integration/outboundmessage/?line_user_id__startswith=U5",
    f"/admin/line_integration/outboundmessage/?params__name={RAW_NAME}",
    f"/admin/line_integration/linerequest/?body__to={RAW_LINE_ID}",
    "/admin/line_integration/linerequest/?body__to__startswith=U5",
    "/admin/line_integration/linerequest/?body__icontains=U5e1f",
    f"/admin/line_integration/linelinkageuser/?line_id={RAW_LINE_ID}",
    f"/admin/line_integration/webhookevent/?line_user_id__icontains={RAW_LINE_ID[1:9]}",
    f"/admin/campaigns/campaignreward/?amount__gte={RAW_AMOUNT}",
    f"/admin/loyalty/monthlytotal/?amount={RAW_AMOUNT}",
])
def test_reproduction_2_lookups_on_masked_fields_are_refused(walk, url):
    assert walk["as_marketer"].get(url.split("?")[0]).status_code == 200
    assert walk["as_marketer"].get(url).status_code == 400  # Django's own answer to a disallowed lookup
    assert walk["as_operator"].get(url).status_code == 200


def test_reproduction_2_search_ignores_masked_fields(walk):
    found = walk["as_marketer"].get("/admin/line_integration/lineuser/", {"q": RAW_LINE_ID})
    assert found.status_code == 200
    assert "c-priv-1" not in _results(found)
    assert "c-priv-1" in _results(walk["as_operator"].get("/admin/line_integration/lineuser/", {"q": RAW_LINE_ID}))


def test_reproduction_2_ordering_by_a_masked_column_is_refused(walk):
    from line_integration.models import LineUser

    def column(user, name):
        return admin.site._registry[LineUser].get_changelist_instance(_request(user)).list_display.index(name)

    client, index = walk["as_marketer"], column(walk["marketer"], "line_user_id_masked")
    for order in (f"{index}", f"-{index}"):
        refused = client.get("/admin/line_integration/lineuser/", {"o": order})
        assert refused.status_code == 302
        assert refused["Location"] == "/admin/line_integration/lineuser/?e=1"  # Django's "incorrect lookup"
    operator, index = walk["as_operator"], column(walk["operator"], "line_user_id")
    assert _results(operator.get(f"/admin/line_integration/lineuser/?o={index}")) != \
        _results(operator.get(f"/admin/line_integration/lineuser/?o=-{index}"))


def test_reproduction_3_customer_history_page_needs_the_list_permission_and_personal_data(walk):
    url = "/admin/history/paymententry/customer/c-00001/"
    assert walk["as_marketer"].get("/admin/history/paymententry/").status_code == 403
    assert walk["as_marketer"].get(url).status_code == 403
    assert walk["as_operator"].get(url).status_code == 200


def _request(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_reward_csv_export_leaves_the_payment_amount_out_for_marketers(walk):
    from campaigns.models import CampaignReward

    reward = CampaignReward.objects.get(payment_id="pay-privacy-1")
    form = {"action": "export_csv", "_selected_action": [reward.pk]}
    exported = {}
    for role in ("marketer", "operator"):
        response = walk[f"as_{role}"].post("/admin/campaigns/campaignreward/", form)
        assert response.status_code == 200
        exported[role] = b"".join(response.streaming_content).decode()
    assert "pay-privacy-1" in exported["marketer"]
    assert str(RAW_AMOUNT) not in exported["marketer"]
    assert str(RAW_AMOUNT) in exported["operator"]


def test_lookups_through_relations_meet_the_personal_fields_of_the_model_they_reach():
    from history.models import PaymentEntry, RepaymentRequest
    from mercari_ops.common.privacy_admin import lookup_touches_personal

    # declared once, on the payment entries' admin; refused from the repayment requests' list too
    assert lookup_touches_personal(RepaymentRequest, "entry__amount__gte", admin.site)
    assert lookup_touches_personal(RepaymentRequest, "entry__attributes__merchant_id", admin.site)
    assert lookup_touches_personal(PaymentEntry, "-title", admin.site)
    assert not lookup_touches_personal(RepaymentRequest, "entry__customer_id", admin.site)  # opaque IDs may be used
    assert not lookup_touches_personal(RepaymentRequest, "status__exact", admin.site)
