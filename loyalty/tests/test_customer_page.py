"""The customer page reads like a person wrote it: 24 months charted against the stage thresholds, stage
names, metric names, yen, and stage-change reasons in sentences (reported: 3 months listed, a Python dict in
the WHY column, snake_case metrics, truncated raw JSON)."""

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from loyalty.customer_page import change_reason_lines, months_series
from loyalty.models import Customer
from loyalty.selectors import rules_active, stage_label, stage_labels
from loyalty.services import activity_apply, stage_pin_set
from loyalty.tests.factories import event, publish_rules
from mercari_ops.common.business_time import business_month, month_shift

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def months_ago(n: int) -> datetime:
    """Noon on the 15th of the business month n months before this one (well inside that month in Japan)."""
    first = month_shift(business_month(timezone.now()), -n)
    return datetime(first.year, first.month, 15, 3, tzinfo=UTC)


@pytest.fixture
def gold_customer():
    """Gold (any: buy ¥50,000 or 10 sales) through purchases this month; older activity 5 and 20 months ago."""
    publish_rules()
    activity_apply(events=[event(customer_id="c-1", kind="sell", amount=3_000, occurred_at=months_ago(20)),
                           event(customer_id="c-1", amount=5_000, occurred_at=months_ago(5))])
    activity_apply(events=[event(customer_id="c-1", amount=60_000)])
    return Customer.objects.get(customer_id="c-1")


def test_stage_label_names_the_stage_with_its_number():
    publish_rules()
    assert stage_label(30) == "Gold (30)"
    assert stage_label(25) == "Stage 25"  # not a stage of the rules in force
    assert stage_labels([10, 40]) == {10: "Regular (10)", 40: "Platinum (40)"}


def test_24_months_with_zeros_and_window_totals(gold_customer):
    rows = months_series(customer=gold_customer)
    assert len(rows) == 24
    assert [row["month"] for row in rows] == [month_shift(rows[0]["month"], i) for i in range(24)]
    assert rows[-1]["month"] == business_month(timezone.now())
    quiet = [row for row in rows if not any(row["metrics"].values())]
    assert len(quiet) == 21 and all(value == 0 for row in quiet for value in row["metrics"].values())
    # the window (12 months) ending this month holds both purchases, not the sale of 20 months ago
    assert (rows[-1]["window"]["buy_amount"], rows[-1]["window"]["sell_amount"]) == (65_000, 0)
    assert rows[3]["window"]["sell_amount"] == 3_000 and rows[3]["metrics"]["sell_count"] == 1


def test_why_page_charts_24_months_against_thresholds_and_explains_in_words(admin_client, gold_customer):
    page = admin_client.get(f"/admin/loyalty/customer/{gold_customer.pk}/why/")
    assert page.status_code == 200
    html = page.content.decode()
    # 24 months listed, zeros included
    table = re.search(r'<table class="monthly-totals">.*?</table>', html, re.S).group(0)
    assert len(re.findall(r'<tr><th scope="row">\d{4}-\d{2}</th>', table)) == 24
    assert table.count("<td>¥0</td>") >= 21 * 3
    # two charts (yen, counts), with the thresholds of the rules in force drawn and labelled by stage name
    charts = [ET.fromstring(chunk) for chunk in re.findall(r'<figure class="ops-chart".*?</figure>', html, re.S)]
    assert len(charts) == 2
    texts = ["".join(t.itertext()) for t in charts[0].iter(f"{SVG}text")]
    assert "Gold (30): Purchase amount (¥) · Platinum (40): Sales amount (¥): ¥50,000" in texts  # one line, one label
    assert "Platinum (40): Purchase amount (¥): ¥100,000" in texts
    assert "Silver (20): Purchases (count): 2" in ["".join(t.itertext()) for t in charts[1].iter(f"{SVG}text")]
    # readable WHY: met / not met, value against threshold, human metric names, stage names
    assert "Purchase amount (¥): ¥65,000 of ¥50,000, met" in html
    assert "Sales (count): 0 of 10, not met (10 to go)" in html
    assert "Reached Gold (30) (at least one threshold)" in html and "Triggered by an activity event." in html
    assert "Effective stage <strong>Gold (30)</strong>" in html
    assert "&#x27;met&#x27;" not in html and "'met'" not in html and "{&#x27;" not in html
    assert "buy_amount" not in html and "sell_count" not in html


def test_customer_change_page_and_list_show_stage_names_and_readable_reasons(admin_client, gold_customer):
    stage_pin_set(customer_id="c-1", floor=40, reason="VIP <support> case 42", by="olga",
                  expires_at=timezone.now() + timedelta(days=30))
    page = admin_client.get(f"/admin/loyalty/customer/{gold_customer.pk}/change/").content.decode()
    assert "Platinum (40)" in page and "Gold (30)" in page
    assert "Pinned at Platinum (40) by olga until" in page
    assert "VIP &lt;support&gt; case 42" in page  # escaped, and not cut off
    assert "Reached Gold (30) (at least one threshold): Purchase amount (¥): ¥65,000 of ¥50,000, met" in page
    assert "&quot;trigger&quot;" not in page and "<th>Purchase amount (¥)</th>" in page and "<td>¥65,000</td>" in page
    listing = admin_client.get("/admin/loyalty/customer/?rules_stage=30").content.decode()
    assert "c-1" in listing and "Gold (30)" in listing
    assert "c-1" not in admin_client.get("/admin/loyalty/customer/?rules_stage=20").content.decode()


def test_reason_of_an_unknown_shape_is_still_readable_and_complete():
    publish_rules()
    lines = change_reason_lines({"trigger": "nightly", "lost": {"stage": 50, "note": "stage no longer exists"},
                                 "rules_stage": 20, "something_new": {"x": 1}}, ruleset=rules_active())
    assert lines == ["Triggered by the nightly window check.", "Lost Stage 50: stage no longer exists",
                     "Rules stage: Silver (20)", 'something_new: {"x": 1}']
