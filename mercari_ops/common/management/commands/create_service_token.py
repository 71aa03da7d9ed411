from django.core.management.base import BaseCommand, CommandError

from mercari_ops.common.errors import DomainError
from mercari_ops.common.services import service_token_create
from mercari_ops.common.tokens import SCOPES


class Command(BaseCommand):
    help = ("Issue an API key for a calling service (Authorization: Token <key>). The key is printed once, "
            "on stdout alone; only its hash is stored.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="the calling service, e.g. marketplace-item-page")
        parser.add_argument("--scopes", default="",
                            help=f"comma-separated, from: {', '.join(SCOPES)}; 'all' for every one "
                                 "(required unless --rotate, which keeps the old token's scopes)")
        parser.add_argument("--rotate", action="store_true",
                            help="the service's other tokens expire after --grace seconds")
        parser.add_argument("--grace", type=int, default=0,
                            help="with --rotate: seconds the old key keeps working (default 0: at once)")

    def handle(self, *args, name, scopes, rotate, grace, **options):
        if not scopes and not rotate:
            raise CommandError(f"--scopes is required (one or more of {', '.join(SCOPES)}, or all)")
        if grace and not rotate:
            raise CommandError("--grace only applies with --rotate")
        chosen = None if not scopes else list(SCOPES) if scopes.strip() == "all" else scopes.split(",")
        try:
            key = service_token_create(name=name, scopes=chosen, rotate=rotate, grace_seconds=grace,
                                       by="manage.py create_service_token")
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(key)
        self.stderr.write(f"Key for {name} printed above, shown this once: store it in the caller's secrets."
                          + (f" The previous keys stop working in {grace} s." if rotate else ""))
