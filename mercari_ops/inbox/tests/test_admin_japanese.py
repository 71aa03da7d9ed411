"""The inbox screens and the admin index's panel in Japanese (the default without Accept-Language)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mercari_ops.inbox.models import DeadLetter, InboxEvent

pytestmark = pytest.mark.django_db


def test_inbox_events_read_in_japanese_with_their_age(japanese_client):
    InboxEvent.objects.create(topic="payment-events", event_id="e-1", status=InboxEvent.Status.RETRY,
                              received_at=timezone.now() - timedelta(hours=3, minutes=5))

    html = japanese_client.get("/admin/inbox/inboxevent/").content.decode()

    assert "受信箱イベント" in html and "再試行予定" in html and "3時間前" in html
    assert "選択したイベントを今すぐハンドラーで再実行" in html


def test_dead_letters_and_the_index_panel_read_in_japanese(japanese_client):
    # the panel's count is grouped by thousands
    DeadLetter.objects.bulk_create([DeadLetter(topic="payment-events", body_sha256=f"{n:064d}", raw_body="{",
                                               error="bad JSON") for n in range(1234)])

    listing = japanese_client.get("/admin/inbox/deadletter/").content.decode()
    index = japanese_client.get("/admin/").content.decode()

    assert "デッドレター" in listing and "未対応" in listing and "選択したデッドレターを破棄" in listing
    assert "イベント受信箱" in index and "未対応のデッドレター（不正な本文）" in index and "1,234" in index
