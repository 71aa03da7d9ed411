"""The LINE screens in Japanese (the default without Accept-Language), and the texts customers receive in
Japanese whatever language the operator's request runs in."""

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from line_integration import services
from line_integration.models import AudienceGroup, AudienceJob, LineRequest, LineUser, OutboundMessage

pytestmark = pytest.mark.django_db


def test_audience_jobs_read_in_japanese_with_grouped_counts(japanese_client):
    now = timezone.now()
    group = AudienceGroup.objects.create(audience_group_id=42, description="linked-2026-12", created_at=now,
                                         expires_at=now + timedelta(days=180))
    AudienceJob.objects.create(audience_group=group, description="add-1", user_count=12345, created_at=now)

    html = japanese_client.get("/admin/line_integration/audiencejob/").content.decode()

    assert "オーディエンスジョブ" in html
    assert "処理中" in html
    assert "ユーザー" in html  # "users": Django's own catalog answers first ("ユーザー")
    assert "12,345" in html
    assert "オーディエンスジョブを今すぐ実行" in html


def test_line_requests_name_kind_and_status_in_japanese(japanese_client):
    request = LineRequest.objects.create(kind="multicast", body={}, recipient_count=1200,
                                         next_attempt_at=timezone.now(), created_at=timezone.now())

    listing = japanese_client.get("/admin/line_integration/linerequest/").content.decode()
    page = japanese_client.get(f"/admin/line_integration/linerequest/{request.pk}/change/").content.decode()

    assert "LINE リクエスト" in listing and "マルチキャスト" in listing and "1,200" in listing
    assert f"マルチキャスト #{request.pk} 宛先 1200 件（未処理）" in page  # no "LineRequest object (1)"


def test_campaign_deliveries_page_in_japanese(japanese_client):
    html = japanese_client.get("/admin/line_integration/campaigndelivery/").content.decode()

    assert "Braze キャンペーン別の配信" in html and "最近の失敗" in html and "失敗はありません。" in html


def test_the_test_message_reaches_the_customer_in_japanese_from_an_english_operator():
    LineUser.objects.create(line_user_id="U" + "b" * 32, customer_id="c-7", status=LineUser.Status.LINKED)

    with translation.override("en"):
        services.test_message_send(customer_id="c-7")

    message = OutboundMessage.objects.get(user_id="c-7")
    assert message.params["messages"] == [{"type": "text", "text": "メルカリ Ops からのテストメッセージです。"}]


def test_a_template_that_is_not_a_list_of_messages_is_refused_in_japanese(japanese_client):
    response = japanese_client.post("/admin/line_integration/messagetemplate/add/", {
        "name": "broken", "description": "", "messages": '{"type": "text"}', "enrich_path": "",
        "fallback_messages": "", "active": "on"})

    assert response.status_code == 200  # the form again, with the error on the field
    assert "LINE メッセージオブジェクトの空でないリストを指定してください" in response.content.decode()


def test_a_skipped_message_gives_its_reason_as_a_japanese_sentence(japanese_client):
    OutboundMessage.objects.create(dispatch_id="d-1", user_id="c-9", status=OutboundMessage.Status.SKIPPED,
                                   reason=OutboundMessage.SkipReason.BLOCKED, created_at=timezone.now())

    html = japanese_client.get("/admin/line_integration/outboundmessage/").content.decode()

    assert "送信メッセージ" in html and "スキップ" in html
    assert "LINEユーザーがアカウントをブロックしています" in html
