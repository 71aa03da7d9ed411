"""Backtest exclusion reasons: every line a campaign would not reward is explained, once, with its yen.

Reported: a new campaign backtested to "0 rewarded" with 263 unknown merchant, 28 unknown customer and the
other 4,284 lines unexplained.
"""

import itertools
import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from campaigns import rules
from campaigns.models import CampaignBacktest
from campaigns.services import campaign_backtest_queue, campaign_backtest_run, campaign_create
from campaigns.services.backtest import campaign_backtest_simulate
from campaigns.tests.factories import bill_event, line

pytestmark = pytest.mark.django_db

OUT = {"method": "id", "channel": "outside"}
OCT, NOV = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def narrow_campaign(merchants):
    """Outside the marketplace, shop-77 only, paid with iD, card status 3, stages 20+ (rated for 20-29 only)."""
    return campaign_create(
        name="New: iD at the corner shop", starts_at="2027-01-01T00:00:00+00:00",
        ends_at="2027-02-01T00:00:00+00:00", rates=[(20, 29, "1.0")],
        user_filters={"mercard_status": [3], "stage": {"min": 20}},
        payment_filters={"mercari_outer_payment": True, "merchant": {"shop_id": ["shop-77"]},
                         "payment_methods": ["id"], "excluded_categories": ["e_money_charge"]})


@pytest.fixture
def october_lines(customer, record_bill):
    """One rewarded line and one line per reason, each with its own amount so yen show which line went where."""
    customer("c-ok", stage=20, card_status=3)
    customer("c-card", stage=20, card_status=2)
    customer("c-low", stage=10, card_status=3)
    customer("c-high", stage=40, card_status=3)
    record_bill(bill_event("c-ok", [
        line("p-ok", 10_000, "m-77-id", **OUT),                       # rewarded: 100 points
        line("p-um", 1_001, "m-nobody", **OUT),                       # unknown merchant
        line("p-cat", 3_000, "m-charge", **OUT),                      # category (before merchant filter)
        line("p-mf", 4_000, "m-88", **OUT),                           # merchant filter
        line("p-pm", 5_000, "m-77", method="mercard", channel="outside"),  # payment method
        line("p-ch", 6_000, "m-77-id", method="id", channel="mercari"),    # channel: a marketplace payment
        line("p-zero", 0, "m-77-id", **OUT),                          # amount not positive
        line("p-small", 50, "m-77-id", **OUT),                        # 1% of ¥50 floors to 0 points
        line("p-sep", 7_500, "m-77-id", **OUT, paid_at="2026-09-10T03:00:00Z"),  # paid before the month
    ]))
    record_bill(bill_event("c-ok", [line("p-ok", 10_000, "m-77-id", **OUT)]))  # the same payment again
    record_bill(bill_event("c-card", [line("p-card", 7_000, "m-77-id", **OUT)]))
    record_bill(bill_event("c-low", [line("p-low", 8_000, "m-77-id", **OUT)]))
    record_bill(bill_event("c-high", [line("p-high", 9_000, "m-77-id", **OUT)]))
    record_bill(bill_event("c-ghost", [line("p-ghost", 2_000, "m-77-id", **OUT)]))  # unknown to loyalty and card


EXPECTED = {
    rules.DUPLICATE_PAYMENT: (1, 10_000), rules.UNKNOWN_MERCHANT: (1, 1_001), rules.UNKNOWN_CUSTOMER: (1, 2_000),
    rules.CARD_STATUS: (1, 7_000), rules.STAGE: (2, 17_000), rules.CATEGORY: (1, 3_000), rules.MERCHANT: (1, 4_000),
    rules.PAYMENT_METHOD: (1, 5_000), rules.CHANNEL: (1, 6_000), rules.NOT_POSITIVE: (1, 0),
    rules.ZERO_POINTS: (1, 50), rules.OUTSIDE_PERIOD: (1, 7_500),
}


def test_every_line_is_explained_once_with_its_yen(narrow_campaign, october_lines):
    result, excluded = campaign_backtest_simulate(campaign_id=narrow_campaign.pk, month="2026-10")
    reasons = {row["reason"]: (row["lines"], row["yen"]) for row in excluded["reasons"]}
    assert [row["reason"] for row in excluded["reasons"]] == list(rules.EXCLUSION_ORDER)  # fixed order, no extra
    assert reasons == EXPECTED
    assert excluded["rewarded"] == {"lines": 1, "yen": 10_000}
    assert (result["lines_rewarded"], result["points"]) == (1, 100)  # the settlement's own count agrees
    assert excluded["lines"] == result["lines"] == 14
    assert excluded["rewarded"]["lines"] + sum(lines for lines, _ in reasons.values()) == excluded["lines"]
    assert excluded["rewarded"]["yen"] + sum(yen for _, yen in reasons.values()) == excluded["yen"]


def test_a_new_campaign_rewarding_nothing_says_why_for_every_line(merchants, customer, record_bill):
    """The reported case: 0 rewarded, a few unknown merchants and customers, the rest must not be a mystery."""
    customer("c-1", stage=10, card_status=2)
    record_bill(bill_event("c-1", [line(f"p-in-{i}", 1_000 + i) for i in range(6)]          # marketplace
                           + [line("p-x", 500, "m-nobody")]))
    record_bill(bill_event("c-unknown", [line("p-u", 700)]))
    outside_only = campaign_create(name="Outside only", starts_at="2027-01-01T00:00:00+00:00",
                                   ends_at="2027-02-01T00:00:00+00:00", rates=[(10, 49, "1.0")],
                                   payment_filters={"mercari_outer_payment": True})
    run = campaign_backtest_queue(campaign_id=outside_only.pk, month="2026-10")
    run = campaign_backtest_run(backtest_id=run.pk)
    assert run.result["lines_rewarded"] == 0
    counted = {row["reason"]: row["lines"] for row in run.excluded["reasons"] if row["lines"]}
    assert counted == {rules.UNKNOWN_MERCHANT: 1, rules.UNKNOWN_CUSTOMER: 1, rules.CHANNEL: 6}
    assert sum(counted.values()) == run.result["lines"] == 8
    assert run.excluded["yen"] == sum(1_000 + i for i in range(6)) + 500 + 700


def test_the_reason_comes_from_the_settlements_rule_checks():
    """`exclusions` is empty exactly when `evaluate` matches with points above 0 (what the settlement rewards)."""
    merchants = [None, rules.MerchantInfo("shop-77", False, ""), rules.MerchantInfo("mercari", True, ""),
                 rules.MerchantInfo("charge-1", False, "e_money_charge")]
    rule = rules.CampaignRule.build(
        id=1, version=1, name="x", starts_at=OCT, ends_at=NOV,
        upper_limit=None, user_filters={"mercard_status": [3], "stage": {"min": 20}},
        payment_filters={"merchant": {"shop_id": ["shop-77", "charge-1"]}, "payment_methods": ["id"],
                         "excluded_categories": ["e_money_charge"]}, rates=[(20, 29, "1.0")])
    checked = 0
    for stage, status, amount, channel, merchant, method, paid_at in itertools.product(
            [None, 10, 20, 40], [2, 3], [-5, 0, 50, 10_000], ["mercari", "outside"], merchants, ["id", "mercard"],
            [datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 9, 5, tzinfo=UTC)]):
        args = {"stage": stage, "card_status": status, "amount": amount, "channel": channel, "merchant": merchant,
                "payment_method": method, "paid_at": paid_at}
        outcome = rule.evaluate(**args)
        rewarded = not isinstance(outcome, str) and outcome.points > 0
        found = rule.exclusions(**args)
        assert (not found) == rewarded, args
        if isinstance(outcome, str):
            assert outcome in found  # the settlement's first reason is among them
        checked += 1
    assert checked == 4 * 2 * 4 * 2 * 4 * 2 * 2


def test_line_exclusion_takes_the_first_reason_of_the_fixed_order():
    rule = rules.CampaignRule.build(
        id=1, version=1, name="x", starts_at=OCT, ends_at=NOV,
        upper_limit=None, user_filters={"mercard_status": [3]}, payment_filters={"mercari_outer_payment": True},
        rates=[(10, 49, "1.0")])
    everything_wrong = {"stage": 10, "card_status": 2, "amount": 0, "channel": "mercari",
                        "payment_method": "id", "paid_at": datetime(2026, 9, 1, tzinfo=UTC)}
    assert rule.line_exclusion(merchant=None, **everything_wrong) == rules.UNKNOWN_MERCHANT
    shop = rules.MerchantInfo("shop-77", False, "")
    assert rule.line_exclusion(merchant=shop, **everything_wrong) == rules.CARD_STATUS
    assert rule.line_exclusion(merchant=shop, **{**everything_wrong, "card_status": 3}) == rules.CHANNEL
    # evaluate (the estimate and the settlement) still answers with its own first reason
    assert rule.evaluate(merchant=shop, **{**everything_wrong, "card_status": 3}) == rules.OUTSIDE_PERIOD


def test_backtest_page_shows_the_charts_and_the_reasons_with_lines_and_yen(operator, narrow_campaign, october_lines):
    run = campaign_backtest_queue(campaign_id=narrow_campaign.pk, month="2026-10")
    campaign_backtest_run(backtest_id=run.pk)
    page = operator.get(reverse("admin:campaigns_campaign_backtest_result", args=[narrow_campaign.pk, run.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count("<svg") >= 2  # points and recipients by stage, excluded lines by reason
    assert "Excluded lines by reason" in html
    assert "Merchant filter" in html and "Payment method" in html and "¥17,000" in html  # the two stage lines
    assert "100 pt" in html and "¥10,000" in html


def test_a_backtest_run_before_reasons_existed_still_renders(operator, narrow_campaign):
    run = CampaignBacktest.objects.create(campaign=narrow_campaign, month="2026-10", status="done",
                                          result={"month": "2026-10", "lines": 3, "lines_rewarded": 0, "by_stage": []})
    page = operator.get(reverse("admin:campaigns_campaign_backtest_result", args=[narrow_campaign.pk, run.pk]))
    assert page.status_code == 200
    assert "run it again" in page.content.decode()


def test_campaign_page_charts_points_granted_per_day_against_the_cap(operator, campaigns, customer, record_bill):
    from campaigns.models import CampaignReward
    from campaigns.services.settlement import month_settle

    # given: the outside campaign (0.5%, cap 1,000 pt per customer) rewards two customers, one beyond the cap
    inner, outer = campaigns
    customer("c-big", stage=10)
    customer("c-small", stage=10)
    record_bill(bill_event("c-big", [line("p-big", 400_000, "m-77", channel="outside")]))     # 2,000 -> 1,000 pt
    record_bill(bill_event("c-small", [line("p-small", 60_000, "m-77", channel="outside")]))  # 300 pt
    month_settle(month="2026-10")
    granted_on = {"p-big": datetime(2026, 11, 27, 3, tzinfo=UTC), "p-small": datetime(2026, 11, 29, 16, tzinfo=UTC)}
    for payment_id, at in granted_on.items():  # the days they were granted (16:00 UTC is the 30th in Japan)
        CampaignReward.objects.filter(campaign=outer, payment_id=payment_id).update(created_at=at)
    # when
    page = operator.get(reverse("admin:campaigns_campaign_change", args=[outer.pk]))
    # then
    html = page.content.decode()
    assert page.status_code == 200 and "Points granted per day" in html
    assert "<tr><th scope=\"row\">11-27</th><td>1,000</td><td>2,000</td></tr>" in html
    assert "<tr><th scope=\"row\">11-30</th><td>300</td><td>300</td></tr>" in html
    assert "<tr><th scope=\"row\">11-28</th><td>0</td><td>0</td></tr>" in html  # days without grants are zeros
    assert re.search(r"1,300 pt granted from 2026-1\d-\d\d to 20\d\d-\d\d-\d\d\.", html)
    assert "Cap: 1,000 pt per customer; 1 customer(s) have reached it." in html
