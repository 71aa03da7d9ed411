from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class InboxEvent(models.Model):
    """One accepted event, unique per (topic, event_id): the dedupe key outlives the payload."""

    class Status(models.TextChoices):
        PROCESSED = "processed", _("Processed")
        WAITING = "waiting", _("Waiting for another event")
        RETRY = "retry", _("Retry scheduled")
        DEAD = "dead", _("Dead (needs an operator)")
        DISCARDED = "discarded", _("Discarded by an operator")

    topic = models.CharField(_("topic"), max_length=64)
    event_id = models.CharField(_("event ID"), max_length=128)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    payload = models.JSONField(_("payload"), null=True, blank=True,
                               help_text=_("Cleared by retention once processed."))
    waiting_on = models.CharField(_("waiting on"), max_length=128, blank=True, default="")
    attempts = models.PositiveIntegerField(_("attempts"), default=0,
                                           help_text=_("Times the handler processed this event."))
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, default="")
    error_field = models.CharField(_("error field"), max_length=128, blank=True, default="")
    message_id = models.CharField(_("message ID"), max_length=128, blank=True, default="")
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    alerted_at = models.DateTimeField(_("alerted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("inbox event")
        verbose_name_plural = _("inbox events")
        constraints = [models.UniqueConstraint(fields=["topic", "event_id"], name="inbox_event_unique_per_topic")]
        # Partial indexes: a processed event (the common case) only enters the primary key and the
        # dedupe key, which keeps the ingestion insert cheap.
        indexes = [
            models.Index(fields=["next_attempt_at"], name="inbox_retry_due", condition=models.Q(status="retry")),
            models.Index(fields=["topic", "waiting_on"], name="inbox_waiting_on", condition=models.Q(status="waiting")),
            models.Index(fields=["received_at"], name="inbox_waiting_since", condition=models.Q(status="waiting")),
            models.Index(fields=["processed_at"], name="inbox_retention_due",
                         condition=models.Q(status="processed", payload__isnull=False)),
            models.Index(fields=["status", "topic"], name="inbox_needs_operator",
                         condition=models.Q(status__in=["dead", "retry", "waiting"])),
        ]
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.topic}/{self.event_id} ({self.get_status_display()})"


class DeadLetter(models.Model):
    """A body that could not be decoded or validated; kept raw so an operator can fix and replay it."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        REPLAYED = "replayed", _("Replayed")
        DISCARDED = "discarded", _("Discarded")

    topic = models.CharField(_("topic"), max_length=64)
    # Read from the body when it decodes far enough (operators search and sort by it); blank otherwise.
    event_id = models.CharField(_("event ID"), max_length=128, blank=True, default="")
    body_sha256 = models.CharField(_("body SHA-256"), max_length=64)
    raw_body = models.TextField(_("raw body"), help_text=_("The push body as received; edit it, then replay."))
    error = models.TextField(_("error"))
    field = models.CharField(_("field"), max_length=128, blank=True, default="")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    times_received = models.PositiveIntegerField(_("times received"), default=1)
    received_at = models.DateTimeField(_("first received"), default=timezone.now)
    last_received_at = models.DateTimeField(_("last received"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.CharField(_("resolved by"), max_length=150, blank=True, default="")

    class Meta:
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")
        constraints = [models.UniqueConstraint(fields=["topic", "body_sha256"], name="dead_letter_unique_body")]
        indexes = [models.Index(fields=["status", "topic"], name="dead_letter_status_topic")]
        ordering = ["-last_received_at"]

    def __str__(self) -> str:
        return f"{self.topic}: {self.error[:60]}"
