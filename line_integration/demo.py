"""Demo data: c-00001..c-00300 linked to LINE, two templates and a small Braze campaign.

Nothing here calls LINE: with `make run` the sender, the rich-menu sweep and the audience
job (worker + beat) deliver to the sandbox, so the admin shows deliveries, rich menus and
audience jobs moving. Seeding works whether or not the sandbox is running.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .models import LineLinkageUser, LineUser, MessageTemplate
from .services import message_enqueue, template_save

DEMO_CUSTOMERS = [f"c-{i:05d}" for i in range(1, 301)]


def demo_line_user_id(customer_id: str) -> str:
    return "U" + hashlib.md5(f"demo:{customer_id}".encode()).hexdigest()


def seed(*, stdout, now: datetime | None = None) -> str:
    now = now or timezone.now()
    with transaction.atomic():
        if not MessageTemplate.objects.filter(name="saved_search_new_items").exists():
            template_save(name="saved_search_new_items", description="保存した検索条件の新着商品",
                          messages=[{"type": "text", "text": "保存した検索条件（{search_id}）に新着商品があります！"}])
        if not MessageTemplate.objects.filter(name="campaign_announcement").exists():
            template_save(name="campaign_announcement", description="全員に同じ文面（マルチキャスト）",
                          messages=[{"type": "text", "text": "今週末はメルカードのお支払いでポイント2倍！"}])
        before = LineUser.objects.filter(customer_id__in=DEMO_CUSTOMERS).count()
        LineUser.objects.bulk_create([
            LineUser(line_user_id=demo_line_user_id(c), customer_id=c, status=LineUser.Status.LINKED, linked_at=now)
            for c in DEMO_CUSTOMERS], ignore_conflicts=True)
        LineLinkageUser.objects.bulk_create([
            LineLinkageUser(line_id=demo_line_user_id(c), created=now, updated=now) for c in DEMO_CUSTOMERS],
            ignore_conflicts=True)
        linked = LineUser.objects.filter(customer_id__in=DEMO_CUSTOMERS).count() - before
        for index, customer_id in enumerate(DEMO_CUSTOMERS[:40] + ["c-00301"]):
            message_enqueue(dispatch_id="demo-dispatch-1", user_id=customer_id, template="saved_search_new_items",
                            params={"search_id": f"s-{index}"}, campaign_id="braze-demo-saved-search")
        for customer_id in DEMO_CUSTOMERS[:120]:
            message_enqueue(dispatch_id="demo-dispatch-2", user_id=customer_id, template="campaign_announcement",
                            campaign_id="braze-demo-announcement")
    return (f"{linked} demo customers linked to LINE ({len(DEMO_CUSTOMERS)} in all); Braze demo deliveries queued "
            "for the sender (make run delivers them to the LINE sandbox)")
