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
        DRAFT = "draft", _("Draft")
        ACTIVE = "active", _("Active")
        ENDED = "ended", _("Ended")

    name = models.CharField(_("name"), max_length=200)
    starts_at = models.DateTimeField(_("starts at"), help_text=_("Payments made from this time (Japan time) qualify."))
    ends_at = models.DateTimeField(_("ends at"), help_text=_("Payments made before this time (Japan time) qualify."))
    user_filters = models.JSONField(_("user filters"), default=dict, blank=True,
                                    help_text=_("See the schema below the field."))
    payment_filters = models.JSONField(_("payment filters"), default=dict, blank=True,
                                       help_text=_("See the schema below the field."))
    upper_limit = models.PositiveIntegerField(
        _("upper limit"), null=True, blank=True,
        help_text=_("Points per customer for the whole campaign period; empty = no cap."),
    )
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.DRAFT)
    version = models.PositiveIntegerField(_("version"), default=1,
                                          help_text=_("Bumped on every change of an active campaign."))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")),
                                   name="campaign_ends_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"


class CampaignStageRate(models.Model):
    """Cashback rate for customers whose stage lies in [stage_from, stage_to]."""

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="rates")
    stage_from = models.PositiveSmallIntegerField(_("stage from"))
    stage_to = models.PositiveSmallIntegerField(_("stage to"))
    rate = models.DecimalField(
        _("rate"), max_digits=4, decimal_places=1,
        validators=[MinValueValidator(Decimal("0.0")), MaxValueValidator(Decimal("100.0"))],
        help_text=_("Percent of the payment amount, one decimal (1.5 = 1.5%)."),
    )

    class Meta:
        verbose_name = _("campaign stage rate")
        verbose_name_plural = _("campaign stage rates")
        ordering = ["campaign", "stage_from"]
        constraints = [
            models.CheckConstraint(condition=models.Q(stage_to__gte=models.F("stage_from")),
                                   name="stage_rate_range_ordered"),
            models.CheckConstraint(condition=models.Q(rate__gte=0), name="stage_rate_not_negative"),
        ]

    def __str__(self) -> str:
        return f"stages {self.stage_from}-{self.stage_to}: {self.rate}%"


class CampaignVersion(models.Model):
    """Who changed an active campaign, when, and what it looked like before and after.

    A rejected change request is kept here too (decision `rejected`, the proposal as before/after, the
    decider as changed_by): it names the version it was proposed against and changed nothing.
    """

    class Decision(models.TextChoices):
        APPLIED = "applied", _("Applied")
        REJECTED = "rejected", _("Rejected (nothing changed)")

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"),
                                 on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField(_("version"))
    changed_by = models.CharField(_("changed by"), max_length=150, blank=True, default="")
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)
    note = models.CharField(_("note"), max_length=200, blank=True, default="")
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"))
    decision = models.CharField(_("decision"), max_length=16, choices=Decision.choices, default=Decision.APPLIED)

    class Meta:
        verbose_name = _("campaign version")
        verbose_name_plural = _("campaign versions")
        ordering = ["campaign", "-version", "-changed_at"]
        constraints = [models.UniqueConstraint(fields=["campaign", "version"], name="campaign_version_unique",
                                               condition=models.Q(decision="applied"))]

    def __str__(self) -> str:
        return f"{self.campaign_id} v{self.version}"


class CatalogGeneration(models.Model):
    """One row; bumped whenever campaigns, rates or the merchant master change.

    Estimate processes compare it (at most every CAMPAIGNS_CATALOG_CHECK_SECONDS) with the
    generation of their in-memory catalog and reload when it moved.
    """

    generation = models.BigIntegerField(_("generation"), default=1)
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)

    class Meta:
        verbose_name = _("catalog generation")
        verbose_name_plural = _("catalog generations")

    def __str__(self) -> str:
        return str(self.generation)


class MerchantMaster(models.Model):
    """One shop, whatever merchant IDs it appears under."""

    master_id = models.CharField(_("master ID"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200, blank=True, default="")
    is_marketplace = models.BooleanField(_("is marketplace"), default=False,
                                         help_text=_("Payments here count as marketplace payments."))
    category = models.CharField(_("category"), max_length=64, blank=True, default="",
                                help_text=_("e.g. e_money_charge"))

    class Meta:
        verbose_name = _("merchant master")
        verbose_name_plural = _("merchant masters")
        ordering = ["master_id"]

    def __str__(self) -> str:
        return f"{self.master_id} {self.name}".strip()


class MerchantAlias(models.Model):
    """A merchant ID as it appears on bill lines (optionally only for one payment method)."""

    master = models.ForeignKey(MerchantMaster, verbose_name=_("master"),
                               on_delete=models.CASCADE, related_name="aliases")
    merchant_id = models.CharField(_("merchant ID"), max_length=64)
    payment_method = models.CharField(_("payment method"), max_length=32, blank=True, default="",
                                      help_text=_("Empty = any method."))

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

    customer_id = models.CharField(_("customer ID"), max_length=64, unique=True)
    mercard_status = models.PositiveSmallIntegerField(_("Mercard status"))
    changed_at = models.DateTimeField(_("changed at"))
    event_id = models.CharField(_("event ID"), max_length=128, blank=True, default="")

    class Meta:
        verbose_name = _("card status")
        verbose_name_plural = _("card statuses")

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.mercard_status}"


class Bill(models.Model):
    """A settled Mercard monthly bill, as received on `card-bill-settled`.

    `dead`: settling it failed on its own data (a value out of range, a constraint); it is set aside with
    the reason so every other bill settles, and an operator retries it from the admin after a fix.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for settlement")
        SETTLED = "settled", _("Settled")
        DEAD = "dead", _("Set aside: cannot settle")

    bill_id = models.CharField(_("bill ID"), max_length=128, unique=True)
    customer_id = models.CharField(_("customer ID"), max_length=64)
    billing_month = models.CharField(_("billing month"), max_length=7, help_text=_("YYYY-MM"))
    settled_at = models.DateTimeField(_("settled at"), help_text=_("When the customer paid the bill (from the event)."))
    event_id = models.CharField(_("event ID"), max_length=128, blank=True, default="")
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.PENDING)
    line_count = models.PositiveIntegerField(_("line count"), default=0)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True,
                                        help_text=_("Last settlement run over this bill."))
    unmatched_lines = models.PositiveIntegerField(_("unmatched lines"), default=0,
                                                  help_text=_("Lines with an unknown merchant."))
    # db_default too: bills are also loaded by COPY (bench, restores) that does not name these columns
    dead_reason = models.TextField(_("dead reason"), blank=True, default="", db_default="",
                                   help_text=_("Why settlement set this bill aside (the database error)."))
    dead_at = models.DateTimeField(_("dead at"), null=True, blank=True,
                                   help_text=_("When settlement last set it aside."))
    settle_failures = models.PositiveIntegerField(_("settle failures"), default=0, db_default=0,
                                                  help_text=_("Settlement runs that failed on this bill."))

    class Meta:
        verbose_name = _("bill")
        verbose_name_plural = _("bills")
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["billing_month", "id"], name="bill_month_id"),
            models.Index(fields=["status", "received_at"], name="bill_status_received"),
            models.Index(fields=["customer_id"], name="bill_customer"),
        ]

    def __str__(self) -> str:
        return self.bill_id


class BillLine(models.Model):
    bill = models.ForeignKey(Bill, verbose_name=_("bill"), on_delete=models.CASCADE, related_name="lines")
    payment_id = models.CharField(_("payment ID"), max_length=128)
    customer_id = models.CharField(_("customer ID"), max_length=64)
    amount = models.BigIntegerField(_("amount"))
    merchant_id = models.CharField(_("merchant ID"), max_length=64)
    payment_method = models.CharField(_("payment method"), max_length=32)
    channel = models.CharField(_("channel"), max_length=16)
    paid_at = models.DateTimeField(_("paid at"))

    class Meta:
        verbose_name = _("bill line")
        verbose_name_plural = _("bill lines")
        constraints = [models.UniqueConstraint(fields=["bill", "payment_id"], name="bill_line_unique")]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.amount} yen"


class PointsGrant(models.Model):
    """Points owed for one settlement pass over one bill; delivered through the points gateway.

    `idempotency_key` is sent with every attempt, so a retry after a lost answer grants once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Granted")
        REJECTED = "rejected", _("Rejected by the points service")

    bill = models.ForeignKey(Bill, verbose_name=_("bill"), on_delete=models.PROTECT, related_name="grants")
    customer_id = models.CharField(_("customer ID"), max_length=64)
    points = models.PositiveBigIntegerField(_("points"))
    idempotency_key = models.CharField(_("idempotency key"), max_length=160, unique=True)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    last_error = models.TextField(_("last error"), blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    notified_via = models.CharField(_("notified via"), max_length=8, blank=True, default="",
                                    help_text=_("line or recorded"))

    class Meta:
        verbose_name = _("points grant")
        verbose_name_plural = _("points grants")
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="grant_status_next")]

    def __str__(self) -> str:
        return self.idempotency_key


class CampaignReward(models.Model):
    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.PROTECT, related_name="rewards")
    campaign_version = models.PositiveIntegerField(_("campaign version"),
                                                   help_text=_("Campaign version the reward was computed with."))
    customer_id = models.CharField(_("customer ID"), max_length=64)
    payment_id = models.CharField(_("payment ID"), max_length=128)
    bill = models.ForeignKey(Bill, verbose_name=_("bill"), on_delete=models.PROTECT, related_name="rewards")
    grant = models.ForeignKey(PointsGrant, verbose_name=_("grant"),
                              on_delete=models.PROTECT, related_name="rewards", null=True, blank=True)
    stage = models.PositiveSmallIntegerField(_("stage"), null=True, blank=True)
    rate = models.DecimalField(_("rate"), max_digits=4, decimal_places=1)
    amount = models.BigIntegerField(_("amount"), help_text=_("Payment amount in yen."))
    points = models.PositiveBigIntegerField(_("points"))
    capped = models.BooleanField(_("capped"), default=False, help_text=_("The per-customer cap reduced these points."))
    settled_at = models.DateTimeField(_("settled at"), help_text=_("When the bill was settled (paid)."))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    reversed_at = models.DateTimeField(_("reversed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("campaign reward")
        verbose_name_plural = _("campaign rewards")
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

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="budgets")
    customer_id = models.CharField(_("customer ID"), max_length=64)
    points = models.BigIntegerField(_("points"), default=0)

    class Meta:
        verbose_name = _("campaign budget")
        verbose_name_plural = _("campaign budgets")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "customer_id"], name="budget_unique_per_customer"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.customer_id}: {self.points:,} pt"


class PointsLedgerEntry(models.Model):
    """The embedded points gateway (POINTS_API_URL empty): one row per idempotency key."""

    idempotency_key = models.CharField(_("idempotency key"), max_length=160, unique=True)
    customer_id = models.CharField(_("customer ID"), max_length=64, db_index=True)
    points = models.BigIntegerField(_("points"))
    reason = models.CharField(_("reason"), max_length=200, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("points ledger entry")
        verbose_name_plural = _("points ledger entries")

    def __str__(self) -> str:
        return self.idempotency_key


class PointsServiceBreaker(models.Model):
    """Circuit breaker of grant delivery (one row per outside service; "points" today).

    After CAMPAIGNS_POINTS_BREAKER_FAILURES unavailable answers in a row (or a refused connection) delivery
    pauses until `open_until` (short, doubling, at most CAMPAIGNS_POINTS_BREAKER_RETRY_MAX_SECONDS), charging
    no grant an attempt for the outage; the first answer after it closes the breaker.
    """

    name = models.CharField(_("name"), max_length=32, unique=True)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0,
                                                       help_text=_("Unavailable answers in a row."))
    openings = models.PositiveIntegerField(_("openings"), default=0,
                                           help_text=_("Times opened since the service last answered."))
    open_until = models.DateTimeField(_("open until"), null=True, blank=True,
                                      help_text=_("Delivery paused until then; empty = closed."))
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True, help_text=_("Start of the current outage."))
    last_error = models.TextField(_("last error"), blank=True, default="")
    last_success_at = models.DateTimeField(_("last success at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("points service breaker")
        verbose_name_plural = _("points service breakers")

    def __str__(self) -> str:
        # local time: the admin names the row with it
        until = f"{timezone.localtime(self.open_until):%Y-%m-%d %H:%M}" if self.open_until else None
        return f"{self.name}: {'open until ' + until if until else 'closed'}"


class CustomerNotification(models.Model):
    """A message for a customer without a linked LINE account (shown by the app's notice list)."""

    customer_id = models.CharField(_("customer ID"), max_length=64, db_index=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=160, unique=True)
    text = models.TextField(_("text"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("customer notification")
        verbose_name_plural = _("customer notifications")

    def __str__(self) -> str:
        return f"{self.customer_id} #{self.pk}"


class ProvisionDaily(models.Model):
    """Daily accrual estimate: points expected for bills seen but not yet granted."""

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"),
                                 on_delete=models.CASCADE, related_name="provisions")
    day = models.DateField(_("day"))
    unsettled_lines = models.PositiveIntegerField(_("unsettled lines"), default=0)
    expected_points = models.BigIntegerField(_("expected points"), default=0,
                                             help_text=_("Bills recorded, settlement not run yet."))
    pending_grant_points = models.BigIntegerField(_("pending grant points"), default=0,
                                                  help_text=_("Rewards written, grant not delivered."))
    computed_at = models.DateTimeField(_("computed at"), default=timezone.now)

    class Meta:
        ordering = ["-day", "campaign"]
        verbose_name = _("daily provision")
        verbose_name_plural = _("daily provisions")
        constraints = [models.UniqueConstraint(fields=["campaign", "day"], name="provision_daily_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.day}"


class ProvisionJournal(models.Model):
    """Month-end journal of the points liability per campaign (closing = opening + accrued - granted - reversed)."""

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="journal")
    month = models.CharField(_("month"), max_length=7)
    opening = models.BigIntegerField(_("opening"), default=0)
    accrued = models.BigIntegerField(_("accrued"), default=0)
    granted = models.BigIntegerField(_("granted"), default=0)
    reversed = models.BigIntegerField(_("reversed"), default=0)
    closing = models.BigIntegerField(_("closing"), default=0)
    computed_at = models.DateTimeField(_("computed at"), default=timezone.now)

    class Meta:
        verbose_name = _("provision journal")
        verbose_name_plural = _("provision journals")
        ordering = ["-month", "campaign"]
        constraints = [models.UniqueConstraint(fields=["campaign", "month"], name="provision_journal_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.month}"


class CampaignBacktest(models.Model):
    """A simulation of a (draft) campaign over the stored bill lines of a past month, run by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"),
                                 on_delete=models.CASCADE, related_name="backtests")
    month = models.CharField(_("month"), max_length=7)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.QUEUED)
    lines_total = models.PositiveIntegerField(_("lines total"), null=True, blank=True,
                                              help_text=_("Bill lines of the month."))
    lines_done = models.PositiveIntegerField(_("lines done"), default=0, help_text=_("Bill lines simulated so far."))
    result = models.JSONField(_("result"), default=dict, blank=True, help_text=_("Filled when the run is done."))
    excluded = models.JSONField(_("excluded"), default=dict, blank=True,
                                help_text=_("Lines and yen that earn nothing, by reason (each line under the first "
                                            "reason that applies); filled when the run is done."))
    error = models.TextField(_("error"), blank=True, default="")
    run_by = models.CharField(_("run by"), max_length=150, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("campaign backtest")
        verbose_name_plural = _("campaign backtests")
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
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    file_name = models.CharField(_("file name"), max_length=255, blank=True, default="")
    csv_text = models.TextField(_("CSV text"), blank=True, default="",
                                help_text=_("The checked file; emptied once it is applied."))
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(_("rows total"), default=0)
    rows_done = models.PositiveIntegerField(_("rows done"), default=0)
    result = models.JSONField(_("result"), default=dict, blank=True,
                              help_text=_("Masters and merchant IDs created and updated."))
    problems = models.JSONField(_("problems"), default=list, blank=True,
                                help_text=_("The file's first problems: line, column, message."))
    error = models.TextField(_("error"), blank=True, default="")
    created_by = models.CharField(_("created by"), max_length=150, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    queued_at = models.DateTimeField(_("queued at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("merchant import job")
        verbose_name_plural = _("merchant import jobs")
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
