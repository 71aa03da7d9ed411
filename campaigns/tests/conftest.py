"""Fixtures: loyalty customers, a merchant master, the two campaigns of the source design, bills."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

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
