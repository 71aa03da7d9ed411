"""The platform's own rows: the audit log, and the permissions that are not about one model."""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditLogEntry(models.Model):
    """One change that moved money, messages or personal data: who, when, what, from where.

    Append-only (the admin is read-only); the target is kept as text so the entry survives the object's deletion.
    """

    at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)
    # username; kept when the user is deleted
    actor = models.CharField(_("actor"), max_length=150, db_index=True)
    actor_ip = models.GenericIPAddressField(_("actor IP"), null=True, blank=True)
    action = models.CharField(_("action"), max_length=64, db_index=True)  # e.g. campaign.activate, token.revoke
    target_type = models.CharField(_("target type"), max_length=100, db_index=True)  # app_label.model
    target_id = models.CharField(_("target ID"), max_length=100, blank=True, db_index=True)
    target_repr = models.CharField(_("target"), max_length=200, blank=True)
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"), null=True, blank=True)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        ordering = ("-at", "-id")
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        permissions = [
            ("view_personal_data", _("Can see personal data (raw LINE IDs, names, payment details)")),
        ]

    def __str__(self):
        at = timezone.localtime(self.at)  # the business time zone, as the admin shows every time
        return f"{at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target_type}:{self.target_id}"


class ChangeRequest(models.Model):
    """A change that moves money or messages, proposed by one user and applied only once another approves it.

    `kind` names a change kind an app registered (mercari_ops.common.approvals.register_change_kind): core
    keeps the request, the app knows how to describe, preview, fingerprint and apply it. `fingerprint` is the
    target's state when the request was made; an approval that finds another one refuses (the request is stale).
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        APPROVED = "approved", _("Approved")  # decided, being applied (inside the approving transaction)
        REJECTED = "rejected", _("Rejected")
        APPLIED = "applied", _("Applied")
        FAILED = "failed", _("Failed to apply")
        STALE = "stale", _("Stale: the target changed since the request")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    kind = models.CharField(_("kind"), max_length=64, db_index=True)
    target_type = models.CharField(_("target type"), max_length=100)  # app_label.model
    target_id = models.CharField(_("target ID"), max_length=100, blank=True)
    target_repr = models.CharField(_("target"), max_length=200, blank=True)
    summary = models.CharField(_("summary"), max_length=300, blank=True)
    # the proposed change, as the kind's apply takes it
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"), null=True, blank=True)
    # figures: backtest, stage moves, item counts
    preview = models.JSONField(_("preview figures"), default=dict, blank=True)
    fingerprint = models.CharField(_("fingerprint"), max_length=128, blank=True)
    requested_by = models.CharField(_("requester"), max_length=150, db_index=True)
    requested_at = models.DateTimeField(_("requested at"), auto_now_add=True, db_index=True)
    request_note = models.TextField(_("request note"), blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    decided_by = models.CharField(_("decided by"), max_length=150, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_note = models.TextField(_("decision note"), blank=True)
    applied_at = models.DateTimeField(_("applied at"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        ordering = ("-requested_at", "-id")
        verbose_name = _("change request")
        verbose_name_plural = _("change requests")
        indexes = [models.Index(fields=["target_type", "target_id"], name="common_change_target")]
        permissions = [
            ("approve_change", _("Can approve or reject other users' change requests")),
        ]

    def __str__(self):
        return f"#{self.pk} {self.kind} {self.target_repr or self.target_id} ({self.get_status_display()})"


class ServiceToken(models.Model):
    """An API key of a calling service (`Authorization: Token <key>`), stored as a hash, never raw.

    `prefix` (the key's first 8 characters) finds the row, `key_hash` (sha256 of the whole key) proves it:
    keys are 256 random bits, so a fast hash is right (no dictionary to guess from). Rotation sets the old
    row's `expires_at` to the end of the grace period; revocation is immediate (mercari_ops/common/tokens.py).
    """

    service = models.CharField(_("service"), max_length=64, db_index=True)
    user = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="service_tokens",
                             verbose_name=_("user"),
                             help_text=_("The svc-<service> user requests run as (no admin login)."))
    prefix = models.CharField(_("prefix"), max_length=8, db_index=True)
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=32), default=list, verbose_name=_("scopes"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    revoked_by = models.CharField(_("revoked by"), max_length=150, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        ordering = ("service", "-created_at")
        verbose_name = _("service token")
        verbose_name_plural = _("service tokens")

    def __str__(self):
        return f"{self.service} {self.prefix}\u2026"


class UserPreference(models.Model):
    """What a staff user chose for themselves (the admin's language), on every device and after every login."""

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="preference",
                                verbose_name=_("user"))
    language = models.CharField(_("language"), max_length=8, blank=True)

    class Meta:
        verbose_name = _("user preference")
        verbose_name_plural = _("user preferences")

    def __str__(self):
        return f"{self.user_id} {self.language}"


class OtpEnrolmentGrant(models.Model):
    """A one-time code, issued by a superuser, that a user whose role requires a second factor must enter before
    enrolling their first device: a stolen password alone cannot enrol the thief's authenticator."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+", verbose_name=_("user"))
    code_hash = models.CharField(_("code hash"), max_length=64)
    issued_by = models.CharField(_("issued by"), max_length=150)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("two-factor set-up code")
        verbose_name_plural = _("two-factor set-up codes")

    def __str__(self):
        return f"{self.user_id} {self.created_at:%Y-%m-%d %H:%M}"
