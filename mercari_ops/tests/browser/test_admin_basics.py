"""Logging in as a marketer and as an operator, in Japanese by default, and switching to English."""

import pytest

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_marketer_logs_in_and_sees_the_japanese_admin_with_campaigns_but_no_inbox(live_admin, page, marketer):
    log_in(page, live_admin, marketer)
    assert page.url.endswith("/admin/")
    assert page.locator("html").get_attribute("lang") == "ja"
    assert "メルカリ Ops バックオフィス" in page.locator("#site-name").inner_text()
    assert page.locator("a[href='/admin/campaigns/campaign/']").count() >= 1
    assert page.locator("a[href='/admin/inbox/deadletter/']").count() == 0


def test_an_operator_logs_in_and_reaches_the_dead_letters(live_admin, page, operator):
    log_in(page, live_admin, operator)
    page.goto(f"{live_admin}/admin/inbox/deadletter/")
    assert page.locator("#changelist").count() == 1


@pytest.mark.browser_locale("ja-JP")
def test_the_language_switch_turns_the_admin_english_and_back(live_admin, page, marketer):
    log_in(page, live_admin, marketer)
    with page.expect_navigation():
        page.select_option("#language-select", "en")
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Mercari Ops back-office" in page.locator("#site-name").inner_text()
    with page.expect_navigation():
        page.select_option("#language-select", "ja")
    assert page.locator("html").get_attribute("lang") == "ja"
