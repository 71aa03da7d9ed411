"""The payment history screens in Japanese (the default without Accept-Language): states, yen, local times."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from history.models import PaymentEntry

from .factories import card_tree

pytestmark = pytest.mark.django_db
TOPIC = "payment-events"


@pytest.fixture
def japanese_client():
    client = Client()  # no Accept-Language: LANGUAGE_CODE, Japanese
    client.force_login(get_user_model().objects.create_superuser("op", "", "pw-123456789"))
    return client


def test_customer_history_reads_in_japanese_with_yen_and_japan_time(japanese_client, push):
    for event in card_tree(1, amount=12800, repaid=False):
        push(TOPIC, event)

    html = japanese_client.get("/admin/history/paymententry/customer/c-1/").content.decode()

    assert "c-1 の支払い履歴" in html and "請求済み" in html and "繰上げ返済" in html
    assert "¥12,800" in html
    assert "2026/10/01 18:00" in html  # 09:00 UTC, shown in Japan time
    assert "実施中のキャンペーンなし" in html  # the estimate's reason code, in words


def test_entry_page_names_the_states_of_its_transitions(japanese_client, push):
    for event in card_tree(3, amount=3200, repaid=False):
        push(TOPIC, event)
    entry = PaymentEntry.objects.get(payment_id="tx-3")

    html = japanese_client.get(f"/admin/history/paymententry/{entry.pk}/change/").content.decode()

    assert "オーソリ済み" in html and "請求済み" in html and "mercard.billed" in html and "¥3,200" in html


def test_entries_list_reads_in_japanese_with_yen(japanese_client, push):
    for event in card_tree(2, amount=3200):
        push(TOPIC, event)

    html = japanese_client.get("/admin/history/paymententry/").content.decode()

    assert "支払い明細" in html and "メルカード利用" in html and "返済済み" in html and "¥3,200" in html


def test_unknown_customer_is_said_in_japanese(japanese_client):
    html = japanese_client.get("/admin/history/paymententry/customer/c-404/").content.decode()

    assert "c-404 の支払い履歴もロイヤルティの記録もありません。" in html and "明細はありません。" in html
