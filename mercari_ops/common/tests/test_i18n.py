"""Japanese first, English available: the admin's language by default, by browser, by the user's switch; the
machine paths speak English whatever the caller sends."""

import pytest
from django.conf import settings
from django.test import Client

from mercari_ops.common.i18n import ROOT, catalogs, catalogs_compile

pytestmark = pytest.mark.django_db


def test_the_admin_speaks_japanese_when_the_browser_sends_no_accept_language():
    page = Client().get("/admin/login/")
    assert page["Content-Language"] == "ja"
    assert "ログイン" in page.content.decode()


def test_the_browser_can_ask_for_english(client):
    page = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert page["Content-Language"] == "en"
    assert "Log in" in page.content.decode()


def test_the_language_switch_wins_over_the_browser():
    client = Client()
    # given a Japanese browser that picks English in the switch
    answer = client.post("/i18n/setlang/", {"language": "en", "next": "/admin/login/"},
                         HTTP_ACCEPT_LANGUAGE="ja")
    assert answer.status_code == 302 and answer.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    # then the next page is English, and the switch offers Japanese back
    page = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "Log in" in page and 'id="language-switch"' in page and 'value="ja"' in page


def test_machine_paths_answer_in_english_to_a_japanese_caller(client):
    answer = client.post("/api/campaigns/estimate", data=b"{}", content_type="application/json",
                         HTTP_ACCEPT_LANGUAGE="ja")
    assert answer.status_code == 401
    assert "credentials were not provided" in answer.json()["error"]
    assert "Content-Language" not in answer


def test_every_shipped_catalog_compiles(tmp_path):
    import shutil

    for po in catalogs():
        target = tmp_path / po.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(po, target)
    # then every catalog compiles, Japanese included
    compiled = catalogs_compile(tmp_path)
    assert any(p.parts[-3] == "ja" for p in compiled)
    assert len(compiled) == len(catalogs()) and all(p.stat().st_size > 0 for p in compiled)


def test_a_users_language_follows_them_to_another_browser():
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("mk", password="pw-Mercari-1", is_staff=True)
    # given the user picks English in one browser
    first = Client()
    first.post("/admin/login/", {"username": "mk", "password": "pw-Mercari-1", "next": "/admin/"})
    first.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    # when they sign in from another browser that prefers Japanese
    second = Client(HTTP_ACCEPT_LANGUAGE="ja")
    assert "ログイン" in second.get("/admin/login/").content.decode()
    second.post("/admin/login/", {"username": "mk", "password": "pw-Mercari-1", "next": "/admin/"})
    # then the admin speaks English to them
    page = second.get("/admin/password_change/")
    assert page["Content-Language"] == "en" and "Password change" in page.content.decode()
