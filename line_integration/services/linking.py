"""The LINE webhook, account linking (link token -> nonce -> accountLink) and rich menus."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext
from redis.exceptions import RedisError

from mercari_ops.common.errors import Conflict, NotFound, ValidationFailed
from mercari_ops.common.jsonsafe import json_loads_strict
from mercari_ops.common.logging import log_safe_error
from mercari_ops.common.ratelimit import rate_limiter

from ..clients import LineError, line_client
from ..metrics import webhook_event_counted
from ..models import LineUser, LinkNonce, LinkToken, OutboundMessage, WebhookEvent
from .audience import linkage_user_add
from .delivery import message_enqueue
from .planning import planned_cancel
from .sender import message_send_now

logger = logging.getLogger(__name__)
LINK_TOKEN_TTL = timedelta(minutes=10)
CUSTOMER_LANGUAGE = "ja"  # customers read Japanese, whatever language the webhook or a worker runs in


class BadSignature(Exception):
    pass


def signature_valid(*, body: bytes, signature: str | None, secret: str | None = None) -> bool:
    if not signature:
        return False
    digest = hmac.new((secret or settings.LINE_CHANNEL_SECRET).encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest), signature.encode())


def webhook_receive(*, body: bytes, signature: str | None) -> dict:
    """Verify the raw body, then handle each event once (by webhookEventId). Returns counts."""
    if not signature_valid(body=body, signature=signature):
        raise BadSignature("x-line-signature does not match the body")
    payload = json_loads_strict(body, field="body")
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise ValidationFailed("events must be a list", "events")
    counts = {"handled": 0, "duplicate": 0, "ignored": 0}
    for index, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("webhookEventId"), str):
            raise ValidationFailed("every event needs a webhookEventId", f"events.{index}.webhookEventId")
        webhook_event_counted(event.get("type"))
        counts[_event_handle(event)] += 1
    return counts


def _event_handle(event: dict) -> str:
    source = event.get("source") or {}
    line_user_id = source.get("userId", "") if isinstance(source, dict) else ""
    mode = event.get("mode", "active")
    after: list = []
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = WebhookEvent.objects.create(
                    webhook_event_id=event["webhookEventId"], event_type=str(event.get("type", ""))[:32],
                    line_user_id=line_user_id[:33], mode=str(mode)[:16])
        except IntegrityError:
            return "duplicate"
        if mode == "standby":  # another channel module is in charge: send nothing, change nothing
            record.outcome = "standby: nothing sent"
        elif not line_user_id:
            record.outcome = "no user source: ignored"
        else:
            handler = {"follow": _on_follow, "unfollow": _on_unfollow, "accountLink": _on_account_link}.get(
                event.get("type"))
            record.outcome = handler(event, line_user_id, after) if handler else "ignored"
        record.save(update_fields=["outcome"])
    for action in after:  # outbound calls after commit; their durable parts are swept later
        try:
            action()
        except (LineError, RedisError) as exc:  # LINE, or the rate limiter's Redis, down: never fail the commit
            logger.warning("LINE call after webhook event %s failed: %s", event["webhookEventId"], log_safe_error(exc))
    return "ignored" if record.outcome in ("ignored", "no user source: ignored") else "handled"


def _on_follow(event: dict, line_user_id: str, after: list) -> str:
    user, _ = LineUser.objects.select_for_update().get_or_create(line_user_id=line_user_id)
    reply_token = event.get("replyToken")
    if user.customer_id:  # unblocked by a linked user: linked again
        user.status, user.blocked_at = LineUser.Status.LINKED, None
        user.save(update_fields=["status", "blocked_at", "updated_at"])
        after.append(lambda: rich_menu_sync(line_user_ids=[line_user_id]))
        if reply_token:
            with translation.override(CUSTOMER_LANGUAGE):
                text = gettext("Welcome back! Your Mercari account is still linked.")
            after.append(lambda: line_client().reply(reply_token=reply_token, messages=[{"type": "text",
                                                                                          "text": text}]))
        return "relinked after unblock"
    user.status, user.blocked_at = LineUser.Status.FOLLOWING, None
    user.save(update_fields=["status", "blocked_at", "updated_at"])
    if reply_token:
        after.append(lambda: _link_invite(line_user_id, reply_token))
    return "link token requested"


def _link_invite(line_user_id: str, reply_token: str) -> None:
    """Issue a link token and reply with the marketplace page that starts linking (replies are free)."""
    link_token = line_client().link_token_issue(user_id=line_user_id)
    LinkToken.objects.create(link_token=link_token, line_user_id=line_user_id,
                             expires_at=timezone.now() + LINK_TOKEN_TTL)
    url = settings.LINE_LINK_URL.format(link_token=link_token)
    with translation.override(CUSTOMER_LANGUAGE):
        text = gettext("Link your Mercari account to get notifications here: %(url)s") % {"url": url}
    line_client().reply(reply_token=reply_token, messages=[{"type": "text", "text": text}])


def _on_unfollow(event: dict, line_user_id: str, after: list) -> str:
    """Blocked: nothing more is sent (queued messages are skipped at planning, planned ones here)."""
    updated = LineUser.objects.filter(line_user_id=line_user_id).update(
        status=LineUser.Status.BLOCKED, blocked_at=timezone.now(), updated_at=timezone.now())
    if not updated:
        LineUser.objects.create(line_user_id=line_user_id, status=LineUser.Status.BLOCKED, blocked_at=timezone.now())
    planned_cancel(line_user_id=line_user_id, reason="blocked")
    return "blocked"


def _on_account_link(event: dict, line_user_id: str, after: list) -> str:
    link = event.get("link") or {}
    if link.get("result") != "ok":
        return f"link failed at LINE: {link.get('result')}"
    now = timezone.now()
    nonce = LinkNonce.objects.select_for_update().filter(nonce=str(link.get("nonce", ""))).first()
    if nonce is None:
        return "link refused: unknown nonce"
    if nonce.used_at is not None:
        return "link refused: nonce already used"
    if nonce.expires_at <= now:
        return "link refused: nonce expired"
    if nonce.line_user_id != line_user_id:
        return "link refused: nonce was issued for another LINE user"
    nonce.used_at = now
    nonce.save(update_fields=["used_at"])
    link_complete(customer_id=nonce.customer_id, line_user_id=line_user_id, greeting_key=f"greeting:{nonce.pk}",
                  after=after)
    return "linked"


def link_complete(*, customer_id: str, line_user_id: str, greeting_key: str | None = None,
                  after: list | None = None, send_greeting: bool = True) -> LineUser:
    """Link (inside the caller's transaction); greeting and rich menu go out right after commit."""
    now = timezone.now()
    previous = list(LineUser.objects.select_for_update().filter(customer_id=customer_id)
                    .exclude(line_user_id=line_user_id).values_list("line_user_id", flat=True))
    if previous:  # the customer moved to another LINE account: the old one is no longer theirs
        LineUser.objects.filter(line_user_id__in=previous).update(customer_id=None, status=LineUser.Status.FOLLOWING,
                                                                   updated_at=now)
        for old_line_user_id in previous:
            planned_cancel(line_user_id=old_line_user_id, reason="not_linked")
    user, _ = LineUser.objects.select_for_update().get_or_create(line_user_id=line_user_id)
    user.customer_id, user.status, user.linked_at, user.blocked_at = customer_id, LineUser.Status.LINKED, now, None
    user.save()
    linkage_user_add(line_id=line_user_id)
    message_id = None
    if send_greeting:
        greeting_key = greeting_key or f"greeting:{line_user_id}:{now.timestamp()}"
        message_enqueue(dispatch_id=greeting_key, user_id=customer_id,
                        params={"messages": [{"type": "text", "text": settings.LINE_GREETING_TEXT}]},
                        kind=OutboundMessage.Kind.GREETING)
        message_id = OutboundMessage.objects.filter(dispatch_id=greeting_key, user_id=customer_id).values_list(
            "id", flat=True).first()
    actions = [lambda: rich_menu_sync(line_user_ids=[line_user_id, *previous])]
    if message_id:
        actions.insert(0, lambda: message_send_now(message_id=message_id))
    if after is not None:
        after.extend(actions)
    else:
        for action in actions:
            transaction.on_commit(lambda action=action: _quietly(action))
    return user


@transaction.atomic
def link_nonce_create(*, customer_id: str, link_token: str) -> str:
    """The marketplace's half of linking: a single-use nonce bound to the link token; returns LINE's URL."""
    token = LinkToken.objects.select_for_update().filter(link_token=link_token).first()
    if token is None:
        raise ValidationFailed("unknown link_token", "link_token")
    if token.expires_at <= timezone.now():
        raise ValidationFailed("link_token has expired; follow the account again for a new link", "link_token")
    existing = LinkNonce.objects.filter(link_token=link_token).first()
    if existing is not None:
        if existing.customer_id != customer_id or existing.used_at is not None:
            raise Conflict("link_token was already used", "link_token")
        nonce = existing.nonce  # the marketplace retried: same answer
    else:
        nonce = secrets.token_urlsafe(32)  # 256 bits, 43 URL-safe characters (LINE: 10-255, >= 128 bits)
        LinkNonce.objects.create(nonce=nonce, customer_id=customer_id, link_token=link_token,
                                 line_user_id=token.line_user_id, expires_at=token.expires_at)
    return f"{settings.LINE_ACCOUNT_LINK_URL}?{urlencode({'linkToken': link_token, 'nonce': nonce})}"


@transaction.atomic
def line_unlink(*, customer_id: str) -> LineUser:
    """The marketplace unlinked the accounts: stop sending and switch the rich menu back.

    Queued messages are skipped when planned (the account is re-read there); planned ones here.
    """
    user = LineUser.objects.select_for_update().filter(customer_id=customer_id).first()
    if user is None:
        raise NotFound("customer has no linked LINE account", "customer_id")
    user.customer_id = None
    if user.status == LineUser.Status.LINKED:
        user.status = LineUser.Status.FOLLOWING
    user.save(update_fields=["customer_id", "status", "updated_at"])
    line_user_id = user.line_user_id
    planned_cancel(line_user_id=line_user_id, reason="not_linked")
    transaction.on_commit(lambda: _quietly(lambda: rich_menu_sync(line_user_ids=[line_user_id])))
    return user


def _quietly(action) -> None:
    try:
        action()
    except (LineError, RedisError) as exc:  # the rate limiter's Redis down or hung: swept later too
        logger.warning("LINE call failed (the periodic sweep retries): %s", log_safe_error(exc))


def rich_menu_sync(*, line_user_ids: list[str] | None = None, limit: int = 500) -> dict:
    """Give linked users the linked menu and everyone else the unlinked one (the sweep retries failures)."""
    linked_menu, unlinked_menu = settings.LINE_RICH_MENU_LINKED, settings.LINE_RICH_MENU_UNLINKED
    users = LineUser.objects.exclude(status=LineUser.Status.BLOCKED)
    if line_user_ids is not None:
        users = users.filter(line_user_id__in=line_user_ids)
    to_link = list(users.filter(status=LineUser.Status.LINKED).exclude(rich_menu_id=linked_menu)
                   .values_list("line_user_id", flat=True)[:limit])
    to_unlink = list(users.exclude(status=LineUser.Status.LINKED).exclude(rich_menu_id=unlinked_menu)
                     .values_list("line_user_id", flat=True)[:limit])
    done = {"linked": 0, "unlinked": 0, "errors": 0}
    limiter = rate_limiter()
    for line_user_id, menu in [(u, linked_menu) for u in to_link] + [(u, unlinked_menu) for u in to_unlink]:
        limiter.wait("line:richmenu", limit=settings.LINE_RICHMENU_RATE_PER_SECOND, period=1.0, timeout=30)
        try:
            if menu:
                line_client().rich_menu_link(user_id=line_user_id, rich_menu_id=menu)
            else:
                line_client().rich_menu_unlink(user_id=line_user_id)
        except LineError as exc:
            done["errors"] += 1
            logger.warning("rich menu change for a LINE user failed: %s", log_safe_error(exc))
            continue
        LineUser.objects.filter(line_user_id=line_user_id).update(rich_menu_id=menu)
        done["linked" if menu == linked_menu else "unlinked"] += 1
    return done
