"""Campaigns: stage-rate cashback on Mercard bills.

Fields, choices and constraints only; every write goes through campaigns.services.
"""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class CampaignQuerySet(models.QuerySet):
    def active(self, *, at=None):
        at = at or timezone.now()
        return self.filter(status=Campaign.Status.ACTIVE, starts_at__lte=at, ends_at__gt=at)

    def settleable(self):
        """Campaigns whose rewards settlement may still write (a bill settles after the campaign ended)."""
        return self.filter(status__in=[Campaign.Status.ACTIVE, Campaign.Status.ENDED])


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"

    name = models.CharField(max_length=200)
    starts_at = models.DateTimeField(help_text="Payments made from this time (Japan time) qualify.")
    ends_at = models.DateTimeField(help_text="Payments made before this time (Japan time) qualify.")
    user_filters = models.JSONField(default=dict, blank=True, help_text="See the schema below the field.")
    payment_filters = models.JSONField(default=dict, blank=True, help_text="See the schema below the field.")
    upper_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Points per customer for the whole campaign period; empty = no cap."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    version = models.PositiveIntegerField(default=1, help_text="Bumped on every change of an active campaign.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")),
                                   name="campaign_ends_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"


class CampaignStageRate(models.Model):
    """Cashback rate for customers whose stage lies in [stage_from, stage_to]."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rates")
    stage_from = models.PositiveSmallIntegerField()
    stage_to = models.PositiveSmallIntegerField()
    rate = models.DecimalField(
        max_digits=4, decimal_places=1,
        validators=[MinValueValidator(Decimal("0.0")), MaxValueValidator(Decimal("100.0"))],
        help_text="Percent of the payment amount, one decimal (1.5 = 1.5%).",
    )

    class Meta:
        ordering = ["campaign", "stage_from"]
        constraints = [
            models.CheckConstraint(condition=models.Q(stage_to__gte=models.F("stage_from")),
                                   name="stage_rate_range_ordered"),
            models.CheckConstraint(condition=models.Q(rate__gte=0), name="stage_rate_not_negative"),
        ]

    def __str__(self) -> str:
        return f"stages {self.stage_from}-{self.stage_to}: {self.rate}%"


class CampaignVersion(models.Model):
    """Who changed an active campaign, when, and what it looked like before and after."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    changed_by = models.CharField(max_length=150, blank=True, default="")
    changed_at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=200, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField()

    class Meta:
        ordering = ["campaign", "-version"]
        constraints = [models.UniqueConstraint(fields=["campaign", "version"], name="campaign_version_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id} v{self.version}"


class CatalogGeneration(models.Model):
    """One row; bumped whenever campaigns, rates or the merchant master change.

    Estimate processes compare it (at most every CAMPAIGNS_CATALOG_CHECK_SECONDS) with the
    generation of their in-memory catalog and reload when it moved.
    """

    generation = models.BigIntegerField(default=1)
    changed_at = models.DateTimeField(default=timezone.now)


class MerchantMaster(models.Model):
    """One shop, whatever merchant IDs it appears under."""

    master_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    is_marketplace = models.BooleanField(default=False, help_text="Payments here count as marketplace payments.")
    category = models.CharField(max_length=64, blank=True, default="", help_text="e.g. e_money_charge")

    class Meta:
        ordering = ["master_id"]

    def __str__(self) -> str:
        return f"{self.master_id} {self.name}".strip()


class MerchantAlias(models.Model):
    """A merchant ID as it appears on bill lines (optionally only for one payment method)."""

    master = models.ForeignKey(MerchantMaster, on_delete=models.CASCADE, related_name="aliases")
    merchant_id = models.CharField(max_length=64)
    payment_method = models.CharField(max_length=32, blank=True, default="", help_text="Empty = any method.")

    class Meta:
        verbose_name = _("merchant alias")
        verbose_name_plural = _("merchant aliases")  # Django's default adds an "s": "aliass"
        ordering = ["merchant_id", "payment_method"]
        constraints = [
            models.UniqueConstraint(fields=["merchant_id", "payment_method"], name="merchant_alias_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id}/{self.payment_method or '*'}"


class CardStatus(models.Model):
    """The newest Mercard status of a customer (from `card-status`; newest changed_at wins)."""

    customer_id = models.CharField(max_length=64, unique=True)
    mercard_status = models.PositiveSmallIntegerField()
    changed_at = models.DateTimeField()
    event_id = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        verbose_name_plural = "card statuses"

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.mercard_status}"


class Bill(models.Model):
    """A settled Mercard monthly bill, as received on `card-bill-settled`.

    `dead`: settling it failed on its own data (a value out of range, a constraint); it is set aside with
    the reason so every other bill settles, and an operator retries it from the admin after a fix.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for settlement"
        SETTLED = "settled", "Settled"
        DEAD = "dead", "Set aside: cannot settle"

    bill_id = models.CharField(max_length=128, unique=True)
    customer_id = models.CharField(max_length=64)
    billing_month = models.CharField(max_length=7, help_text="YYYY-MM")
    settled_at = models.DateTimeField(help_text="When the customer paid the bill (from the event).")
    event_id = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    line_count = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True, help_text="Last settlement run over this bill.")
    unmatched_lines = models.PositiveIntegerField(default=0, help_text="Lines with an unknown merchant.")
    # db_default too: bills are also loaded by COPY (bench, restores) that does not name these columns
    dead_reason = models.TextField(blank=True, default="", db_default="",
                                   help_text="Why settlement set this bill aside (the database error).")
    dead_at = models.DateTimeField(null=True, blank=True, help_text="When settlement last set it aside.")
    settle_failures = models.PositiveIntegerField(default=0, db_default=0,
                                                  help_text="Settlement runs that failed on this bill.")

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["billing_month", "id"], name="bill_month_id"),
            models.Index(fields=["status", "received_at"], name="bill_status_received"),
            models.Index(fields=["customer_id"], name="bill_customer"),
        ]

    def __str__(self) -> str:
        return self.bill_id


class BillLine(models.Model):
    bill = models.ForeignKey(Bill, on_delete=models.CASCADE, related_name="lines")
    payment_id = models.CharField(max_length=128)
    customer_id = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    merchant_id = models.CharField(max_length=64)
    payment_method = models.CharField(max_length=32)
    channel = models.CharField(max_length=16)
    paid_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bill", "payment_id"], name="bill_line_unique")]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.amount} yen"


class PointsGrant(models.Model):
    """Points owed for one settlement pass over one bill; delivered through the points gateway.

    `idempotency_key` is sent with every attempt, so a retry after a lost answer grants once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Granted"
        REJECTED = "rejected", "Rejected by the points service"

    bill = models.ForeignKey(Bill, on_delete=models.PROTECT, related_name="grants")
    customer_id = models.CharField(max_length=64)
    points = models.PositiveBigIntegerField()
    idempotency_key = models.CharField(max_length=160, unique=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    notified_via = models.CharField(max_length=8, blank=True, default="", help_text="line or recorded")

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="grant_status_next")]

    def __str__(self) -> str:
        return self.idempotency_key


class CampaignReward(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="rewards")
    campaign_version = models.PositiveIntegerField(help_text="Campaign version the reward was computed with.")
    customer_id = models.CharField(max_length=64)
    payment_id = models.CharField(max_length=128)
    bill = models.ForeignKey(Bill, on_delete=models.PROTECT, related_name="rewards")
    grant = models.ForeignKey(PointsGrant, on_delete=models.PROTECT, related_name="rewards", null=True, blank=True)
    stage = models.PositiveSmallIntegerField(null=True, blank=True)
    rate = models.DecimalField(max_digits=4, decimal_places=1)
    amount = models.BigIntegerField(help_text="Payment amount in yen.")
    points = models.PositiveBigIntegerField()
    capped = models.BooleanField(default=False, help_text="The per-customer cap reduced these points.")
    settled_at = models.DateTimeField(help_text="When the bill was settled (paid).")
    created_at = models.DateTimeField(default=timezone.now)
    reversed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "payment_id"], name="reward_unique_per_campaign_payment"),
        ]
        indexes = [
            models.Index(fields=["campaign", "customer_id"], name="reward_campaign_customer"),
            models.Index(fields=["created_at"], name="reward_created"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.payment_id}: {self.points} pt"


class CampaignBudget(models.Model):
    """Points already given to one customer by one campaign; locked FOR UPDATE to enforce the cap."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="budgets")
    customer_id = models.CharField(max_length=64)
    points = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "customer_id"], name="budget_unique_per_customer"),
        ]


class PointsLedgerEntry(models.Model):
    """The embedded points gateway (POINTS_API_URL empty): one row per idempotency key."""

    idempotency_key = models.CharField(max_length=160, unique=True)
    customer_id = models.CharField(max_length=64, db_index=True)
    points = models.BigIntegerField()
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "points ledger entries"


class PointsServiceBreaker(models.Model):
    """Circuit breaker of grant delivery (one row per outside service; "points" today).

    After CAMPAIGNS_POINTS_BREAKER_FAILURES unavailable answers in a row (or a refused connection) delivery
    pauses until `open_until` (short, doubling, at most CAMPAIGNS_POINTS_BREAKER_RETRY_MAX_SECONDS), charging
    no grant an attempt for the outage; the first answer after it closes the breaker.
    """

    name = models.CharField(max_length=32, unique=True)
    consecutive_failures = models.PositiveIntegerField(default=0, help_text="Unavailable answers in a row.")
    openings = models.PositiveIntegerField(default=0, help_text="Times opened since the service last answered.")
    open_until = models.DateTimeField(null=True, blank=True, help_text="Delivery paused until then; empty = closed.")
    opened_at = models.DateTimeField(null=True, blank=True, help_text="Start of the current outage.")
    last_error = models.TextField(blank=True, default="")
    last_success_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "points service breaker"

    def __str__(self) -> str:
        return f"{self.name}: {'open until ' + self.open_until.isoformat() if self.open_until else 'closed'}"


class CustomerNotification(models.Model):
    """A message for a customer without a linked LINE account (shown by the app's notice list)."""

    customer_id = models.CharField(max_length=64, db_index=True)
    idempotency_key = models.CharField(max_length=160, unique=True)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)


class ProvisionDaily(models.Model):
    """Daily accrual estimate: points expected for bills seen but not yet granted."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="provisions")
    day = models.DateField()
    unsettled_lines = models.PositiveIntegerField(default=0)
    expected_points = models.BigIntegerField(default=0, help_text="Bills recorded, settlement not run yet.")
    pending_grant_points = models.BigIntegerField(default=0, help_text="Rewards written, grant not delivered.")
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "campaign"]
        verbose_name_plural = "daily provisions"
        constraints = [models.UniqueConstraint(fields=["campaign", "day"], name="provision_daily_unique")]


class ProvisionJournal(models.Model):
    """Month-end journal of the points liability per campaign (closing = opening + accrued - granted - reversed)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="journal")
    month = models.CharField(max_length=7)
    opening = models.BigIntegerField(default=0)
    accrued = models.BigIntegerField(default=0)
    granted = models.BigIntegerField(default=0)
    reversed = models.BigIntegerField(default=0)
    closing = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-month", "campaign"]
        constraints = [models.UniqueConstraint(fields=["campaign", "month"], name="provision_journal_unique")]


class CampaignBacktest(models.Model):
    """A simulation of a (draft) campaign over the stored bill lines of a past month, run by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="backtests")
    month = models.CharField(max_length=7)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    lines_total = models.PositiveIntegerField(null=True, blank=True, help_text="Bill lines of the month.")
    lines_done = models.PositiveIntegerField(default=0, help_text="Bill lines simulated so far.")
    result = models.JSONField(default=dict, blank=True, help_text="Filled when the run is done.")
    excluded = models.JSONField(default=dict, blank=True, help_text="Lines and yen that earn nothing, by reason "
                                "(each line under the first reason that applies); filled when the run is done.")
    error = models.TextField(blank=True, default="")
    run_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.campaign_id} over {self.month} ({self.status})"

    @property
    def progress_percent(self) -> int | None:
        if self.status == self.Status.DONE:
            return 100
        if not self.lines_total:
            return None
        return min(99, self.lines_done * 100 // self.lines_total)


class MerchantImportJob(models.Model):
    """A merchant master CSV too big for one request, checked on upload and applied by a worker (all or
    nothing); the admin shows its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    file_name = models.CharField(max_length=255, blank=True, default="")
    csv_text = models.TextField(blank=True, default="", help_text="The checked file; emptied once it is applied.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True, help_text="Masters and merchant IDs created and updated.")
    problems = models.JSONField(default=list, blank=True, help_text="The file's first problems: line, column, message.")
    error = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_name or 'merchant CSV'} ({self.status})"

    @property
    def progress_percent(self) -> int | None:
        if self.status == self.Status.DONE:
            return 100
        if not self.rows_total:
            return None
        return min(99, self.rows_done * 100 // self.rows_total)
