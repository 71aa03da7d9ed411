"""The admin's second factor: TOTP (django-otp) required of operators, approvers and superusers.

AdminSecondFactorMiddleware (after django-otp's OTPMiddleware) watches the admin's prefix only: a staff user
whose session is not verified is sent to enter a code when they have a confirmed device, or to enrol one
(QR code and secret) when their role requires it; until then no admin page answers. Marketers may enrol;
once they have a device they enter codes like everyone else. `admin.site` stays the registry apps use.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import segno
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.validators import RegexValidator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from .audit import audit_record
from .otp_enrolment import grant_find, grant_required, grant_use
from .role_audit import admin_request
from .roles import OPERATORS

APPROVERS = "approvers"  # the four-eyes group (mercari_ops.common.approvals.roles)
SECOND_FACTOR_GROUPS = (OPERATORS, APPROVERS)
# Admin pages reachable before the second factor: signing in and out, and the admin's JavaScript catalog.
_OPEN_ADMIN_PATHS = ("login/", "logout/", "jsi18n/", "otp/")


def second_factor_required(user) -> bool:
    """Operators, approvers and superusers must use TOTP; marketers may."""
    return user.is_superuser or user.groups.filter(name__in=SECOND_FACTOR_GROUPS).exists()


class AdminSecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix = "/" + settings.ADMIN_URL_PREFIX
        self.open_paths = tuple(self.prefix + p for p in _OPEN_ADMIN_PATHS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not path.startswith(self.prefix):
            return self.get_response(request)
        if not path.startswith(self.open_paths):
            user = request.user
            if user.is_authenticated and user.is_staff and not user.is_verified():
                if user_has_device(user):
                    return _to("otp-verify", request)
                if second_factor_required(user):
                    return _to("otp-enrol", request)
        token = admin_request.set(request)  # role changes made by this request are audited with its user and IP
        try:
            return self.get_response(request)
        finally:
            admin_request.reset(token)


def _to(name: str, request: HttpRequest, next_url: str | None = None) -> HttpResponseRedirect:
    return HttpResponseRedirect(f"{reverse(name)}?next={quote(next_url or request.get_full_path(), safe='/')}")


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                       require_https=request.is_secure()):
        return target
    return reverse("admin:index")


class TokenForm(forms.Form):
    # Digits only: a typo is refused here, not counted by the device's throttle (each failure doubles its wait).
    token = forms.CharField(label=_("Code from your authenticator app"), max_length=8, min_length=6,
                            validators=[RegexValidator(r"^\d+$", _("Enter the digits your app shows."))],
                            widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                                          "autofocus": True}))


def _render(request, template: str, **context) -> TemplateResponse:
    return TemplateResponse(request, template, {**admin.site.each_context(request), "is_nav_sidebar_enabled": False,
                                                "next": _next(request),
                                                **context})


class GrantForm(forms.Form):
    code = forms.CharField(label=_("Set-up code"), max_length=16,
                           help_text=_("The code a superuser gave you for this (XXXX-XXXX)."),
                           widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}))


_GRANT_KEY = "otp_enrol_grant"


def _grant_step(request: HttpRequest) -> HttpResponse | None:
    """The set-up code's page while the user needs one and has not entered a valid one; None once they have."""
    user = request.user
    if not grant_required(user) or request.session.get(_GRANT_KEY):
        return None
    form = GrantForm(request.POST if request.method == "POST" and "code" in request.POST else None)
    if form.is_bound and form.is_valid():
        grant = grant_find(user=user, code=form.cleaned_data["code"])
        if grant is not None:
            request.session[_GRANT_KEY] = grant.pk
            return HttpResponseRedirect(f"{reverse('otp-enrol')}?next={quote(_next(request), safe='/')}")
        form.add_error("code", _("This set-up code is not valid: mistyped, already used, replaced by a newer one or "
                                 "expired. Ask a superuser for a new one."))
    return _render(request, "otp_admin/enrol_code.html", title=_("Set up two-factor authentication"), form=form)


@never_cache
@staff_member_required
def enrol(request: HttpRequest) -> HttpResponse:
    """Enrol a TOTP device: the set-up code where the role needs one, then scan the QR code (or type the secret),
    then confirm with one code."""
    user = request.user
    if user_has_device(user):
        return _to("otp-verify", request, _next(request))
    code_page = _grant_step(request)
    if code_page is not None:
        return code_page
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="admin", confirmed=False)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            if grant_required(user) and not grant_use(grant_id=request.session.pop(_GRANT_KEY), user=user):
                return _to("otp-enrol", request, _next(request))  # replaced or expired meanwhile: a new code
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            audit_record(action="user.otp_enrol", target=user, after={"device": device.persistent_id},
                         request=request)
            otp_login(request, device)
            return HttpResponseRedirect(_next(request))
        form.add_error("token", _("This code is not valid. Check your device's clock and wait for the next code."))
    qr = segno.make(device.config_url, error="m").svg_inline(scale=4)
    return _render(request, "otp_admin/enrol.html", title=_("Set up two-factor authentication"), form=form,
                   qr_svg=mark_safe(qr), secret=base64.b32encode(device.bin_key).decode(),  # noqa: S308 -- segno's SVG
                   required=second_factor_required(user))


@never_cache
@staff_member_required
def verify(request: HttpRequest) -> HttpResponse:
    """The second step of the admin login: a code from the user's confirmed device."""
    user = request.user
    if not user_has_device(user):
        return _to("otp-enrol", request, _next(request))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(user, form.cleaned_data["token"])
        if device is not None:
            otp_login(request, device)
            return HttpResponseRedirect(_next(request))
        form.add_error("token", _("This code is not valid (after a wrong code, wait a few seconds)."))
    return _render(request, "otp_admin/verify.html", title=_("Two-factor authentication"), form=form)


urlpatterns = [
    path("enrol/", enrol, name="otp-enrol"),
    path("verify/", verify, name="otp-verify"),
]
