"""Fixtures: loyalty customers, a merchant master, the two campaigns of the source design, bills."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from campaigns.catalog import catalog_reset
from campaigns.models import Campaign
from campaigns.services import bills_record_many, campaign_create, card_status_record_many, merchant_master_import_csv
from campaigns.tests.factories import _counter

OCT_START = datetime(2026, 10, 1, tzinfo=UTC)
NOV_START = datetime(2026, 11, 1, tzinfo=UTC)
MERCHANT_CSV = """merchant_id,payment_method,master_id,master_name,is_marketplace,category
m-mercari,,mercari,Mercari marketplace,1,
m-mercari-id,id,mercari,,,
m-mercari-ap,apple_pay,mercari,,,
m-77,,shop-77,Corner shop,0,
m-77-id,id,shop-77,,,
m-88,,shop-88,Excluded shop,0,
m-charge,,charge-1,E-money charge,0,e_money_charge
"""



@pytest.fixture(autouse=True)
def _fresh_catalog(settings):
    settings.CAMPAIGNS_CATALOG_CHECK_SECONDS = 0
    settings.POINTS_API_URL = ""
    catalog_reset()
    yield
    catalog_reset()


@pytest.fixture
def customer():
    from loyalty.models import Customer

    def make(customer_id: str, stage: int = 10, card_status: int | None = 2) -> str:
        Customer.objects.update_or_create(customer_id=customer_id, defaults={"stage": stage, "rules_stage": stage})
        if card_status is not None:
            card_status_record_many(events=[{"event_id": f"cs-{next(_counter)}", "customer_id": customer_id,
                                             "mercard_status": card_status, "changed_at": "2026-09-01T00:00:00Z"}])
        return customer_id

    return make


@pytest.fixture
def merchants(db):
    return merchant_master_import_csv(text=MERCHANT_CSV)


INNER_RATES = [(10, 19, "1.0"), (20, 29, "2.0"), (30, 39, "3.0"), (40, 49, "4.0")]


@pytest.fixture
def campaigns(merchants):
    """The two campaigns of the source design, active for October 2026."""
    inner = campaign_create(
        name="Marketplace purchases", starts_at=OCT_START, ends_at=NOV_START, rates=INNER_RATES,
        user_filters={"mercard_status": [2, 3]},
        payment_filters={"mercari_inner_payment": True, "mercari_outer_payment": False},
        upper_limit=None, status=Campaign.Status.ACTIVE, by="test",
    )
    outer = campaign_create(
        name="Outside the marketplace", starts_at=OCT_START, ends_at=NOV_START, rates=[(10, 49, "0.5")],
        user_filters={"mercard_status": [2, 3]},
        payment_filters={"mercari_outer_payment": True, "merchant": {"shop_id": ["shop-88"], "invert": True},
                         "excluded_categories": ["e_money_charge"]},
        upper_limit=1000, status=Campaign.Status.ACTIVE, by="test",
    )
    return inner, outer


@pytest.fixture
def record_bill():
    def record(event: dict, *, enqueue: bool = False) -> int:
        ids = bills_record_many(events=[event], enqueue=enqueue)
        return ids[0] if ids else None

    return record


@pytest.fixture
def backtest_draft(campaigns, customer, record_bill):
    """A draft campaign and October 2026 bills: 4 lines, one at an unknown merchant, one customer reaching the cap."""
    from campaigns.services import campaign_create
    from campaigns.tests.factories import bill_event, line

    customer("c-1", stage=10)
    customer("c-2", stage=40)
    record_bill(bill_event("c-1", [line("p-1", 100_000), line("p-2", 100_000)]))
    record_bill(bill_event("c-2", [line("p-3", 10_000), line("p-4", 5000, "m-nobody")]))
    return campaign_create(name="Double", starts_at="2027-01-01T00:00:00+00:00", ends_at="2027-02-01T00:00:00+00:00",
                           rates=[(10, 29, "1.0"), (30, 49, "2.0")], payment_filters={"mercari_inner_payment": True},
                           upper_limit=1500)


# What the backtest of `backtest_draft` over 2026-10 gave when it ran inside the request: the background run must agree.
BACKTEST_DRAFT_RESULT = {
    "month": "2026-10", "lines": 4, "lines_rewarded": 3, "lines_unknown_merchant": 1, "lines_unknown_customer": 0,
    "recipients": 2, "points": 1700, "rewards": 3, "cap_hits": 1, "customers_at_cap": 1,
    "by_stage": [{"stage": 10, "recipients": 1, "rewards": 2, "points": 1500, "cap_hits": 1},
                 {"stage": 40, "recipients": 1, "rewards": 1, "points": 200, "cap_hits": 0}],
}


@pytest.fixture
def operator(client):
    """A staff user in the operators group, logged in."""
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user("olga", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client.force_login(user)
    return client
