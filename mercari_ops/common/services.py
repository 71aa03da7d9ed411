from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

SERVICE_USER_PREFIX = "svc-"


@transaction.atomic
def service_token_create(*, name: str, rotate: bool = False) -> str:
    """A DRF token for a calling service, on a user that cannot log in to the admin."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=f"{SERVICE_USER_PREFIX}{name}")
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if rotate:
        Token.objects.filter(user=user).delete()
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def admin_user_ensure(*, username: str = "admin") -> str | None:
    """Create the first superuser with a generated password; None if it already exists."""
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email="", password=password)
    return password
