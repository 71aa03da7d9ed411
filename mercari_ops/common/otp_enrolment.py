"""Two-factor set-up codes: who may enrol a first device when their role requires one.

Without them, whoever holds a new operator's password (phished before the operator enrolled) could enrol their
own authenticator and keep the account. With OTP_ENROLMENT_GRANT_REQUIRED (on by default with DEBUG off), a user
who must use TOTP enrols only after entering a code a superuser issued (the user admin's action, or `manage.py
otp_enrolment_code <username>` for the first superuser), handed over another way. A code is shown once, stored
hashed, valid OTP_ENROLMENT_GRANT_HOURS, used once (when the device is confirmed); a new code replaces older ones.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .audit import audit_record
from .models import OtpEnrolmentGrant

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read aloud or copied by hand


def _normalised(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()


def _hash(code: str) -> str:
    return hashlib.sha256(_normalised(code).encode()).hexdigest()


def grant_required(user) -> bool:
    from .otp_admin import second_factor_required

    return settings.OTP_ENROLMENT_GRANT_REQUIRED and second_factor_required(user)


@transaction.atomic
def grant_issue(*, user, issued_by: str, request=None, now: datetime | None = None) -> str:
    """A new code for `user` (older unused ones end now); returned once, stored hashed, audited."""
    now = now or timezone.now()
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    OtpEnrolmentGrant.objects.filter(user=user, used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    grant = OtpEnrolmentGrant.objects.create(
        user=user, code_hash=_hash(raw), issued_by=issued_by[:150], created_at=now,
        expires_at=now + timedelta(hours=settings.OTP_ENROLMENT_GRANT_HOURS))
    audit_record(action="user.otp_grant", target=user, after={"expires_at": grant.expires_at.isoformat()},
                 request=request, actor=None if request is not None else issued_by)
    return f"{raw[:4]}-{raw[4:]}"


def grant_find(*, user, code: str, now: datetime | None = None) -> OtpEnrolmentGrant | None:
    """The user's valid (unused, unexpired) grant matching `code`, or None."""
    now = now or timezone.now()
    digest = _hash(code)
    for grant in OtpEnrolmentGrant.objects.filter(user=user, used_at__isnull=True, expires_at__gt=now):
        if hmac.compare_digest(grant.code_hash, digest):
            return grant
    return None


def grant_use(*, grant_id: int, user, now: datetime | None = None) -> bool:
    """Mark the grant used; False if it was used, replaced or expired meanwhile (the caller starts again)."""
    now = now or timezone.now()
    return OtpEnrolmentGrant.objects.filter(pk=grant_id, user=user, used_at__isnull=True,
                                            expires_at__gt=now).update(used_at=now) == 1
