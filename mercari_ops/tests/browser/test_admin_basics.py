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


@pytest.mark.parametrize(("path", "rendered"), [("/api/docs", ".swagger-ui .info"), ("/api/redoc", ".api-content")])
def test_the_api_docs_pages_render_from_our_server_alone_without_a_console_error(live_admin, page, path, rendered):
    elsewhere, errors = [], []
    page.on("request", lambda request: None if request.url.startswith((live_admin, "data:", "blob:"))
            else elsewhere.append(request.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{live_admin}{path}")
    page.wait_for_selector(rendered)
    page.wait_for_load_state("networkidle")
    assert page.get_by_text("mercari_ops internal API").count() >= 1  # the schema's title, rendered
    assert elsewhere == [] and errors == []
