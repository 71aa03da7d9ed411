"""Loyalty: additive monthly totals per customer and kind, stage rules, stage changes and pins.

Minimum personal data: an activity event leaves nothing behind but its
(topic, event_id) dedupe row in the inbox (payload dropped at once) and its
amount folded into one MonthlyTotal row; no amount, item, merchant or time of
day is stored per event.
"""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.formatting import yen


class Kind(models.TextChoices):
    SELL = "sell", pgettext_lazy("activity kind", "Sold")
    BUY = "buy", pgettext_lazy("activity kind", "Bought")
    PAY = "pay", pgettext_lazy("activity kind", "Paid")


class Customer(models.Model):
    """One customer known to loyalty. `stage` is the EFFECTIVE stage (rules stage raised to an active pin)."""

    customer_id = models.CharField(_("customer ID"), max_length=64, unique=True)
    stage = models.PositiveSmallIntegerField(_("stage"), default=10,
                                             help_text=_("Effective stage: max(rules stage, pin floor)."))
    rules_stage = models.PositiveSmallIntegerField(
        _("rules stage"), default=10,
        help_text=_("Stage earned from the totals (upgrades at once, downgrades nightly)."),
    )
    pin_floor = models.PositiveSmallIntegerField(_("pin floor"), null=True, blank=True,
                                                 help_text=_("Active operator pin, if any."))
    pin_expires_at = models.DateTimeField(_("pin expires at"), null=True, blank=True)
    stage_changed_at = models.DateTimeField(_("stage changed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    totals_revision = models.BigIntegerField(
        _("totals revision"), default=0, db_default=0,
        help_text=_("Bumped by every write of this customer's totals: tells the activity handler whether the "
                    "totals it read in its own statement could miss a concurrent write."))

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = pgettext_lazy("model", "customers")  # "customers" alone is a count elsewhere
        indexes = [
            models.Index(fields=["stage"], name="loyalty_customer_stage"),
            models.Index(fields=["pin_expires_at"], name="loyalty_customer_pin_expiry",
                         condition=models.Q(pin_expires_at__isnull=False)),
        ]

    def __str__(self) -> str:
        from .selectors import rules_guess, stage_label  # selectors import this module

        return f"{self.customer_id} ({stage_label(self.stage, ruleset=rules_guess())})"


class MonthlyTotal(models.Model):
    """Sum of amounts and count of activities of one kind in one business month (BUSINESS_TIME_ZONE, Japan's)
    for one customer. Rows written before the switch from UTC months are moved by `loyalty_rebucket`.

    A reversal (negative amount) adds its negative amount and a count of -1.
    """

    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.CASCADE,
                                 related_name="monthly_totals", db_index=False)
    kind = models.CharField(_("kind"), max_length=4, choices=Kind.choices)
    month = models.DateField(_("month"), help_text=_("First day of the business month (Japan time)."))
    amount = models.BigIntegerField(_("amount (yen)"), default=0)
    count = models.IntegerField(_("count"), default=0)

    class Meta:
        verbose_name = _("monthly total")
        verbose_name_plural = _("monthly totals")
        constraints = [models.UniqueConstraint(fields=["customer", "kind", "month"],
                                               name="loyalty_total_unique_month")]
        ordering = ["customer", "-month", "kind"]

    def __str__(self) -> str:
        return (f"{self.customer.customer_id} {self.get_kind_display()} {self.month:%Y-%m}: "
                f"{yen(self.amount)} / {self.count}")


class StageRuleVersion(models.Model):
    """One immutable version of the stage rules; the highest version is in force.

    `definition` = {"window_months": 12, "stages": [{"stage": 10, "name": "Regular", "combine": "all",
    "thresholds": {}}, {"stage": 20, "name": "Silver", "combine": "all", "thresholds": {"buy_amount": 20000}}]}
    (see loyalty/rules.py for the validation and how thresholds combine).
    """

    version = models.PositiveIntegerField(_("version"), unique=True)
    definition = models.JSONField(_("definition"))
    previous_definition = models.JSONField(_("previous definition"), null=True, blank=True,
                                           help_text=_("The rules this version replaced."))
    note = models.CharField(_("note"), max_length=300, blank=True, default="")
    created_by = models.CharField(_("created by"), max_length=150)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-version"]
        verbose_name = _("stage rules version")
        verbose_name_plural = _("stage rules versions")

    def __str__(self) -> str:
        return gettext("rules v%(version)s") % {"version": self.version}


class RecomputeJob(models.Model):
    """Background recomputation of every customer's stage after a rules change; progress is done/total."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("recomputation", "Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        SUPERSEDED = "superseded", _("Superseded by a newer rules version")
        FAILED = "failed", _("Failed (resumes from its cursor)")

    rule_version = models.ForeignKey(StageRuleVersion, verbose_name=_("rules version"), on_delete=models.PROTECT,
                                     related_name="recompute_jobs")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(_("customers in total"), default=0)
    done = models.PositiveIntegerField(_("customers done"), default=0)
    changed = models.PositiveIntegerField(_("stages changed"), default=0)
    cursor = models.CharField(_("cursor"), max_length=64, blank=True, default="",
                              help_text=_("Last customer_id processed."))
    error = models.TextField(_("error"), blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("heartbeat at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("stage recomputation")
        verbose_name_plural = _("stage recomputations")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"], name="loyalty_recompute_status")]

    def __str__(self) -> str:
        return gettext("Stage recomputation for rules v%(version)s: %(progress)s") % {
            "version": self.rule_version.version, "progress": self.progress_label()}

    def progress_label(self) -> str:
        """'Done: 2,981 of 3,000 customers (99%), 412 changed stage': what an operator reads at a glance."""
        status = self.get_status_display()
        if self.total == 0:
            if self.status == self.Status.DONE:
                return gettext("Done: there were no customers to recompute")
            return gettext("%(status)s: not started") % {"status": status}
        return gettext("%(status)s: %(done)s of %(total)s customers (%(percent)d%%), %(changed)s changed stage") % {
            "status": status, "done": f"{self.done:,}", "total": f"{self.total:,}",
            "percent": self.done * 100 // self.total, "changed": f"{self.changed:,}"}


class StageChange(models.Model):
    """Every change of a customer's effective or rules stage, with the totals and thresholds behind it."""

    class Cause(models.TextChoices):
        UPGRADE = "upgrade", _("Upgrade (activity)")
        DOWNGRADE = "downgrade", _("Downgrade (nightly window)")
        RULES = "rules", _("Rules changed")
        PIN = "pin", _("Pinned by an operator")
        PIN_REVOKED = "pin_revoked", _("Pin revoked")
        PIN_EXPIRED = "pin_expired", _("Pin expired")

    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.CASCADE,
                                 related_name="stage_changes")
    from_stage = models.PositiveSmallIntegerField(_("from stage"))
    to_stage = models.PositiveSmallIntegerField(_("to stage"))
    from_rules_stage = models.PositiveSmallIntegerField(_("from rules stage"))
    to_rules_stage = models.PositiveSmallIntegerField(_("to rules stage"))
    cause = models.CharField(_("cause"), max_length=16, choices=Cause.choices)
    reason = models.JSONField(_("reason"), help_text=_("Which window totals crossed which thresholds (or the pin)."))
    rule_version = models.PositiveIntegerField(_("rules version"), null=True, blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("stage change")
        verbose_name_plural = _("stage changes")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["customer", "-at"], name="loyalty_change_customer_at")]

    def __str__(self) -> str:
        from .selectors import rules_guess, stage_label  # selectors import this module

        ruleset = rules_guess()
        return (f"{self.customer.customer_id}: {stage_label(self.from_stage, ruleset=ruleset)} -> "
                f"{stage_label(self.to_stage, ruleset=ruleset)} ({self.get_cause_display()})")


class StagePin(models.Model):
    """An operator's floor on a customer's stage, with reason and expiry. Never deleted (audit)."""

    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="pins")
    floor = models.PositiveSmallIntegerField(_("floor stage"))
    reason = models.CharField(_("reason"), max_length=500)
    expires_at = models.DateTimeField(_("expires at"))
    created_by = models.CharField(_("created by"), max_length=150)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.CharField(_("revoked by"), max_length=150, blank=True, default="")
    revoke_reason = models.CharField(_("revoke reason"), max_length=500, blank=True, default="")

    class Meta:
        verbose_name = _("stage pin")
        verbose_name_plural = _("stage pins")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="loyalty_pin_customer")]

    def __str__(self) -> str:
        from .selectors import rules_guess, stage_label  # selectors import this module

        return gettext("%(customer)s pinned at %(floor)s until %(until)s") % {
            "customer": self.customer.customer_id, "floor": stage_label(self.floor, ruleset=rules_guess()),
            "until": f"{timezone.localtime(self.expires_at):%Y-%m-%d}"}

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class RebucketedEvent(models.Model):
    """An activity event `loyalty_rebucket` moved from its UTC month to its business month: the unique
    event_id, inserted in the same statement as the move, makes each move happen once (re-runs, crashes).
    Kept: the event_id (already the inbox's dedupe key) and the two months, nothing about the customer."""

    event_id = models.CharField(_("event ID"), max_length=128, unique=True)
    old_month = models.DateField(_("old month"), help_text=_("The UTC month it was counted in."))
    new_month = models.DateField(_("new month"),
                                 help_text=_("Its business month (Japan time), where it is counted now."))
    moved_at = models.DateTimeField(_("moved at"), default=timezone.now)

    class Meta:
        db_table = "loyalty_rebucketed_event"
        verbose_name = _("re-bucketed activity event")
        verbose_name_plural = _("re-bucketed activity events")

    def __str__(self) -> str:
        return f"{self.event_id}: {self.old_month:%Y-%m} -> {self.new_month:%Y-%m}"
