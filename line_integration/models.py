"""LINE accounts, the Braze outbox, webhook dedupe, and the audience tables of the source design."""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _


class LineUser(models.Model):
    """A LINE user who follows the official account, and the customer they linked (if any)."""

    class Status(models.TextChoices):
        FOLLOWING = "following", "following, not linked"
        LINKED = "linked", "linked"
        BLOCKED = "blocked", "blocked (unfollowed)"

    line_user_id = models.CharField(max_length=33, unique=True)
    customer_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FOLLOWING)
    rich_menu_id = models.CharField(max_length=64, blank=True, default="")
    linked_at = models.DateTimeField(null=True, blank=True)
    blocked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "LINE user"

    def __str__(self):
        return f"{self.customer_id or '-'} ({self.status})"


class LinkToken(models.Model):
    """A link token LINE issued for a follower (valid 10 minutes, single use)."""

    link_token = models.CharField(max_length=255, unique=True)
    line_user_id = models.CharField(max_length=33)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)


class LinkNonce(models.Model):
    """The nonce the marketplace got from POST /api/line/link-nonce; single use, expires with its token."""

    nonce = models.CharField(max_length=255, unique=True)
    customer_id = models.CharField(max_length=64)
    link_token = models.CharField(max_length=255)
    line_user_id = models.CharField(max_length=33)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class WebhookEvent(models.Model):
    """One LINE webhook event, kept so a redelivered `webhookEventId` is handled once."""

    webhook_event_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=32)
    line_user_id = models.CharField(max_length=33, blank=True, default="")
    mode = models.CharField(max_length=16, default="active")
    outcome = models.CharField(max_length=200, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        # No LINE user ID here: the string shows in messages and the audit log, where IDs are not masked.
        return f"{self.event_type} {self.webhook_event_id}"


class MessageTemplate(models.Model):
    """LINE message objects with {placeholders}; validated against LINE's spec on save (services)."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True, default="")
    messages = models.JSONField(help_text='LINE message objects, e.g. [{"type": "text", "text": "Hi {name}"}]. '
                                          "Placeholders {param} come from the Braze params (and {enrich.*}).")
    enrich_path = models.CharField(max_length=200, blank=True, default="",
                                   help_text="Path on ENRICH_URL fetched before rendering, e.g. "
                                             "/saved-searches/{search_id}/items; its JSON is {enrich.*}.")
    fallback_messages = models.JSONField(null=True, blank=True,
                                         help_text="Sent when enrichment fails or times out (no {enrich.*}).")
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name


class LineRequest(models.Model):
    """One push or multicast request, kept so every retry sends the same body with the same retry key."""

    class Kind(models.TextChoices):
        PUSH = "push"
        MULTICAST = "multicast"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        CANCELLED = "cancelled", "cancelled (no recipient left before it was sent)"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    retry_key = models.UUIDField(default=uuid.uuid4, unique=True)
    body = models.JSONField()
    recipient_count = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    accepted_request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="line_request_due")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} to {self.recipient_count} ({self.status})"


class OutboundMessage(models.Model):
    """One proactive message to one customer: unique per (dispatch_id, user_id)."""

    class Kind(models.TextChoices):
        BRAZE = "braze"
        NOTIFY = "notify"
        GREETING = "greeting"
        TEST = "test"

    class Status(models.TextChoices):
        QUEUED = "queued"
        PLANNED = "planned", "planned (in a request)"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"

    class SkipReason(models.TextChoices):
        """The `reason` of a skipped message (services/delivery_sql.py decides it)."""

        BLOCKED = "blocked", "the LINE user blocked the account"
        NOT_LINKED = "not_linked", "no LINE account linked to the customer"

    dispatch_id = models.CharField(max_length=200)
    user_id = models.CharField(max_length=64, help_text="customer ID")
    campaign_id = models.CharField(max_length=200, blank=True, default="")
    template = models.CharField(max_length=64, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    line_user_id = models.CharField(max_length=33, blank=True, default="")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BRAZE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=300, blank=True, default="")
    request = models.ForeignKey(LineRequest, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="recipients")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dispatch_id", "user_id"], name="outbound_once_per_dispatch")]
        indexes = [models.Index(fields=["status", "id"], name="outbound_status_id"),
                   models.Index(fields=["campaign_id", "status"], name="outbound_campaign_status")]


class AudienceGroup(models.Model):
    """A LINE upload audience group; rotated before its 180-day expiry (docs/operations.md)."""

    audience_group_id = models.BigIntegerField(unique=True)
    description = models.CharField(max_length=120)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"{self.audience_group_id} {self.description}"


class AudienceJob(models.Model):
    """One add (or create) upload; LINE reports it in `jobs[]` under our uploadDescription."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        FINISHED = "finished"
        FAILED = "failed"

    audience_group = models.ForeignKey(AudienceGroup, on_delete=models.CASCADE, related_name="jobs")
    description = models.CharField(max_length=120, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    line_job_id = models.BigIntegerField(null=True, blank=True)
    user_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.description


class LineLinkageUser(models.Model):
    """The LineLinkageUsers table of the source design: linked LINE IDs waiting to join the audience."""

    class AudienceStatus(models.TextChoices):
        PENDING = "pending"
        ADDING = "adding"
        ADDED = "added"

    id = models.BigAutoField(primary_key=True, db_column="ID")
    line_id = models.CharField(max_length=33, unique=True, db_column="LineID")
    line_audience_status = models.CharField(max_length=16, choices=AudienceStatus.choices,
                                            default=AudienceStatus.PENDING, db_column="LineAudienceStatus")
    job = models.ForeignKey(AudienceJob, null=True, blank=True, on_delete=models.SET_NULL, db_column="AudienceJobID",
                            related_name="users")
    created = models.DateTimeField(db_column="Created")
    updated = models.DateTimeField(db_column="Updated")

    class Meta:
        db_table = "LineLinkageUsers"
        verbose_name = "LINE linkage user"
        indexes = [models.Index(fields=["line_audience_status", "id"], name="linkage_status_id")]

    def __str__(self):
        return f"{self.id} {self.line_audience_status}"


class CampaignDelivery(OutboundMessage):
    """Admin report: Braze deliveries per campaign (queued, sent, failed, skipped)."""

    class Meta:
        proxy = True
        verbose_name = "delivery per Braze campaign"
        verbose_name_plural = "deliveries per Braze campaign"


class SendingPause(models.Model):
    """The emergency stop of every LINE send: one row (pk 1). Paused, senders stop at their next batch and queued
    messages wait; nothing is dropped. One person's action, audited (services/pause.py)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    paused = models.BooleanField(_("paused"), default=False)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    changed_by = models.CharField(_("changed by"), max_length=150, blank=True)
    changed_at = models.DateTimeField(_("changed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("LINE sending switch")
        verbose_name_plural = _("LINE sending switch")

    def __str__(self):
        return str(_("LINE sending paused") if self.paused else _("LINE sending on"))
