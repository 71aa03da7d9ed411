"""The campaign screens in Japanese (issue 19 point 1): a browser that sends no Accept-Language gets Japanese
labels, messages and validation errors, amounts as ¥12,345 and points as 12,345 pt; customers are told about
their points in Japanese whatever language the sender runs in."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import translation

from campaigns.models import Campaign
from campaigns.services import bills_settle
from campaigns.services.grants import notification_text
from campaigns.tests.factories import bill_event, line
from campaigns.tests.test_admin import _form

pytestmark = pytest.mark.django_db


@pytest.fixture
def japanese(admin_user):
    """A browser without Accept-Language: the project's default language, Japanese."""
    client = Client()
    client.force_login(admin_user)
    return client


def test_campaign_list_reads_japanese_with_caps_in_points(japanese, campaigns):
    html = japanese.get("/admin/campaigns/campaign/").content.decode()
    assert '<html lang="ja"' in html
    assert "キャンペーン" in html and "1人あたり上限" in html and "実施中" in html
    assert "1,000 pt" in html  # the outside campaign's cap, not "1000"
    assert "10-19 Regular: 1.0%" in html and "20-29: 2.0%" in html  # the stages the rules in force name
    assert "Active" not in html


def test_rewards_list_shows_yen_and_points(japanese, campaigns, customer, record_bill):
    # given: a settled marketplace purchase of 12,345 yen at 1.0% (stage 10)
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 12_345)]))])
    # when
    html = japanese.get("/admin/campaigns/campaignreward/").content.decode()
    # then
    assert "キャンペーンのポイント還元" in html and "金額" in html and "ステージ" in html
    assert "¥12,345" in html and "123 pt" in html


def test_a_bad_campaign_is_refused_with_a_japanese_message(japanese):
    response = japanese.post("/admin/campaigns/campaign/add/", _form(**{"rates-1-stage_from": "15"}))
    assert response.status_code == 200
    assert "ステージ範囲 10-20 と 15-40 が重なっています" in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_refused_merchant_file_names_its_problems_in_japanese(japanese):
    upload = SimpleUploadedFile("shops.csv", b"merchant_id,payment_method,master_id,master_name,is_marketplace,"
                                             b"category\nm-1,,,Shop,maybe,\n")
    html = japanese.post("/admin/campaigns/merchantmaster/import-csv/", {"file": upload}).content.decode()
    assert "取り込みを中止しました（変更なし）" in html
    assert "<td>2</td><td>master_id</td>\n<td>空です</td>" in html


def test_the_english_switch_still_reads_english(admin_user, campaigns):
    english = Client(HTTP_ACCEPT_LANGUAGE="en")
    english.force_login(admin_user)
    html = english.get("/admin/campaigns/campaign/").content.decode()
    assert "Active" in html and "upper limit".capitalize() in html and "1,000 pt" in html


def test_customers_are_notified_in_japanese_even_from_an_english_request():
    with translation.override("en"):
        text = notification_text(points=1234, month="2026-11")
    assert text.startswith("2026年11月ご請求分")
    assert "1,234 ポイント" in text
