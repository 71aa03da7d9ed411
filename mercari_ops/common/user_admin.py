"""The user admin of django.contrib.auth, with its deletes audited and the superusers' action that issues two-factor
set-up codes."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .audit_admin import AuditedDeleteMixin
from .otp_enrolment import grant_issue

User = get_user_model()
_Base = type(admin.site._registry[User])


class OpsUserAdmin(AuditedDeleteMixin, _Base):
    actions = [*(_Base.actions or []), "otp_grant_issue"]

    @admin.action(description=_("Issue a two-factor set-up code"))
    def otp_grant_issue(self, request, queryset):
        if not request.user.is_superuser:
            raise PermissionDenied
        from django.conf import settings

        for user in queryset.order_by("username"):
            code = grant_issue(user=user, issued_by=request.user.get_username(), request=request)
            messages.warning(request, gettext(
                "Set-up code for %(user)s: %(code)s. Valid %(hours)s hours, shown only now: hand it over in person or "
                "by another channel than e-mail.") % {"user": user.get_username(), "code": code,
                                                     "hours": settings.OTP_ENROLMENT_GRANT_HOURS})

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("otp_grant_issue", None)
        return actions


admin.site.unregister(User)
admin.site.register(User, OpsUserAdmin)
