"""LINE accounts, the Braze outbox, webhook dedupe, and the audience tables of the source design."""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _


class LineUser(models.Model):
    """A LINE user who follows the official account, and the customer they linked (if any)."""

    class Status(models.TextChoices):
        FOLLOWING = "following", _("following, not linked")
        LINKED = "linked", _("linked")
        BLOCKED = "blocked", _("blocked (unfollowed)")

    line_user_id = models.CharField(_("LINE user ID"), max_length=33, unique=True)
    customer_id = models.CharField(_("customer ID"), max_length=64, unique=True, null=True, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.FOLLOWING)
    rich_menu_id = models.CharField(_("rich menu ID"), max_length=64, blank=True, default="")
    linked_at = models.DateTimeField(_("linked at"), null=True, blank=True)
    blocked_at = models.DateTimeField(_("blocked at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("LINE user")
        verbose_name_plural = _("LINE users")

    def __str__(self):
        return f"{self.customer_id or '-'} ({self.get_status_display()})"


class LinkToken(models.Model):
    """A link token LINE issued for a follower (valid 10 minutes, single use)."""

    link_token = models.CharField(_("link token"), max_length=255, unique=True)
    line_user_id = models.CharField(_("LINE user ID"), max_length=33)
    expires_at = models.DateTimeField(_("expires"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("link token")
        verbose_name_plural = _("link tokens")

    def __str__(self) -> str:
        return f"#{self.pk}"  # the token itself is a credential


class LinkNonce(models.Model):
    """The nonce the marketplace got from POST /api/line/link-nonce; single use, expires with its token."""

    nonce = models.CharField(_("nonce"), max_length=255, unique=True)
    customer_id = models.CharField(_("customer ID"), max_length=64)
    link_token = models.CharField(_("link token"), max_length=255)
    line_user_id = models.CharField(_("LINE user ID"), max_length=33)
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("link nonce")
        verbose_name_plural = _("link nonces")

    def __str__(self) -> str:
        return f"#{self.pk} {self.customer_id}"


class WebhookEvent(models.Model):
    """One LINE webhook event, kept so a redelivered `webhookEventId` is handled once."""

    webhook_event_id = models.CharField(_("webhook event ID"), max_length=64, unique=True)
    event_type = models.CharField(_("event type"), max_length=32)
    line_user_id = models.CharField(_("LINE user ID"), max_length=33, blank=True, default="")
    mode = models.CharField(_("mode"), max_length=16, default="active")
    outcome = models.CharField(_("outcome"), max_length=200, blank=True, default="")
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")

    def __str__(self) -> str:
        # No LINE user ID here: the string shows in messages and the audit log, where IDs are not masked.
        return f"{self.event_type} {self.webhook_event_id}"


class MessageTemplate(models.Model):
    """LINE message objects with {placeholders}; validated against LINE's spec on save (services)."""

    name = models.SlugField(_("name"), max_length=64, unique=True)
    description = models.CharField(_("description"), max_length=200, blank=True, default="")
    messages = models.JSONField(_("messages"), help_text=_(
        'LINE message objects, e.g. [{"type": "text", "text": "Hi {name}"}]. '
        "Placeholders {param} come from the Braze params (and {enrich.*})."))
    enrich_path = models.CharField(_("enrichment path"), max_length=200, blank=True, default="",
                                   help_text=_("Path on ENRICH_URL fetched before rendering, e.g. "
                                               "/saved-searches/{search_id}/items; its JSON is {enrich.*}."))
    fallback_messages = models.JSONField(_("fallback messages"), null=True, blank=True,
                                         help_text=_("Sent when enrichment fails or times out (no {enrich.*})."))
    active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")

    def __str__(self):
        return self.name


class LineRequest(models.Model):
    """One push or multicast request, kept so every retry sends the same body with the same retry key."""

    class Kind(models.TextChoices):
        PUSH = "push", _("push")
        MULTICAST = "multicast", _("multicast")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled (no recipient left before it was sent)")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    retry_key = models.UUIDField(_("retry key"), default=uuid.uuid4, unique=True)
    body = models.JSONField(_("body"))
    recipient_count = models.PositiveIntegerField(_("recipients"), default=1)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"))
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, default="")
    accepted_request_id = models.CharField(_("LINE request ID"), max_length=64, blank=True, default="")
    created_at = models.DateTimeField(_("created"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("LINE request")
        verbose_name_plural = _("LINE requests")
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="line_request_due")]

    def __str__(self) -> str:
        return _("%(kind)s #%(id)s to %(n)s (%(status)s)") % {
            "kind": self.get_kind_display(), "id": self.pk, "n": self.recipient_count,
            "status": self.get_status_display()}


class OutboundMessage(models.Model):
    """One proactive message to one customer: unique per (dispatch_id, user_id)."""

    class Kind(models.TextChoices):
        BRAZE = "braze", _("Braze")
        NOTIFY = "notify", _("notification")
        GREETING = "greeting", _("greeting")
        TEST = "test", _("test")

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        PLANNED = "planned", _("planned (in a request)")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        SKIPPED = "skipped", _("skipped")

    class SkipReason(models.TextChoices):
        """The `reason` of a skipped message (services/delivery_sql.py decides it)."""

        BLOCKED = "blocked", _("the LINE user blocked the account")
        NOT_LINKED = "not_linked", _("no LINE account linked to the customer")

    dispatch_id = models.CharField(_("dispatch ID"), max_length=200)
    user_id = models.CharField(_("customer ID"), max_length=64)
    campaign_id = models.CharField(_("campaign ID"), max_length=200, blank=True, default="")
    template = models.CharField(_("template"), max_length=64, blank=True, default="")
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    line_user_id = models.CharField(_("LINE user ID"), max_length=33, blank=True, default="")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.BRAZE)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(_("reason"), max_length=300, blank=True, default="")
    request = models.ForeignKey(LineRequest, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="recipients", verbose_name=_("LINE request"))
    created_at = models.DateTimeField(_("created"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbound message")
        verbose_name_plural = _("outbound messages")
        constraints = [models.UniqueConstraint(fields=["dispatch_id", "user_id"], name="outbound_once_per_dispatch")]
        indexes = [models.Index(fields=["status", "id"], name="outbound_status_id"),
                   models.Index(fields=["campaign_id", "status"], name="outbound_campaign_status")]

    def __str__(self) -> str:
        # The customer ID only: params and the LINE user ID are personal.
        return f"#{self.pk} {self.user_id} ({self.get_status_display()})"


class AudienceGroup(models.Model):
    """A LINE upload audience group; rotated before its 180-day expiry (docs/operations.md)."""

    audience_group_id = models.BigIntegerField(_("audience group ID"), unique=True)
    description = models.CharField(_("description"), max_length=120)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"))
    expires_at = models.DateTimeField(_("expires"))

    class Meta:
        verbose_name = _("audience group")
        verbose_name_plural = _("audience groups")

    def __str__(self):
        return f"{self.audience_group_id} {self.description}"


class AudienceJob(models.Model):
    """One add (or create) upload; LINE reports it in `jobs[]` under our uploadDescription."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", _("in progress")
        FINISHED = "finished", _("finished")
        FAILED = "failed", _("failed")

    audience_group = models.ForeignKey(AudienceGroup, on_delete=models.CASCADE, related_name="jobs",
                                       verbose_name=_("audience group"))
    description = models.CharField(_("description"), max_length=120, unique=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    line_job_id = models.BigIntegerField(_("LINE job ID"), null=True, blank=True)
    user_count = models.PositiveIntegerField(_("users"), default=0)
    created_at = models.DateTimeField(_("created"))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("audience job")
        verbose_name_plural = _("audience jobs")

    def __str__(self):
        return self.description


class LineLinkageUser(models.Model):
    """The LineLinkageUsers table of the source design: linked LINE IDs waiting to join the audience."""

    class AudienceStatus(models.TextChoices):
        PENDING = "pending", _("pending")
        ADDING = "adding", _("adding")
        ADDED = "added", _("added")

    id = models.BigAutoField(_("ID"), primary_key=True, db_column="ID")
    line_id = models.CharField(_("LINE user ID"), max_length=33, unique=True, db_column="LineID")
    line_audience_status = models.CharField(_("audience status"), max_length=16, choices=AudienceStatus.choices,
                                            default=AudienceStatus.PENDING, db_column="LineAudienceStatus")
    job = models.ForeignKey(AudienceJob, null=True, blank=True, on_delete=models.SET_NULL, db_column="AudienceJobID",
                            related_name="users", verbose_name=_("audience job"))
    created = models.DateTimeField(_("created"), db_column="Created")
    updated = models.DateTimeField(_("updated"), db_column="Updated")

    class Meta:
        db_table = "LineLinkageUsers"
        verbose_name = _("LINE linkage user")
        verbose_name_plural = _("LINE linkage users")
        indexes = [models.Index(fields=["line_audience_status", "id"], name="linkage_status_id")]

    def __str__(self):
        return f"{self.id} {self.get_line_audience_status_display()}"


class CampaignDelivery(OutboundMessage):
    """Admin report: Braze deliveries per campaign (queued, sent, failed, skipped)."""

    class Meta:
        proxy = True
        verbose_name = _("delivery per Braze campaign")
        verbose_name_plural = _("deliveries per Braze campaign")


class SendingPause(models.Model):
    """The emergency stop of every LINE send: one row (pk 1). Paused, senders stop at their next batch and queued
    messages wait; nothing is dropped. One person's action, audited (services/pause.py)."""

    id = models.PositiveSmallIntegerField(_("ID"), primary_key=True, default=1)
    paused = models.BooleanField(_("paused"), default=False)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    changed_by = models.CharField(_("changed by"), max_length=150, blank=True)
    changed_at = models.DateTimeField(_("changed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("LINE sending switch")
        verbose_name_plural = _("LINE sending switch")

    def __str__(self):
        return str(_("LINE sending paused") if self.paused else _("LINE sending on"))
