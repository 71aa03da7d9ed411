from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .audit import audit_record
from .errors import ValidationFailed
from .models import ServiceToken
from .tokens import PREFIX_LENGTH, SCOPES, epoch_bump, key_hash, key_new

SERVICE_USER_PREFIX = "svc-"


def _scopes_clean(scopes) -> list[str]:
    scopes = [s.strip() for s in scopes if s and s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationFailed(f"unknown scope {unknown[0]!r} (known: {', '.join(SCOPES)})", "scopes")
    if not scopes:
        raise ValidationFailed("a token needs at least one scope", "scopes")
    return sorted(set(scopes), key=SCOPES.index)


def _token_state(token: ServiceToken) -> dict:
    return {"service": token.service, "prefix": token.prefix, "scopes": list(token.scopes),
            "expires_at": token.expires_at, "revoked_at": token.revoked_at}


def _after_commit_bump() -> None:
    # Before the commit (this process and any process reading now) and after it (a process that read the
    # row between the first bump and the commit cached it under the new epoch).
    epoch_bump()
    transaction.on_commit(epoch_bump)


@transaction.atomic
def service_token_create(*, name: str, scopes: Iterable[str] | None = None, rotate: bool = False,
                         grace_seconds: int = 0, expires_at: datetime | None = None, by: str = "system",
                         request=None, now: datetime | None = None) -> str:
    """Issue a key for a calling service and return it: the only time it exists outside the caller.

    `scopes` default to all (tests, benches, the demo); operators name them (create_service_token --scopes).
    `rotate`: the service's other live tokens expire after `grace_seconds` (0: now); without it they stay.
    """
    now = now or timezone.now()
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise ValidationFailed("the service name must be 1 to 64 characters without spaces", "name")
    User = get_user_model()
    user, created = User.objects.get_or_create(username=f"{SERVICE_USER_PREFIX}{name}")
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    live = ServiceToken.objects.select_for_update().filter(service=name, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    if scopes is None:
        inherited = {s for t in live for s in t.scopes} if rotate else set()
        scopes = inherited or SCOPES
    scopes = _scopes_clean(scopes)
    if rotate:
        retire_at = now + timedelta(seconds=max(0, grace_seconds))
        for old in live:
            before = _token_state(old)
            old.expires_at = min(old.expires_at, retire_at) if old.expires_at else retire_at
            old.save(update_fields=["expires_at"])
            audit_record(action="token.rotate", target=old, before=before, after=_token_state(old),
                         request=request, actor=None if request else by, note=f"grace {grace_seconds} s")
    key = key_new()
    token = ServiceToken.objects.create(service=name, user=user, prefix=key[:PREFIX_LENGTH], key_hash=key_hash(key),
                                        scopes=scopes, created_by=_actor(request, by), expires_at=expires_at)
    audit_record(action="token.create", target=token, after=_token_state(token), request=request,
                 actor=None if request else by)
    if rotate:
        _after_commit_bump()
    return key


@transaction.atomic
def service_token_revoke(*, token: ServiceToken, by: str = "system", request=None,
                         now: datetime | None = None) -> bool:
    """Revoke at once on every process. False if it was already revoked."""
    token = ServiceToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return False
    before = _token_state(token)
    token.revoked_at, token.revoked_by = now or timezone.now(), _actor(request, by)
    token.save(update_fields=["revoked_at", "revoked_by"])
    audit_record(action="token.revoke", target=token, before=before, after=_token_state(token), request=request,
                 actor=None if request else by)
    _after_commit_bump()
    return True


def _actor(request, by: str) -> str:
    user = getattr(request, "user", None)
    return user.get_username() if getattr(user, "is_authenticated", False) else by


def admin_user_ensure(*, username: str = "admin") -> str | None:
    """Create the first superuser with a generated password; None if it already exists."""
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email="", password=password)
    return password
