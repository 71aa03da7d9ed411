import importlib
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

# Order matters: campaigns read loyalty stages, LINE links demo customers, history estimates cashback.
DEMO_MODULES = ["loyalty.demo", "campaigns.demo", "line_integration.demo", "history.demo"]


class Command(BaseCommand):
    help = "Load demo data for every app. Idempotent: running it again adds nothing."

    def add_arguments(self, parser):
        parser.add_argument("--now", help="seed as of this instant (ISO 8601 with an offset); default: now. "
                                          "Every demo date (bills, payments, activities) lies before it.")

    def handle(self, *args, now=None, **options):
        from mercari_ops.common.services import service_token_create

        try:
            at = datetime.fromisoformat(now) if now else timezone.now()
        except ValueError:
            raise CommandError(f"--now {now!r} is not an ISO 8601 time") from None
        if timezone.is_naive(at):
            raise CommandError("--now needs a UTC offset, e.g. 2026-12-05T10:00:00+09:00")

        token = service_token_create(name="demo")
        self.stdout.write(f"platform: demo service token {token}")
        for module_name in DEMO_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            summary = module.seed(stdout=self.stdout, now=at)
            self.stdout.write(f"{module_name.split('.')[0]}: {summary}")
