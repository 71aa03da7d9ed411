"""The loyalty screens in Japanese (the default without Accept-Language): names, stages, yen and form errors."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from loyalty.models import Customer, RecomputeJob, StagePin
from loyalty.services import activity_apply, recompute_job_run
from loyalty.tests.factories import event, publish_rules

pytestmark = pytest.mark.django_db


@pytest.fixture
def japanese_client():
    client = Client()  # no Accept-Language: LANGUAGE_CODE, Japanese
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def test_customer_pages_read_in_japanese_with_stage_names_and_yen(japanese_client):
    publish_rules()
    activity_apply(events=[event(customer_id="c-1", amount=60000)])
    customer = Customer.objects.get()

    page = japanese_client.get(f"/admin/loyalty/customer/{customer.pk}/change/").content.decode()
    assert "ロイヤルティステージ" in page and "期間ごとの集計" in page and "このステージの理由" in page
    assert "Gold (30)" in page and "¥60,000" in page

    why = japanese_client.get(f"/admin/loyalty/customer/{customer.pk}/why/").content.decode()
    assert "購入金額（円）: ¥60,000 / 基準 ¥50,000、達成" in why and "月次集計（直近24か月）" in why

    totals = japanese_client.get("/admin/loyalty/monthlytotal/").content.decode()
    assert "月次集計" in totals and "購入" in totals and "¥60,000" in totals

    changes = japanese_client.get("/admin/loyalty/stagechange/").content.decode()
    assert "ステージ変更" in changes and "Gold (30)" in changes and "昇格（利用）" in changes


def test_pin_form_errors_are_japanese_and_on_their_field(japanese_client):
    publish_rules()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    response = japanese_client.post("/admin/loyalty/stagepin/add/", {
        "customer_ref": "c-77", "floor": 30, "reason": "サポート対応",
        "expires_at_0": yesterday.strftime("%Y-%m-%d"), "expires_at_1": "00:00:00"})
    assert response.status_code == 200
    assert "有効期限は未来の日時にしてください" in response.content.decode()
    assert response.context["adminform"].form.errors["expires_at"]
    assert not StagePin.objects.exists()


def test_recomputation_progress_reads_in_japanese(japanese_client):
    activity_apply(events=[event(customer_id="c-1", amount=60000)])
    job = RecomputeJob.objects.get(rule_version=publish_rules())
    waiting = japanese_client.get("/admin/loyalty/recomputejob/").content.decode()
    assert "ステージ再計算" in waiting and "待機中: 1人中0人（0%）" in waiting

    recompute_job_run(job_id=job.pk)
    done = japanese_client.get("/admin/loyalty/recomputejob/").content.decode()
    assert "完了: 1人中1人（100%）、1人のステージが変更" in done
