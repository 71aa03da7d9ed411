from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mercari_ops.common.otp_enrolment import grant_issue


class Command(BaseCommand):
    help = ("Issue a two-factor set-up code for a user (the first superuser's, or anyone's from a shell): printed "
            "once, valid OTP_ENROLMENT_GRANT_HOURS.")

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        code = grant_issue(user=user, issued_by="manage.py otp_enrolment_code")
        self.stdout.write(f"Set-up code for {username}: {code} (shown once)")
