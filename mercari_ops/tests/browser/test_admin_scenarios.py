"""What marketers and operators do in the admin, driven in Chromium (issue 19, point 8): a campaign built with
the pickers and the live estimate, a backtest with its chart and exclusion reasons, a stage-rules preview, a
dead letter decoded, fixed and replayed, and amounts, points and stage names as people read them.

Elements are found by id, name, data attributes and URLs (the admin is Japanese by default and its wording
changes with the translators); expected labels are computed with the project's own functions in the page's
language. Data is seeded through the ORM and the apps' services in the test's own database, which the live
server (gunicorn, tasks run inline) reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.conf import settings
from django.utils import timezone, translation

from conftest import push_body

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

BACKTEST_MONTH = "2026-10"
BIG_PURCHASE = 1_234_500  # at 1.0%: 12,345 points, so the page must write both with thousands separators


def _rules_in_force() -> dict:
    """The loyalty factory rules published as the rules in force (stage names Regular, Silver, Gold, Platinum)."""
    from loyalty.selectors import rules_cache_clear
    from loyalty.tests.factories import RULES, publish_rules

    rules_cache_clear()  # a flushed test database reuses version numbers: forget versions parsed before
    publish_rules()
    return RULES


@pytest.fixture
def merchant_master(transactional_db):
    from campaigns.catalog import catalog_reset
    from campaigns.services import merchant_master_import_csv
    from campaigns.tests.conftest import MERCHANT_CSV

    catalog_reset()
    merchant_master_import_csv(text=MERCHANT_CSV)  # shop-77 "Corner shop", mercari, ...
    yield
    catalog_reset()


def _card_holder(customer_id: str, *, stage: int, card_status: int) -> None:
    from campaigns.services import card_status_record_many
    from loyalty.models import Customer

    Customer.objects.create(customer_id=customer_id, stage=stage, rules_stage=stage)
    card_status_record_many(events=[{"event_id": f"cs-{customer_id}", "customer_id": customer_id,
                                     "mercard_status": card_status, "changed_at": "2026-09-01T00:00:00Z"}])


@pytest.fixture
def backtest_month(merchant_master):
    """October 2026 bills: one rewarded marketplace line and one line for each of three known reasons, and a
    draft campaign rewarding marketplace payments at 1.0% for every stage."""
    from campaigns import rules
    from campaigns.services import bills_record_many, campaign_create
    from campaigns.tests.factories import bill_event, line

    _rules_in_force()
    _card_holder("c-silver", stage=20, card_status=3)
    bills_record_many(events=[
        bill_event("c-silver", [line("p-ok", BIG_PURCHASE),                               # rewarded
                                line("p-nobody", 5_000, "m-nobody"),                      # unknown merchant
                                line("p-outside", 3_000, "m-77", channel="outside")]),   # channel
        bill_event("c-ghost", [line("p-ghost", 2_000)]),                                  # unknown customer
    ], enqueue=False)
    campaign = campaign_create(name="Marketplace 1%", starts_at="2027-01-01T00:00:00+00:00",
                               ends_at="2027-02-01T00:00:00+00:00", rates=[(10, 40, "1.0")],
                               payment_filters={"mercari_inner_payment": True})
    expected_reasons = {rules.UNKNOWN_MERCHANT: 1, rules.UNKNOWN_CUSTOMER: 1, rules.CHANNEL: 1}
    return campaign, expected_reasons


def _wait_estimate(page, state: str, points: int | None = None):
    """The live estimate once it has answered with `state` (and these points): a stale answer never matches."""
    selector = f'#campaign-estimate-result[data-state="{state}"]'
    if points is not None:
        selector += f'[data-points="{points}"]'
    return page.wait_for_selector(selector)


def _describe_sample(page) -> None:
    page.fill("#sample-amount", "12345")
    page.fill("#sample-paid-on", "2026-10-15")
    page.fill("#sample-merchant", "shop-77")
    page.select_option("#sample-channel", "outside")
    page.select_option("#sample-payment-method", "id")
    page.select_option("#sample-stage", "30")
    page.select_option("#sample-card-status", "3")


def test_a_marketer_builds_a_campaign_with_the_pickers_sees_an_error_fixes_it_and_saves(
        live_admin, page, marketer, merchant_master):
    from campaigns.models import Campaign
    from campaigns.rules import points_calculate, rate_tenths

    _rules_in_force()
    log_in(page, live_admin, marketer)
    page.goto(f"{live_admin}/admin/campaigns/campaign/add/")
    # given the campaign's name, period (Japan time) and one rate for stages 10 to 40
    page.fill("#id_name", "Corner shop iD autumn")
    page.fill("#id_starts_at_0", "2026-10-01")
    page.fill("#id_starts_at_1", "00:00:00")
    page.fill("#id_ends_at_0", "2026-11-01")
    page.fill("#id_ends_at_1", "00:00:00")
    page.fill("#id_rates-0-stage_from", "10")
    page.fill("#id_rates-0-stage_to", "40")
    page.fill("#id_rates-0-rate", "1.5")
    # when the filters are picked: card status 3 from stage 20; outside the marketplace, shop-77 found by
    # searching its name, paid with iD
    users = page.locator("#filter-picker-user_filters")
    users.locator('input[data-role="card-status"][value="3"]').check()
    users.locator('select[data-role="stage-min"]').select_option("20")
    payments = page.locator("#filter-picker-payment_filters")
    payments.locator('input[data-role="inner"]').uncheck()
    payments.locator('input[data-role="merchant-search"]').fill("corner")
    payments.locator('.filter-picker-result[data-id="shop-77"]').click()
    payments.locator('input[data-role="method"][value="id"]').check()
    # then the pickers wrote the JSON the form saves
    assert payments.locator('.filter-picker-chip[data-id="shop-77"]').count() == 1
    assert json.loads(page.input_value("#id_user_filters")) == {"mercard_status": [3], "stage": {"min": 20}}
    payment_filters = json.loads(page.input_value("#id_payment_filters"))
    assert payment_filters["merchant"] == {"shop_id": ["shop-77"]}
    assert payment_filters["payment_methods"] == ["id"]
    assert payment_filters["mercari_outer_payment"] is True and not payment_filters.get("mercari_inner_payment")

    # when a sample purchase of that kind is described: ¥12,345 with iD at shop-77 by a Gold card holder
    _describe_sample(page)
    # then the estimate is the settlement's own reward function's answer
    expected = points_calculate(amount=12_345, rate_tenths=rate_tenths("1.5"))
    assert expected == 185
    _wait_estimate(page, "ok", expected)

    # when the stage range is turned upside down in the picker
    users.locator('select[data-role="stage-max"]').select_option("10")
    # then the estimate names the field at once, and saving shows the error on the user filters
    result = _wait_estimate(page, "invalid")
    assert result.get_attribute("data-field") == "user_filters.stage.min"
    assert "user_filters.stage.min" in result.inner_text()
    with page.expect_navigation():
        page.click('input[name="_save"]')
    assert page.locator(".field-user_filters .errorlist").count() == 1
    assert "user_filters.stage.min" in page.locator(".field-user_filters .errorlist").inner_text()
    assert not Campaign.objects.filter(name="Corner shop iD autumn").exists()

    # when the marketer fixes it with the picker (the page came back with everything typed so far)
    users = page.locator("#filter-picker-user_filters")
    assert users.locator('input[data-role="card-status"][value="3"]').is_checked()
    users.locator('select[data-role="stage-max"]').select_option("40")
    _describe_sample(page)  # the sample is no form field: it starts again from its defaults
    assert _wait_estimate(page, "ok", expected).get_attribute("data-field") == ""
    with page.expect_navigation():
        page.click('input[name="_save"]')
    # then the campaign is saved with the picked filters and its rate
    assert page.url.endswith("/admin/campaigns/campaign/")
    campaign = Campaign.objects.get(name="Corner shop iD autumn")
    assert campaign.user_filters == {"mercard_status": [3], "stage": {"min": 20, "max": 40}}
    assert campaign.payment_filters == payment_filters
    assert [(r.stage_from, r.stage_to, str(r.rate)) for r in campaign.rates.all()] == [(10, 40, "1.5")]


def test_a_marketer_runs_a_backtest_and_sees_the_charts_and_the_exclusion_reasons(
        live_admin, page, marketer, backtest_month):
    from campaigns.admin.charts import reason_label
    from campaigns.models import CampaignBacktest

    campaign, expected_reasons = backtest_month
    log_in(page, live_admin, marketer)
    page.goto(f"{live_admin}/admin/campaigns/campaign/{campaign.pk}/backtest/")
    # when the marketer asks for October 2026
    page.fill('input[name="month"]', BACKTEST_MONTH)
    with page.expect_navigation():
        page.click('#content form[method="post"] input[type="submit"]')
    # then (the worker runs inline here; the page reloads itself until the run is done) the result is shown
    page.wait_for_selector("#backtest-reasons", timeout=30_000)
    run = CampaignBacktest.objects.get(campaign=campaign)
    assert run.status == CampaignBacktest.Status.DONE and run.month == BACKTEST_MONTH
    assert page.url.endswith(f"/admin/campaigns/campaign/{campaign.pk}/backtest/{run.pk}/")
    assert page.locator("#content svg").count() >= 3  # points and recipients by stage, reasons
    shown = {}
    for row in page.locator("#backtest-reasons tbody tr:has(td)").all():
        cells = row.locator("td").all_inner_texts()
        shown[cells[0].strip()] = int(cells[1].replace(",", ""))
    with translation.override("ja"):
        expected = {reason_label(code): lines for code, lines in expected_reasons.items()}
    assert {label: lines for label, lines in shown.items() if lines} == expected
    assert len(shown) > len(expected)  # every reason has its row, the zeros too


def test_a_marketer_sees_yen_points_and_stage_names_on_a_backtest_result(
        live_admin, page, marketer, backtest_month, eager_celery):
    from campaigns.services import campaign_backtest_queue, campaign_backtest_run
    from loyalty.selectors import stage_label

    campaign, _reasons = backtest_month
    run = campaign_backtest_run(backtest_id=campaign_backtest_queue(campaign_id=campaign.pk,
                                                                    month=BACKTEST_MONTH).pk)
    assert run.result["points"] == 12_345
    log_in(page, live_admin, marketer)
    page.goto(f"{live_admin}/admin/campaigns/campaign/{campaign.pk}/backtest/{run.pk}/")
    summary = page.locator("#backtest-summary").inner_text()
    assert "12,345 pt" in summary
    assert "¥1,244,500" in summary  # the month's four lines: 1,234,500 + 5,000 + 3,000 + 2,000 yen
    by_stage = page.locator("#backtest-by-stage tbody tr").first.locator("td").all_inner_texts()
    assert by_stage[0] == stage_label(20) == "Silver (20)"
    assert by_stage[3] == "12,345 pt"


def test_a_marketer_previews_stage_rules_and_nothing_is_published(live_admin, page, marketer):
    from loyalty.models import Customer, MonthlyTotal, StageChange, StageRuleVersion
    from mercari_ops.common.business_time import business_month, month_shift

    # given the rules in force and four customers at the stages those rules gave them
    rules = _rules_in_force()
    last_month = month_shift(business_month(timezone.now()), -1)
    for customer_id, stage, kind, amount, count in (("c-none", 10, None, 0, 0),
                                                     ("c-silver-small", 20, "buy", 12_000, 2),
                                                     ("c-silver-big", 20, "buy", 30_000, 3),
                                                     ("c-seller", 10, "sell", 5_000, 10)):
        customer = Customer.objects.create(customer_id=customer_id, stage=stage, rules_stage=stage)
        if kind:
            MonthlyTotal.objects.create(customer=customer, kind=kind, month=last_month, amount=amount, count=count)
    versions, stages = StageRuleVersion.objects.count(), dict(Customer.objects.values_list("customer_id", "stage"))
    # when Silver is proposed at 25,000 yen (c-silver-small would drop to Regular; c-seller earns Gold under
    # any rules with Gold at 10 sales, not yet recomputed)
    changed = json.loads(json.dumps(rules))
    changed["stages"][1]["thresholds"]["buy_amount"] = 25_000
    log_in(page, live_admin, marketer)
    page.goto(f"{live_admin}/admin/loyalty/stageruleversion/add/")
    page.fill("#id_definition", json.dumps(changed, indent=2))
    page.click("#rules-preview-button")
    # then the preview counts them
    page.wait_for_selector('#rules-preview[data-state="ok"]')
    result = page.locator("#rules-preview .rules-preview-result")
    assert (result.get_attribute("data-customers"), result.get_attribute("data-up"),
            result.get_attribute("data-down"), result.get_attribute("data-unchanged")) == ("4", "1", "1", "2")
    assert page.locator("#rules-preview svg").count() == 1
    # and nothing was published or restaged
    assert page.url.endswith("/admin/loyalty/stageruleversion/add/")
    assert StageRuleVersion.objects.count() == versions
    assert dict(Customer.objects.values_list("customer_id", "stage")) == stages
    assert not StageChange.objects.exists()


def test_an_operator_decodes_fixes_and_replays_a_dead_letter(live_admin, page, operator):
    from loyalty.models import MonthlyTotal
    from mercari_ops.inbox.models import DeadLetter, InboxEvent
    from mercari_ops.inbox.services.letter_body import letter_body_decode

    # given a push whose event the topic's schema refuses (a "gift" is no activity kind)
    occurred = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    event = {"event_id": "act-gift-1", "customer_id": "c-gift", "kind": "gift", "amount": 4_800,
             "occurred_at": occurred.isoformat().replace("+00:00", "Z")}
    token = settings.PUBSUB_PUSH_TOKEN or "dev-pubsub-token"  # the live server runs with DEBUG's default
    response = requests.post(f"{live_admin}/pubsub/push/loyalty-activity", data=push_body(event), timeout=30,
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    letter = DeadLetter.objects.get(topic="loyalty-activity", status=DeadLetter.Status.OPEN)
    # when the operator opens it: the event is decoded from the base64 envelope into editable JSON
    log_in(page, live_admin, operator)
    page.goto(f"{live_admin}/admin/inbox/deadletter/{letter.pk}/change/")
    shown = json.loads(page.input_value("#id_event_json"))
    assert shown == event
    assert page.locator('button[name="replay"]').count() == 1 and page.locator('button[name="discard"]').count() == 1
    # and fixes the kind and saves: the fixed event goes back into the envelope, the letter stays open
    page.fill("#id_event_json", json.dumps({**shown, "kind": "buy"}, indent=2))
    with page.expect_navigation():
        page.click('input[name="_continue"]')
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN
    assert letter_body_decode(letter.raw_body).event == {**event, "kind": "buy"}
    assert json.loads(page.input_value("#id_event_json"))["kind"] == "buy"
    # when the operator presses Replay on the page
    with page.expect_navigation():
        page.click('button[name="replay"]')
    # then the event went through the loyalty handler and the letter is closed
    assert page.locator(".messagelist .success").count() == 1
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED and letter.resolved_by == operator.get_username()
    assert InboxEvent.objects.filter(topic="loyalty-activity", event_id="act-gift-1").exists()
    total = MonthlyTotal.objects.get(customer__customer_id="c-gift", kind="buy")
    assert (total.amount, total.count) == (4_800, 1)
    # and the page offers no Replay any more
    assert page.locator('button[name="replay"]').count() == 0
