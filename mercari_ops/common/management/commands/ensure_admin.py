from django.core.management.base import BaseCommand

from mercari_ops.common.services import admin_user_ensure


class Command(BaseCommand):
    help = "Create the admin superuser with a generated password, printed once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        password = admin_user_ensure(username=username)
        if password is None:
            self.stdout.write(f"Admin user {username!r} already exists (password was printed when it was made).")
        else:
            self.stdout.write(self.style.SUCCESS(
                f"\n  Admin user created: {username} / {password}\n  (shown once; change it in the admin)\n"))
