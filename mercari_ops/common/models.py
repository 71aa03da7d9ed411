"""The platform's own rows: the audit log, and the permissions that are not about one model."""

from django.db import models


class AuditLogEntry(models.Model):
    """One change that moved money, messages or personal data: who, when, what, from where.

    Append-only (the admin is read-only); the target is kept as text so the entry survives the object's deletion.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, db_index=True)  # username; kept when the user is deleted
    actor_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)  # e.g. campaign.activate, token.revoke
    target_type = models.CharField(max_length=100, db_index=True)  # app_label.model
    target_id = models.CharField(max_length=100, blank=True, db_index=True)
    target_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ("-at", "-id")
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        permissions = [
            ("view_personal_data", "Can see personal data (raw LINE IDs, names, payment details)"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target_type}:{self.target_id}"


