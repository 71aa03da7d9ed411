"""Canonical payment history: one row per payment, its state transitions, and repayment requests (outbox)."""

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.formatting import yen
from mercari_ops.inbox.models import DeadLetter, InboxEvent


class EntryType(models.TextChoices):
    PURCHASE = "mercari.purchase", _("Marketplace purchase")
    MERPAY = "merpay.payment", _("Merpay payment")
    CARD = "mercard.transaction", _("Mercard transaction")


class EntryState(models.TextChoices):
    COMPLETED = "completed", _("Completed")
    AUTHORIZED = "authorized", _("Authorized")
    BILLED = "billed", _("Billed")
    REPAYMENT_REQUESTED = "repayment_requested", _("Repayment requested")
    REPAID = "repaid", _("Repaid")
    REFUNDED = "refunded", _("Refunded")


class PaymentEntry(models.Model):
    """A payment as the customer sees it in the history; the state follows history.states."""

    payment_id = models.CharField(_("payment ID"), max_length=128, unique=True)
    customer_id = models.CharField(_("customer ID"), max_length=64)
    type = models.CharField(_("type"), max_length=32, choices=EntryType.choices)
    parent = models.ForeignKey("self", verbose_name=_("parent"), null=True, blank=True, on_delete=models.PROTECT,
                               related_name="children")
    # The top of the tree this entry belongs to (null for a top-level entry): a page's children load in one query.
    root = models.ForeignKey("self", verbose_name=_("root"), null=True, blank=True, on_delete=models.PROTECT,
                             related_name="descendants")
    amount = models.BigIntegerField(_("amount"), help_text=_("Yen."))
    state = models.CharField(_("state"), max_length=24, choices=EntryState.choices)
    state_at = models.DateTimeField(_("state reached at"),
                                    help_text=_("When the current state was reached (event time)."))
    occurred_at = models.DateTimeField(_("occurred at"))
    title = models.CharField(_("title"), max_length=200, blank=True, default="")
    attributes = models.JSONField(_("attributes"), default=dict, blank=True)
    event_id = models.CharField(_("event ID"), max_length=128, help_text=_("The event that created this entry."))
    created_at = models.DateTimeField(_("created at"), default=timezone.now,
                                      help_text=_("When the entry became readable."))
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("payment entry")
        verbose_name_plural = _("payment entries")
        indexes = [
            # The history feed: keyset pagination over a customer's top-level entries, newest first.
            models.Index(models.F("customer_id"), models.F("occurred_at").desc(), models.F("id").desc(),
                         name="history_entry_feed", condition=models.Q(parent__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} ({self.get_type_display()}, {self.get_state_display()})"


class PaymentTransition(models.Model):
    """Every state change of one entry (and late events that no longer change it), for operators."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", _("Applied")
        SUPERSEDED = "superseded", _("Late: recorded, state already past it")

    entry = models.ForeignKey(PaymentEntry, verbose_name=_("payment entry"), on_delete=models.CASCADE,
                              related_name="transitions")
    kind = models.CharField(_("kind"), max_length=40, help_text=_("Event type, or repay.requested / repay.failed."))
    from_state = models.CharField(_("from state"), max_length=24, blank=True, default="", choices=EntryState.choices)
    to_state = models.CharField(_("to state"), max_length=24, blank=True, default="", choices=EntryState.choices)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices, default=Outcome.APPLIED)
    source_id = models.CharField(_("source ID"), max_length=128,
                                 help_text=_("The event's payment_id or the repayment request."))
    event_id = models.CharField(_("event ID"), max_length=128, blank=True, default="")
    amount = models.BigIntegerField(_("amount"), null=True, blank=True)
    occurred_at = models.DateTimeField(_("occurred at"))
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    note = models.CharField(_("note"), max_length=300, blank=True, default="")

    class Meta:
        verbose_name = _("payment transition")
        verbose_name_plural = _("payment transitions")
        constraints = [models.UniqueConstraint(fields=["entry", "kind", "source_id"], name="history_transition_once")]
        ordering = ["recorded_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.get_from_state_display() or '-'} -> {self.get_to_state_display()}"


class RepaymentRequest(models.Model):
    """A repay asked through the API: the idempotency record and the outbox row in one."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending delivery")
        SENT = "sent", _("Sent to the repayment service")
        RECORDED = "recorded", _("Recorded in-project (no REPAYMENT_API_URL)")
        FAILED = "failed", _("Failed (entry back to billed)")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    entry = models.ForeignKey(PaymentEntry, verbose_name=_("payment entry"), on_delete=models.PROTECT,
                              related_name="repayment_requests")
    amount = models.BigIntegerField(_("amount"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    response = models.JSONField(_("response"),
                                help_text=_("The answer given to the caller, returned again for the same key."))
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, default="")
    requested_by = models.CharField(_("requested by"), max_length=150, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("repayment request")
        verbose_name_plural = _("repayment requests")
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="history_repay_due")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return gettext("Repayment of %(payment)s, %(amount)s (%(status)s)") % {
            "payment": self.entry.payment_id, "amount": yen(self.amount), "status": self.get_status_display()}


class WaitingPaymentEvent(InboxEvent):
    """payment-events inbox rows waiting for their parent (admin view only)."""

    class Meta:
        proxy = True
        verbose_name = _("waiting payment event")
        verbose_name_plural = _("waiting payment events")


class DeadPaymentEvent(InboxEvent):
    """payment-events inbox rows that were dead-lettered (invalid transition, waited too long...)."""

    class Meta:
        proxy = True
        verbose_name = _("dead payment event")
        verbose_name_plural = _("dead payment events")


class PaymentDeadLetter(DeadLetter):
    """payment-events bodies that could not be decoded or validated (unknown type, missing field)."""

    class Meta:
        proxy = True
        verbose_name = _("payment-events dead letter")
        verbose_name_plural = _("payment-events dead letters")
