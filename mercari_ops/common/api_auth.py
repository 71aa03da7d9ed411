"""DRF's authentication and permission classes for service tokens (REST_FRAMEWORK defaults).

Kept apart from api.py and tokens.py, which import rest_framework.views: DRF imports these classes while
rest_framework.views itself is loading, so this module imports the token code on first use instead.
"""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import BasePermission


class CachedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` against the hashed service tokens (mercari_ops/common/tokens.py).

    request.user is the service's svc-<name> user, request.auth its TokenInfo (scopes). Known keys are
    checked from a per-process cache that a revocation anywhere invalidates on the next request.
    """

    def authenticate_credentials(self, key: str, *, now=None):
        from .tokens import token_cache

        return token_cache.check(key, now=now)


class HasScope(BasePermission):
    """A view declares `required_scope`; a token without it gets 403 naming the scope.

    A view that declares none answers 403 to every token (least privilege by default); `required_scope =
    ANY_SCOPE` lets any valid token in (whoami).
    """

    def has_permission(self, request, view) -> bool:
        from .tokens import TokenInfo

        if request.user is None or not isinstance(request.auth, TokenInfo):
            return False
        scope_check(request.auth, getattr(view, "required_scope", None))
        return True


def scope_check(info, scope: str | None) -> None:
    """ScopeMissing (403 naming the scope) unless the token (a TokenInfo) carries `scope`."""
    from .tokens import ANY_SCOPE, ScopeMissing

    if scope == ANY_SCOPE:
        return
    if scope is None:
        raise ScopeMissing("(this API declares no scope)")
    info.require(scope)
