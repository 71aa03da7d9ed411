"""Demo data: a merchant master, the two campaigns of the source design, card statuses and a month of bills.

Card statuses and bills go through the real inbox batch path with deterministic event IDs, the
campaigns are created once by name, and settlement is idempotent: running the seed again adds nothing.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from mercari_ops.common.business_time import business_month, business_month_label, month_bounds, month_shift
from mercari_ops.inbox.registry import get_topic
from mercari_ops.inbox.services import event_clean, inbox_accept_batch

from .models import Campaign
from .services import campaign_create, grants_deliver_all, merchant_master_import_csv, month_settle

# Demo content is Japanese, as the marketers and customers who read it are.
MARKETPLACE_NAME = "メルカリでのお買い物 ステージ別 1.0%〜4.0% ポイント還元"
OUTSIDE_NAME = "メルカリ外でのお買い物 0.5% ポイント還元（対象外店舗あり）"
SHOPS = 50
EXCLUDED_SHOPS = ["shop-049", "shop-050"]
BILL_CUSTOMERS = 1000


def _month_start(at: datetime, shift: int = 0) -> datetime:
    """The first instant of the business month `shift` months from `at`'s (Japan's midnight)."""
    return month_bounds(month_shift(business_month(at), shift))[0]


def merchant_csv() -> str:
    rows = ["merchant_id,payment_method,master_id,master_name,is_marketplace,category",
            "m-mercari,,mercari,メルカリ,1,",
            "m-mercari-id,id,mercari,,,", "m-mercari-ap,apple_pay,mercari,,,", "m-mercari-gp,google_pay,mercari,,,",
            "m-charge,,emoney-charge,メルペイ残高チャージ,0,e_money_charge"]
    for n in range(1, SHOPS + 1):
        rows.append(f"m-s{n:03d},,shop-{n:03d},加盟店 {n},0,")
        rows.append(f"m-s{n:03d}-id,id,shop-{n:03d},,,")
    return "\n".join(rows) + "\n"


def _campaigns(now: datetime) -> int:
    starts, ends = _month_start(now, -1), _month_start(now, 2)
    created = 0
    if not Campaign.objects.filter(name=MARKETPLACE_NAME).exists():
        campaign_create(name=MARKETPLACE_NAME, starts_at=starts, ends_at=ends,
                        rates=[(10, 19, "1.0"), (20, 29, "2.0"), (30, 39, "3.0"), (40, 49, "4.0")],
                        user_filters={"mercard_status": [2, 3]},
                        payment_filters={"mercari_inner_payment": True, "mercari_outer_payment": False},
                        status=Campaign.Status.ACTIVE, by="demo")
        created += 1
    if not Campaign.objects.filter(name=OUTSIDE_NAME).exists():
        campaign_create(name=OUTSIDE_NAME, starts_at=starts, ends_at=ends, rates=[(10, 49, "0.5")],
                        user_filters={"mercard_status": [2, 3]},
                        payment_filters={"mercari_outer_payment": True,
                                         "merchant": {"shop_id": EXCLUDED_SHOPS, "invert": True},
                                         "excluded_categories": ["e_money_charge"]},
                        upper_limit=3000, status=Campaign.Status.ACTIVE, by="demo")
        created += 1
    return created


def _card_status_events(now: datetime) -> list[dict]:
    changed_at = (now - timedelta(days=320)).astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    events = []
    for number in range(1, 3001):
        rng = random.Random(f"card-{number}")
        status = rng.choices([1, 2, 3, 9], weights=[5, 25, 65, 5])[0]
        if number == 1:
            status = 3  # c-00001, the README's customer: a card in good standing, so the estimate example earns
        events.append({"event_id": f"demo-cs-{number:05d}", "customer_id": f"c-{number:05d}",
                       "mercard_status": status, "changed_at": changed_at})
    return events


def _bill_events(month_start: datetime, now: datetime) -> list[dict]:
    month = business_month_label(month_start)
    # Settled early in the next month, and never in the future (the demo runs on any day of the month).
    settled = min(_month_start(month_start, 1) + timedelta(days=1, hours=3), now - timedelta(hours=1))
    settled_at = settled.astimezone(UTC).isoformat().replace("+00:00", "Z")
    merchants = [("m-mercari", "mercard", "mercari")] * 6 + [
        ("m-mercari-id", "id", "outside"), ("m-mercari-ap", "apple_pay", "outside"),
        ("m-charge", "e_money_charge", "outside"), ("m-unknown-77", "mercard", "outside")]
    merchants += [(f"m-s{n:03d}", "mercard", "outside") for n in range(1, SHOPS + 1, 5)]
    events = []
    for number in range(1, BILL_CUSTOMERS + 1):
        rng = random.Random(f"bill-{month}-{number}")
        customer_id = f"c-{number:05d}"
        lines = []
        for k in range(rng.randint(1, 8)):
            merchant_id, method, channel = rng.choice(merchants)
            paid = month_start + timedelta(days=rng.randint(0, 27), hours=rng.randint(0, 23))
            lines.append({"payment_id": f"demo-p-{month}-{number}-{k}", "amount": rng.randint(3, 300) * 100,
                          "merchant_id": merchant_id, "payment_method": method, "channel": channel,
                          "paid_at": paid.astimezone(UTC).isoformat().replace("+00:00", "Z")})
        events.append({"event_id": f"demo-bs-{month}-{customer_id}", "bill_id": f"b-{month}-{customer_id}",
                       "customer_id": customer_id, "billing_month": month, "settled_at": settled_at, "lines": lines})
    return events


def _ingest(topic_name: str, events: list[dict], batch: int = 500) -> int:
    topic = get_topic(topic_name)
    new = 0
    for start in range(0, len(events), batch):
        counts = inbox_accept_batch(topic=topic, events=[event_clean(topic, e) for e in events[start:start + batch]])
        new += sum(n for outcome, n in counts.items() if outcome.value != "duplicate")
    return new


def seed(*, stdout, now: datetime | None = None) -> str:
    now = now or timezone.now()
    merchants = merchant_master_import_csv(text=merchant_csv())
    campaigns = _campaigns(now)
    statuses = _ingest("card-status", _card_status_events(now))
    last_month = _month_start(now, -1)
    bills = _ingest("card-bill-settled", _bill_events(last_month, now))
    report = month_settle(month=business_month_label(last_month), only_pending=True)
    delivered = grants_deliver_all()
    return (f"{campaigns} campaigns, {merchants['masters_created']} merchant masters, {statuses} card statuses, "
            f"{bills} bills for {business_month_label(last_month)}; settled {report.lines} lines "
            f"({report.lines_rewarded} rewarded, {report.lines_unknown_merchant} unknown merchant), "
            f"{delivered['sent']} grants delivered")
