"""Loyalty: additive monthly totals per customer and kind, stage rules, stage changes and pins.

Minimum personal data: an activity event leaves nothing behind but its
(topic, event_id) dedupe row in the inbox (payload dropped at once) and its
amount folded into one MonthlyTotal row; no amount, item, merchant or time of
day is stored per event.
"""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext


class Kind(models.TextChoices):
    SELL = "sell", "Sold"
    BUY = "buy", "Bought"
    PAY = "pay", "Paid"


class Customer(models.Model):
    """One customer known to loyalty. `stage` is the EFFECTIVE stage (rules stage raised to an active pin)."""

    customer_id = models.CharField(max_length=64, unique=True)
    stage = models.PositiveSmallIntegerField(default=10, help_text="Effective stage: max(rules stage, pin floor).")
    rules_stage = models.PositiveSmallIntegerField(
        default=10, help_text="Stage earned from the totals (upgrades at once, downgrades nightly)."
    )
    pin_floor = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Active operator pin, if any.")
    pin_expires_at = models.DateTimeField(null=True, blank=True)
    stage_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    totals_revision = models.BigIntegerField(
        default=0, db_default=0,
        help_text="Bumped by every write of this customer's totals: tells the activity handler whether the "
                  "totals it read in its own statement could miss a concurrent write.")

    class Meta:
        indexes = [
            models.Index(fields=["stage"], name="loyalty_customer_stage"),
            models.Index(fields=["pin_expires_at"], name="loyalty_customer_pin_expiry",
                         condition=models.Q(pin_expires_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} (stage {self.stage})"


class MonthlyTotal(models.Model):
    """Sum of amounts and count of activities of one kind in one business month (BUSINESS_TIME_ZONE, Japan's)
    for one customer. Rows written before the switch from UTC months are moved by `loyalty_rebucket`.

    A reversal (negative amount) adds its negative amount and a count of -1.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="monthly_totals",
                                 db_index=False)
    kind = models.CharField(max_length=4, choices=Kind.choices)
    month = models.DateField(help_text="First day of the business month (Japan time).")
    amount = models.BigIntegerField(default=0)
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "kind", "month"],
                                               name="loyalty_total_unique_month")]
        ordering = ["customer", "-month", "kind"]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.kind} {self.month:%Y-%m}: {self.amount} yen / {self.count}"


class StageRuleVersion(models.Model):
    """One immutable version of the stage rules; the highest version is in force.

    `definition` = {"window_months": 12, "stages": [{"stage": 10, "name": "Regular", "combine": "all",
    "thresholds": {}}, {"stage": 20, "name": "Silver", "combine": "all", "thresholds": {"buy_amount": 20000}}]}
    (see loyalty/rules.py for the validation and how thresholds combine).
    """

    version = models.PositiveIntegerField(unique=True)
    definition = models.JSONField()
    previous_definition = models.JSONField(null=True, blank=True, help_text="The rules this version replaced.")
    note = models.CharField(max_length=300, blank=True, default="")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-version"]
        verbose_name = "stage rules version"

    def __str__(self) -> str:
        return f"rules v{self.version}"


class RecomputeJob(models.Model):
    """Background recomputation of every customer's stage after a rules change; progress is done/total."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        SUPERSEDED = "superseded", "Superseded by a newer rules version"
        FAILED = "failed", "Failed (resumes from its cursor)"

    rule_version = models.ForeignKey(StageRuleVersion, on_delete=models.PROTECT, related_name="recompute_jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=64, blank=True, default="", help_text="Last customer_id processed.")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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
        UPGRADE = "upgrade", "Upgrade (activity)"
        DOWNGRADE = "downgrade", "Downgrade (nightly window)"
        RULES = "rules", "Rules changed"
        PIN = "pin", "Pinned by an operator"
        PIN_REVOKED = "pin_revoked", "Pin revoked"
        PIN_EXPIRED = "pin_expired", "Pin expired"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.PositiveSmallIntegerField()
    to_stage = models.PositiveSmallIntegerField()
    from_rules_stage = models.PositiveSmallIntegerField()
    to_rules_stage = models.PositiveSmallIntegerField()
    cause = models.CharField(max_length=16, choices=Cause.choices)
    reason = models.JSONField(help_text="Which window totals crossed which thresholds (or the pin).")
    rule_version = models.PositiveIntegerField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["customer", "-at"], name="loyalty_change_customer_at")]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_stage} -> {self.to_stage} ({self.cause})"


class StagePin(models.Model):
    """An operator's floor on a customer's stage, with reason and expiry. Never deleted (audit)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="pins")
    floor = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=500)
    expires_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True, default="")
    revoke_reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="loyalty_pin_customer")]

    def __str__(self) -> str:
        return f"{self.customer_id} pinned at {self.floor} until {self.expires_at:%Y-%m-%d}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class RebucketedEvent(models.Model):
    """An activity event `loyalty_rebucket` moved from its UTC month to its business month: the unique
    event_id, inserted in the same statement as the move, makes each move happen once (re-runs, crashes).
    Kept: the event_id (already the inbox's dedupe key) and the two months, nothing about the customer."""

    event_id = models.CharField(max_length=128, unique=True)
    old_month = models.DateField(help_text="The UTC month it was counted in.")
    new_month = models.DateField(help_text="Its business month (Japan time), where it is counted now.")
    moved_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "loyalty_rebucketed_event"
        verbose_name = "re-bucketed activity event"

    def __str__(self) -> str:
        return f"{self.event_id}: {self.old_month:%Y-%m} -> {self.new_month:%Y-%m}"
