"""Admin logins: lockout after wrong passwords (django-axes), TOTP for operators, approvers and superusers
(django-otp), production cookie settings and `check --deploy`, role changes audited.

These tests log in through the admin's login form, never force_login (which the root conftest turns into a
session already verified with a second factor)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from mercari_ops.common.models import AuditLogEntry
from mercari_ops.common.roles import role_permissions_sync
from mercari_ops.common.tests.test_schema_contract_live import ROOT

PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff(db):
    role_permissions_sync()

    def make(username: str, group: str | None = None, **flags):
        user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True, **flags)
        if group:
            Group.objects.get_or_create(name=group)
            user.groups.add(Group.objects.get(name=group))
        return user

    return make


def login(client: Client, username: str, password: str = PASSWORD):
    return client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})


def code(device: TOTPDevice) -> str:
    """The code an authenticator app shows now for this device."""
    generator = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{generator.token():0{device.digits}d}"


# --- lockout --------------------------------------------------------------------------------------------


def login_from(client: Client, ip: str, username: str, password: str = PASSWORD):
    return client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=ip)


@pytest.fixture
def clock(monkeypatch):
    """axes checks the cool-off with proxy.now: the test moves it instead of sleeping. It starts at the real time
    because the first failure of a (username, IP) pair is stamped by the row's auto_now_add."""
    from axes.handlers import proxy

    start = timezone.now()
    state = {"now": start, "at": lambda minutes: start + timedelta(minutes=minutes)}
    monkeypatch.setattr(proxy, "now", lambda: state["now"])
    return state


def test_ten_wrong_passwords_lock_the_username_from_every_ip_for_the_cool_off(staff, settings, clock):
    staff("mika", "marketers")
    assert settings.AXES_FAILURE_LIMIT == 10 and settings.AXES_COOLOFF_TIME == timedelta(minutes=30)
    attacker = Client()
    # given nine wrong passwords from IP A: still allowed to try
    for _ in range(9):
        assert login_from(attacker, "10.0.0.1", "mika", "wrong").status_code == 200
    # when the tenth is wrong
    assert login_from(attacker, "10.0.0.1", "mika", "wrong").status_code == 429
    # then the right password from another IP is refused until the cool-off ends
    clock["now"] = clock["at"](29)
    owner = Client()
    assert login_from(owner, "10.0.0.2", "mika").status_code == 429
    assert "_auth_user_id" not in owner.session
    # another user at a third IP is not locked
    staff("nori", "marketers")
    assert login_from(Client(), "10.0.0.3", "nori").status_code == 302
    # after the cool-off (a refused try during the lock starts it again) the right password works again
    clock["now"] = clock["at"](61)
    assert login_from(owner, "10.0.0.2", "mika").status_code == 302
    assert owner.session["_auth_user_id"]


def test_ten_wrong_passwords_for_different_usernames_lock_the_ip(staff, clock):
    staff("nori", "marketers")
    sprayer = Client()
    # given one wrong password each for ten usernames from one IP (a password spray)
    for number in range(9):
        assert login_from(sprayer, "10.0.0.9", f"user{number}", "wrong").status_code == 200
    assert login_from(sprayer, "10.0.0.9", "user9", "wrong").status_code == 429
    # then that IP is refused even with a real user's right password
    clock["now"] = clock["at"](29)
    assert login_from(Client(), "10.0.0.9", "nori").status_code == 429
    # while the same user from another IP logs in (no username reached the limit)
    assert login_from(Client(), "10.0.0.10", "nori").status_code == 302
    # and after the cool-off (counted again from the refused try at minute 29) the IP may try again
    clock["now"] = clock["at"](60)
    assert login_from(Client(), "10.0.0.9", "nori").status_code == 302


# --- second factor ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("group,flags", [("operators", {}), ("approvers", {}), (None, {"is_superuser": True})])
def test_a_role_that_requires_totp_cannot_reach_the_admin_without_it(client, staff, group, flags):
    user = staff("olga", group, **flags)
    assert login(client, "olga").status_code == 302
    # the index and any other admin page send to the enrolment page
    for url in ("/admin/", "/admin/common/auditlogentry/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/otp/enrol/?next=")
    # the enrolment page shows a QR code (inline SVG) and the secret of a new, unconfirmed device
    page = client.get("/admin/otp/enrol/?next=/admin/")
    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    content = page.content.decode()
    assert "<svg" in content
    assert base64.b32encode(device.bin_key).decode() in content
    # a wrong code confirms nothing
    assert client.post("/admin/otp/enrol/", {"token": "000000" if code(device) != "000000" else "111111",
                                             "next": "/admin/"}).status_code == 200
    assert client.get("/admin/").status_code == 302
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    # the device's throttle refuses codes for a second after a failure: that second has passed
    waited = datetime.now(UTC) - timedelta(seconds=5)
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=waited)
    # the right code confirms the device and opens the admin
    confirmed = client.post("/admin/otp/enrol/", {"token": code(device), "next": "/admin/"})
    assert (confirmed.status_code, confirmed["Location"]) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    assert AuditLogEntry.objects.filter(action="user.otp_enrol", target_id=str(user.pk)).exists()


# --- set-up codes: a password alone cannot enrol a first device (OTP_ENROLMENT_GRANT_REQUIRED) ------------------


def test_with_set_up_codes_required_a_password_alone_cannot_enrol_a_device(client, staff, settings):
    from mercari_ops.common.otp_enrolment import grant_issue

    settings.OTP_ENROLMENT_GRANT_REQUIRED = True
    user = staff("olga", "operators")
    assert login(client, "olga").status_code == 302
    # given only the password: the enrolment page asks for a set-up code and shows no QR code nor secret
    page = client.get("/admin/otp/enrol/?next=/admin/")
    content = page.content.decode()
    assert page.status_code == 200 and 'name="code"' in content and 'id="otp-secret"' not in content
    assert not TOTPDevice.objects.filter(user=user).exists()
    # a guessed code, and a device confirmation without a code, get nowhere
    assert "not valid" in client.post("/admin/otp/enrol/", {"code": "ABCD-EFGH", "next": "/admin/"}).content.decode()
    assert 'name="code"' in client.post("/admin/otp/enrol/", {"token": "123456", "next": "/admin/"}).content.decode()
    assert not TOTPDevice.objects.filter(user=user).exists() and client.get("/admin/").status_code == 302
    # when a superuser issues a code (typed in lower case, with spaces, still accepted) the QR code follows
    issued = grant_issue(user=user, issued_by="root")
    typed = issued.lower().replace("-", " ")
    to_qr = client.post("/admin/otp/enrol/", {"code": typed, "next": "/admin/"})
    assert (to_qr.status_code, to_qr["Location"]) == (302, "/admin/otp/enrol/?next=/admin/")
    assert 'id="otp-secret"' in client.get("/admin/otp/enrol/?next=/admin/").content.decode()
    device = TOTPDevice.objects.get(user=user)
    confirmed = client.post("/admin/otp/enrol/", {"token": code(device), "next": "/admin/"})
    assert (confirmed.status_code, confirmed["Location"]) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200
    # the code was used once: issued, used and audited
    from mercari_ops.common.models import OtpEnrolmentGrant

    assert OtpEnrolmentGrant.objects.get(user=user).used_at is not None
    assert AuditLogEntry.objects.filter(action="user.otp_grant", target_id=str(user.pk)).exists()


def test_a_set_up_code_is_refused_once_replaced_or_expired(client, staff, settings):
    from mercari_ops.common.otp_enrolment import grant_find, grant_issue

    settings.OTP_ENROLMENT_GRANT_REQUIRED = True
    user = staff("omar", "approvers")
    first = grant_issue(user=user, issued_by="root")
    second = grant_issue(user=user, issued_by="root")  # replaces the first
    assert grant_find(user=user, code=first) is None and grant_find(user=user, code=second) is not None
    later = timezone.now() + timedelta(hours=settings.OTP_ENROLMENT_GRANT_HOURS, minutes=1)
    assert grant_find(user=user, code=second, now=later) is None
    # a code entered, then replaced before the device is confirmed: the confirmation starts over
    assert login(client, "omar").status_code == 302
    client.post("/admin/otp/enrol/", {"code": second, "next": "/admin/"})
    device_page = client.get("/admin/otp/enrol/?next=/admin/")
    assert 'id="otp-secret"' in device_page.content.decode()
    grant_issue(user=user, issued_by="root")
    device = TOTPDevice.objects.get(user=user)
    again = client.post("/admin/otp/enrol/", {"token": code(device), "next": "/admin/"})
    assert again.status_code == 302 and again["Location"].startswith("/admin/otp/enrol/")
    assert not TOTPDevice.objects.get(user=user).confirmed


def test_only_superusers_issue_set_up_codes_in_the_user_admin_and_the_code_is_shown_once(client, staff, settings):
    root = staff("root", None, is_superuser=True)
    TOTPDevice.objects.create(user=root, name="root", confirmed=True)
    target = staff("nina", "operators")
    assert login(client, "root").status_code == 302
    client.post("/admin/otp/verify/", {"token": code(TOTPDevice.objects.get(user=root)), "next": "/admin/"})
    changelist = client.get("/admin/auth/user/")
    assert "otp_grant_issue" in changelist.content.decode()
    done = client.post("/admin/auth/user/", {"action": "otp_grant_issue", "_selected_action": [target.pk]},
                       follow=True)
    shown = [str(message) for message in done.context["messages"]]
    assert len(shown) == 1 and "nina" in shown[0]
    from mercari_ops.common.otp_enrolment import grant_find

    issued = shown[0].split(": ", 1)[1].split(".", 1)[0]
    assert grant_find(user=target, code=issued) is not None
    # an operator who may change users does not see the action
    operator = staff("otto", "operators")
    operator.user_permissions.add(*Permission.objects.filter(codename__in=["view_user", "change_user"]))
    TOTPDevice.objects.create(user=operator, name="otto", confirmed=True)
    other = Client()
    assert login(other, "otto").status_code == 302
    other.post("/admin/otp/verify/", {"token": code(TOTPDevice.objects.get(user=operator)), "next": "/admin/"})
    assert "otp_grant_issue" not in other.get("/admin/auth/user/").content.decode()


def test_the_command_prints_a_code_for_the_first_superuser(staff):
    from io import StringIO

    from django.core.management import call_command

    from mercari_ops.common.otp_enrolment import grant_find

    user = staff("first", None, is_superuser=True)
    out = StringIO()
    call_command("otp_enrolment_code", "first", stdout=out)
    printed = out.getvalue().split(": ", 1)[1].split(" ", 1)[0]
    assert grant_find(user=user, code=printed) is not None


def test_set_up_code_bad_input_is_a_form_error_and_an_unknown_user_a_command_error(client, staff, settings):
    from django.core.management import CommandError, call_command

    settings.OTP_ENROLMENT_GRANT_REQUIRED = True
    staff("olga", "operators")
    assert login(client, "olga").status_code == 302
    for typed in ("", "   ", "X" * 500, "ABCD-EFGH\u0000"):
        page = client.post("/admin/otp/enrol/", {"code": typed, "next": "/admin/"})
        assert page.status_code == 200 and 'class="errorlist' in page.content.decode(), typed
    assert not TOTPDevice.objects.exists()
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("otp_enrolment_code", "nobody")


def test_a_user_with_a_device_enters_a_code_after_the_password(client, staff):
    user = staff("olga", "operators")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    login(client, "olga")
    response = client.get("/admin/campaigns/campaign/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/otp/verify/?next=/admin/campaigns/campaign/"
    typo = client.post("/admin/otp/verify/", {"token": "12345a", "next": "/admin/"})
    assert typo.status_code == 200 and "Enter the digits" in typo.content.decode()
    assert client.get("/admin/").status_code == 302
    verified = client.post("/admin/otp/verify/", {"token": code(device), "next": "/admin/campaigns/campaign/"})
    assert (verified.status_code, verified["Location"]) == (302, "/admin/campaigns/campaign/")
    assert client.get("/admin/").status_code == 200


def test_a_marketer_without_a_device_reaches_the_admin(client, staff):
    staff("mika", "marketers")
    login(client, "mika")
    assert client.get("/admin/").status_code == 200
    # and may enrol (optional): the page says so
    page = client.get("/admin/otp/enrol/").content.decode()
    assert "<svg" in page and "Your role requires" not in page


def test_a_marketer_with_a_device_must_enter_a_code(client, staff):
    user = staff("mika", "marketers")
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    login(client, "mika")
    assert client.get("/admin/")["Location"].startswith("/admin/otp/verify/")


def test_the_page_asked_for_is_reached_after_the_code_query_string_included(client, staff):
    user = staff("olga", "operators")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    login(client, "olga")
    asked = "/admin/common/auditlogentry/?action=token.revoke&actor=olga"
    sent_to = client.get(asked)["Location"]
    assert sent_to == "/admin/otp/verify/?next=/admin/common/auditlogentry/%3Faction%3Dtoken.revoke%26actor%3Dolga"
    form = client.get(sent_to).content.decode()
    assert f'name="next" value="{asked.replace("&", "&amp;")}"' in form
    verified = client.post("/admin/otp/verify/", {"token": code(device), "next": asked})
    assert verified["Location"] == asked


def test_the_next_parameter_cannot_leave_the_site(client, staff):
    user = staff("olga", "operators")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    login(client, "olga")
    response = client.post("/admin/otp/verify/", {"token": code(device), "next": "https://evil.example/"})
    assert response["Location"] == "/admin/"


def test_force_login_of_the_test_suite_is_a_verified_session(admin_client):
    # the root conftest's fixture: existing admin tests keep working with the second factor on
    assert admin_client.get("/admin/").status_code == 200


# --- production settings ----------------------------------------------------------------------------------


def _production_env(**extra) -> dict:
    return {
        **os.environ, "DEBUG": "0", "DJANGO_SECRET_KEY": "deploy-check-" + "k8Zq2" * 12,
        "ALLOWED_HOSTS": "ops.example.com", "PUBSUB_AUTH": "token", "PUBSUB_PUSH_TOKEN": "push-secret",
        "BRAZE_WEBHOOK_TOKEN": "braze-secret", "LINE_CHANNEL_ACCESS_TOKEN": "line-token",
        "LINE_CHANNEL_SECRET": "line-secret", "METRICS_TOKEN": "metrics-secret", "LOG_LEVEL": "ERROR", **extra,
    }


def test_check_deploy_is_clean():
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=_production_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNINGS" not in done.stderr and "System check identified no issues" in done.stdout


def test_production_cookies_and_admin_prefix():
    script = ("from django.conf import settings as s; from django.urls import reverse; "
              "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
              "s.CSRF_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE, reverse('admin:index'), reverse('otp-enrol'))")
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT,
                          env=_production_env(ADMIN_URL_PREFIX="backoffice-7f3a/"), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1].split() == ["True", "True", "True", "True", "Lax", "/backoffice-7f3a/",
                                   "/backoffice-7f3a/otp/enrol/"], done.stderr


# --- role changes ---------------------------------------------------------------------------------------------


def test_group_and_permission_changes_are_audited(staff):
    user = staff("mika", "marketers")
    operators = Group.objects.get(name="operators")
    user.groups.add(operators)
    operators.user_set.remove(user)
    user.user_permissions.add(Permission.objects.get(codename="view_personal_data"))
    user.is_superuser = True
    user.save()
    entries = list(AuditLogEntry.objects.filter(action="user.role_change", target_id=str(user.pk)).order_by("id"))
    assert [e.after for e in entries] == [
        {"is_superuser": False, "is_staff": True, "is_active": True},  # created as staff
        {"groups": {"added": ["marketers"]}},
        {"groups": {"added": ["operators"]}},
        {"groups": {"removed": ["operators"]}},
        {"user_permissions": {"added": ["common.view_personal_data"]}},
        {"is_superuser": True},
    ]
    assert entries[-1].before == {"is_superuser": False}


def test_a_role_change_in_the_user_admin_names_who_and_from_where(admin_client, staff):
    user = staff("mika", "marketers")
    operators = Group.objects.get(name="operators")
    data = {"username": "mika", "first_name": "", "last_name": "", "email": "", "is_active": "on",
            "is_staff": "on", "groups": [str(operators.pk)], "user_permissions": [],
            "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-12-01", "date_joined_1": "09:00:00"}
    response = admin_client.post(f"/admin/auth/user/{user.pk}/change/", data, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302, response.content[:3000]
    entries = AuditLogEntry.objects.filter(action="user.role_change", target_id=str(user.pk), actor="admin")
    changes = sorted(str(e.after) for e in entries)
    assert changes == [str({"groups": {"added": ["operators"]}}), str({"groups": {"removed": ["marketers"]}})]
    assert {e.actor_ip for e in entries} == {"10.1.2.3"}
