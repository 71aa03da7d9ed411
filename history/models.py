"""Canonical payment history: one row per payment, its state transitions, and repayment requests (outbox)."""

import uuid

from django.db import models
from django.utils import timezone

from mercari_ops.inbox.models import DeadLetter, InboxEvent


class EntryType(models.TextChoices):
    PURCHASE = "mercari.purchase", "Marketplace purchase"
    MERPAY = "merpay.payment", "Merpay payment"
    CARD = "mercard.transaction", "Mercard transaction"


class EntryState(models.TextChoices):
    COMPLETED = "completed", "Completed"
    AUTHORIZED = "authorized", "Authorized"
    BILLED = "billed", "Billed"
    REPAYMENT_REQUESTED = "repayment_requested", "Repayment requested"
    REPAID = "repaid", "Repaid"
    REFUNDED = "refunded", "Refunded"


class PaymentEntry(models.Model):
    """A payment as the customer sees it in the history; the state follows history.states."""

    payment_id = models.CharField(max_length=128, unique=True)
    customer_id = models.CharField(max_length=64)
    type = models.CharField(max_length=32, choices=EntryType.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    # The top of the tree this entry belongs to (null for a top-level entry): a page's children load in one query.
    root = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="descendants")
    amount = models.BigIntegerField(help_text="Yen.")
    state = models.CharField(max_length=24, choices=EntryState.choices)
    state_at = models.DateTimeField(help_text="When the current state was reached (event time).")
    occurred_at = models.DateTimeField()
    title = models.CharField(max_length=200, blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    event_id = models.CharField(max_length=128, help_text="The event that created this entry.")
    created_at = models.DateTimeField(default=timezone.now, help_text="When the entry became readable.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "payment entry"
        verbose_name_plural = "payment entries"
        indexes = [
            # The history feed: keyset pagination over a customer's top-level entries, newest first.
            models.Index(models.F("customer_id"), models.F("occurred_at").desc(), models.F("id").desc(),
                         name="history_entry_feed", condition=models.Q(parent__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} ({self.type}, {self.state})"


class PaymentTransition(models.Model):
    """Every state change of one entry (and late events that no longer change it), for operators."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        SUPERSEDED = "superseded", "Late: recorded, state already past it"

    entry = models.ForeignKey(PaymentEntry, on_delete=models.CASCADE, related_name="transitions")
    kind = models.CharField(max_length=40, help_text="Event type, or repay.requested / repay.failed.")
    from_state = models.CharField(max_length=24, blank=True, default="")
    to_state = models.CharField(max_length=24, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.APPLIED)
    source_id = models.CharField(max_length=128, help_text="The event's payment_id or the repayment request.")
    event_id = models.CharField(max_length=128, blank=True, default="")
    amount = models.BigIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "kind", "source_id"], name="history_transition_once")]
        ordering = ["recorded_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.from_state or '-'} -> {self.to_state}"


class RepaymentRequest(models.Model):
    """A repay asked through the API: the idempotency record and the outbox row in one."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending delivery"
        SENT = "sent", "Sent to the repayment service"
        RECORDED = "recorded", "Recorded in-project (no REPAYMENT_API_URL)"
        FAILED = "failed", "Failed (entry back to billed)"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    idempotency_key = models.CharField(max_length=128, unique=True)
    entry = models.ForeignKey(PaymentEntry, on_delete=models.PROTECT, related_name="repayment_requests")
    amount = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    response = models.JSONField(help_text="The answer given to the caller, returned again for the same key.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="history_repay_due")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"repay {self.entry_id} {self.amount} yen ({self.status})"


class WaitingPaymentEvent(InboxEvent):
    """payment-events inbox rows waiting for their parent (admin view only)."""

    class Meta:
        proxy = True
        verbose_name = "waiting payment event"


class DeadPaymentEvent(InboxEvent):
    """payment-events inbox rows that were dead-lettered (invalid transition, waited too long...)."""

    class Meta:
        proxy = True
        verbose_name = "dead payment event"


class PaymentDeadLetter(DeadLetter):
    """payment-events bodies that could not be decoded or validated (unknown type, missing field)."""

    class Meta:
        proxy = True
        verbose_name = "payment-events dead letter"
