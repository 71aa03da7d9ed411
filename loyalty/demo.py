"""Demo data: stage rules v1 and a year and a half of activities for c-00001 .. c-03000.

Activities go through the real inbox batch path (same validation, dedupe and handler as
`ingest_jsonl`), with deterministic event IDs, so running the seed again adds nothing.
c-00001 is the README's customer: a fixed history that makes them Silver whatever the day
(`SHOWCASE`, all within the last six months), so the README's loyalty and estimate examples
answer the same figures on every machine.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta

from django.db.models import Count

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.inbox.models import DeadLetter
from mercari_ops.inbox.registry import get_topic
from mercari_ops.inbox.services import Outcome, event_clean, inbox_accept_batch, inbox_receive

from .models import Customer, StagePin, StageRuleVersion
from .topic import TOPIC

DEMO_RULES = {
    "window_months": 12,
    "stages": [
        {"stage": 10, "name": "Regular", "combine": "all", "thresholds": {}},
        {"stage": 20, "name": "Silver", "combine": "all", "thresholds": {"buy_amount": 20000, "buy_count": 3}},
        {"stage": 30, "name": "Gold", "combine": "any", "thresholds": {"buy_amount": 100000, "sell_count": 20}},
        {"stage": 40, "name": "Platinum", "combine": "all",
         "thresholds": {"buy_amount": 200000, "sell_amount": 100000, "pay_amount": 50000}},
    ],
}

SHOWCASE_CUSTOMER = "c-00001"
# kind -> [(days ago, amount)]: buy 41,200 yen in 6 purchases (Silver: 20,000 and 3), 3 sales, 2 payments.
SHOWCASE = {
    "buy": [(170, 4800), (130, 6200), (80, 9800), (45, 5400), (20, 8600), (3, 6400)],
    "sell": [(150, 3500), (60, 12000), (10, 2400)],
    "pay": [(100, 1980), (30, 5600)],
}

# (share of customers, purchases, sales, payments, typical amount) per profile
PROFILES = [(0.55, (0, 4), (0, 2), (0, 3), 3000), (0.25, (3, 10), (0, 6), (2, 8), 8000),
            (0.12, (8, 25), (5, 30), (5, 20), 12000), (0.08, (20, 40), (15, 40), (10, 30), 15000)]


def _showcase_events(now: datetime) -> list[dict]:
    return [{"event_id": f"demo-{SHOWCASE_CUSTOMER}-{kind}-{n}", "customer_id": SHOWCASE_CUSTOMER, "kind": kind,
             "amount": amount, "occurred_at": (now - timedelta(days=days)).isoformat().replace("+00:00", "Z")}
            for kind, rows in SHOWCASE.items() for n, (days, amount) in enumerate(rows)]


def _events_for(number: int, now: datetime) -> list[dict]:
    customer_id = f"c-{number:05d}"
    if customer_id == SHOWCASE_CUSTOMER:
        return _showcase_events(now)
    rng = random.Random(number)
    pick = rng.random()
    profile = PROFILES[-1]
    for candidate in PROFILES:
        pick -= candidate[0]
        if pick <= 0:
            profile = candidate
            break
    _, buys, sells, pays, typical = profile
    events = []
    for kind, (low, high) in (("buy", buys), ("sell", sells), ("pay", pays)):
        for n in range(rng.randint(low, high)):
            months_ago = rng.randint(0, 17)
            day, hour = rng.randint(1, 28), rng.randint(0, 23)
            index = now.year * 12 + now.month - 1 - months_ago
            at = datetime(index // 12, index % 12 + 1, day, hour, tzinfo=UTC)
            if at > now:
                at = now - timedelta(hours=rng.randint(1, 48))
            amount = max(100, int(rng.gauss(typical, typical / 3)))
            event_id = f"demo-{customer_id}-{kind}-{n}"
            events.append({"event_id": event_id, "customer_id": customer_id, "kind": kind, "amount": amount,
                           "occurred_at": at.isoformat().replace("+00:00", "Z")})
            if rng.random() < 0.05:  # a cancellation
                events.append({**events[-1], "event_id": event_id + "-rev", "amount": -amount})
    return events


GIFT_EVENT_ID = "demo-c-00003-gift-1"


def _dead_letter_for_operators(now: datetime) -> int:
    """A push the schema refuses (`kind: gift`), sent as Pub/Sub sends it: the dead letter an operator opens,
    fixes (kind "buy") and replays from its page in the admin (Event inbox -> dead letters)."""
    if DeadLetter.objects.filter(topic=TOPIC, event_id=GIFT_EVENT_ID).exists():
        return 0
    event = {"event_id": GIFT_EVENT_ID, "customer_id": "c-00003", "kind": "gift", "amount": 2500,
             "occurred_at": (now - timedelta(days=2)).isoformat().replace("+00:00", "Z")}
    body = {"message": {"data": base64.b64encode(json.dumps(event).encode()).decode(), "messageId": "demo-gift-1",
                        "attributes": {"source": "marketplace"}},
            "subscription": "projects/demo/subscriptions/loyalty-activity-push"}
    try:
        inbox_receive(topic_name=TOPIC, body=json.dumps(body).encode())
    except ValidationFailed:
        return 1  # refused and kept as a dead letter, as intended
    return 0


def seed(*, stdout, customers: int = 3000, now: datetime | None = None) -> str:
    from .services import recompute_job_run, rules_version_publish, stage_pin_set

    added = []
    if not StageRuleVersion.objects.exists():
        version = rules_version_publish(definition=DEMO_RULES, by="demo", note="デモ用のステージ判定ルール")
        recompute_job_run(job_id=version.recompute_jobs.get().pk)
        added.append("stage rules v1")
    topic = get_topic(TOPIC)
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    processed = 0
    batch: list[dict] = []
    for number in range(1, customers + 1):
        batch += [event_clean(topic, event) for event in _events_for(number, now)]
        if len(batch) >= 2000 or number == customers:
            processed += inbox_accept_batch(topic=topic, events=batch)[Outcome.PROCESSED]
            batch = []
    if processed:
        added.append(f"{processed} activities for {customers} customers")
    if _dead_letter_for_operators(now):
        added.append("1 dead letter (kind: gift)")
    pinned = Customer.objects.filter(customer_id="c-00002").first()
    if pinned is not None and not StagePin.objects.filter(customer=pinned).exists():
        stage_pin_set(customer_id="c-00002", floor=30, reason="デモ: サポート対応のお詫びとして固定",
                      expires_at=now + timedelta(days=90), by="demo")
        added.append("1 pin")
    if not added:
        return "added nothing (already seeded)"
    by_stage = dict(Customer.objects.values_list("stage").annotate(n=Count("id")).order_by("stage"))
    return f"{', '.join(added)}; customers per stage {by_stage}"
