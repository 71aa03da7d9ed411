import importlib

from django.core.management.base import BaseCommand

# Order matters: campaigns read loyalty stages, LINE links demo customers, history estimates cashback.
DEMO_MODULES = ["loyalty.demo", "campaigns.demo", "line_integration.demo", "history.demo"]


class Command(BaseCommand):
    help = "Load demo data for every app. Idempotent: running it again adds nothing."

    def handle(self, *args, **options):
        from mercari_ops.common.services import service_token_create

        token = service_token_create(name="demo")
        self.stdout.write(f"platform: demo service token {token}")
        for module_name in DEMO_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            summary = module.seed(stdout=self.stdout)
            self.stdout.write(f"{module_name.split('.')[0]}: {summary}")
