"""Daily provisions and the month-end journal."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.models import ProvisionDaily
from campaigns.services import (
    bills_settle,
    grants_deliver_all,
    journal_csv,
    provision_journal_compute,
    provisions_daily_compute,
)
from campaigns.services.provisions import month_previous
from campaigns.tasks import provisions_daily
from campaigns.tests.factories import bill_event, line
from campaigns.tests.points_server import PointsServer
from mercari_ops.common.business_time import business_date, business_month_label

pytestmark = pytest.mark.django_db


def test_daily_provision_counts_unsettled_bills_and_undelivered_grants(campaigns, customer, record_bill):
    inner, outer = campaigns
    customer("c-1", stage=20)
    settled = record_bill(bill_event("c-1", [line("p-1", 3000)]))
    bills_settle(bill_ids=[settled])                                       # 60 points, grant not delivered yet
    record_bill(bill_event("c-1", [line("p-2", 5000), line("p-3", 2000, "m-77", channel="outside")]))  # pending
    result = provisions_daily_compute()
    assert result[inner.pk]["expected_points"] == 100 and result[inner.pk]["pending_grant_points"] == 60
    assert result[outer.pk]["expected_points"] == 10
    row = ProvisionDaily.objects.get(campaign=inner, day=business_date(timezone.now()))
    assert (row.unsettled_lines, row.expected_points, row.pending_grant_points) == (1, 100, 60)
    assert provisions_daily_compute()[inner.pk]["expected_points"] == 100  # re-run: same row, same numbers
    assert ProvisionDaily.objects.filter(campaign=inner).count() == 1


def test_month_journal_rolls_forward(campaigns, customer, record_bill, settings):
    inner, _ = campaigns
    customer("c-1", stage=10)
    customer("c-2", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])  # 30
    bills_settle(bill_ids=[record_bill(bill_event("c-2", [line("p-2", 5000)]))])  # 50
    with PointsServer() as server:
        settings.POINTS_API_URL = server.url
        server.mode = "reject"
        from campaigns.models import PointsGrant
        from campaigns.services import grants_deliver

        grants_deliver(grant_ids=[PointsGrant.objects.get(customer_id="c-2").pk])  # reversed: 50
        server.mode = "ok"
        grants_deliver_all()  # granted: 30
    month = business_month_label(timezone.now())
    (row,) = [r for r in provision_journal_compute(month=month) if r.campaign_id == inner.pk]
    assert (row.opening, row.accrued, row.granted, row.reversed, row.closing) == (0, 80, 30, 50, 0)
    assert ",0,80,30,50,0," in journal_csv([row])
    (before,) = [r for r in provision_journal_compute(month=month_previous(month)) if r.campaign_id == inner.pk]
    assert (before.accrued, before.closing) == (0, 0)


def test_journal_opening_is_last_months_liability(campaigns, customer, record_bill):
    inner, _ = campaigns
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    from campaigns.models import CampaignReward

    CampaignReward.objects.update(created_at=timezone.now() - timedelta(days=40))  # accrued last month
    month = business_month_label(timezone.now())
    (row,) = [r for r in provision_journal_compute(month=month) if r.campaign_id == inner.pk]
    assert (row.opening, row.accrued, row.closing) == (30, 0, 30)


@pytest.mark.parametrize("zone, december, november", [("Asia/Tokyo", 60, 0), ("UTC", 0, 60)])
def test_a_grant_at_16_utc_on_30_november_is_a_december_grant_in_japan(campaigns, customer, record_bill, settings,
                                                                       zone, december, november):
    from campaigns.models import CampaignReward, PointsGrant

    settings.BUSINESS_TIME_ZONE = zone
    inner, _ = campaigns
    customer("c-1", stage=20)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])  # 60 points
    CampaignReward.objects.update(created_at=datetime(2026, 11, 20, tzinfo=UTC))
    PointsGrant.objects.update(status=PointsGrant.Status.SENT, sent_at=datetime(2026, 11, 30, 16, tzinfo=UTC))

    granted = {month: [r for r in provision_journal_compute(month=month) if r.campaign_id == inner.pk][0].granted
               for month in ("2026-11", "2026-12")}

    assert granted == {"2026-12": december, "2026-11": november}


def test_periodic_job_runs(campaigns):
    assert provisions_daily()["campaigns"] == 2
