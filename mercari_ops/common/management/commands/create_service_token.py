from django.core.management.base import BaseCommand

from mercari_ops.common.services import service_token_create


class Command(BaseCommand):
    help = "Create (or show) the API token of a calling service: Authorization: Token <key>."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the calling service, e.g. marketplace-item-page")
        parser.add_argument("--rotate", action="store_true", help="replace the existing token")

    def handle(self, *args, name, rotate, **options):
        self.stdout.write(service_token_create(name=name, rotate=rotate))
