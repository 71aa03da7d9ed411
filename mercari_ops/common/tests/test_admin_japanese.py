"""The platform's screens in Japanese (the default without Accept-Language): change requests, the audit log
in Japan time, service tokens, the operations page."""

from datetime import UTC, datetime

import pytest
from django_celery_beat.models import PeriodicTask

from mercari_ops.common.models import AuditLogEntry, ChangeRequest
from mercari_ops.common.periodic import periodic_tasks_sync

pytestmark = pytest.mark.django_db


def test_a_change_request_page_reads_in_japanese(japanese_client):
    change = ChangeRequest.objects.create(kind="campaign.activate", target_type="campaigns.campaign",
                                          target_id="7", target_repr="Mercard weekend", requested_by="alice",
                                          before={"status": "draft"}, after={"status": "active"},
                                          preview={"customers": 120})

    html = japanese_client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()

    assert "変更申請" in html and "承認待ち" in html and "変更前／変更後" in html and "申請者" in html
    assert "承認して適用" in html and "却下" in html


def test_the_audit_log_reads_in_japanese_in_japan_time(japanese_client):
    entry = AuditLogEntry.objects.create(actor="alice", action="campaign.activate", target_type="campaigns.campaign",
                                         target_id="7")
    AuditLogEntry.objects.filter(pk=entry.pk).update(at=datetime(2026, 12, 1, 15, 30, tzinfo=UTC))
    entry.refresh_from_db()

    listing = japanese_client.get("/admin/common/auditlogentry/").content.decode()

    assert "監査ログ" in listing and "実行者" in listing and "選択したエントリーを CSV で出力" in listing
    assert str(entry).startswith("2026-12-02 00:30 alice")  # 15:30 UTC is the next day in Tokyo


def test_service_tokens_and_operations_pages_read_in_japanese(japanese_client):
    tokens = japanese_client.get("/admin/common/servicetoken/").content.decode()
    operations = japanese_client.get("/admin/operations/").content.decode()

    assert "サービストークン" in tokens and "状態" in tokens and "失効" in tokens  # the state filter
    assert "運用状況" in operations and "直近24時間" in operations


def test_periodic_tasks_say_what_they_do_in_japanese_and_keep_english_rows(japanese_client):
    periodic_tasks_sync()

    html = japanese_client.get("/admin/django_celery_beat/periodictask/").content.decode()

    assert "処理内容" in html and "前回実行（日本時間）" in html
    assert "待機時間（バックオフ）が過ぎた受信箱イベントを再試行します。" in html
    # the beat row itself stays in English, whatever language migrate ran in
    assert PeriodicTask.objects.get(name="inbox.process_due").description == (
        "Retry inbox events whose backoff has passed.")
