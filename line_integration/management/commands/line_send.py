from django.core.management.base import BaseCommand

from line_integration.bootstrap import sender_process_tune
from line_integration.services import sender_run


class Command(BaseCommand):
    help = "Run a LINE sender in the foreground: plan queued messages and send due requests."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
        parser.add_argument("--forever", action="store_true", help="keep polling when idle")

    def handle(self, *args, **options):
        sender_process_tune()  # this process is a sender from its start (bootstrap.py says why)
        result = sender_run(seconds=options["seconds"], until_idle=not options["forever"])
        self.stdout.write(str(result))
