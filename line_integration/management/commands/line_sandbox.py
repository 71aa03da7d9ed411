from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the LINE Messaging API sandbox (push, multicast, reply, rich menus, link tokens, audiences)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8089)
        parser.add_argument("--audience-job-seconds", type=float, default=settings.LINE_SANDBOX_AUDIENCE_JOB_SECONDS,
                            help="seconds an audience job takes from QUEUED to FINISHED")
        parser.add_argument("--any-token", action="store_true",
                            help="accept any bearer token instead of LINE_CHANNEL_ACCESS_TOKEN")

    def handle(self, *args, **options):
        from line_integration.sandbox import run

        token = None if options["any_token"] else settings.LINE_CHANNEL_ACCESS_TOKEN
        self.stdout.write(f"LINE sandbox on http://{options['host']}:{options['port']} "
                          f"(control: /__sandbox/stats, /__sandbox/requests, /__sandbox/faults)")
        self.stdout.flush()
        try:
            run(host=options["host"], port=options["port"], access_token=token,
                audience_job_seconds=options["audience_job_seconds"])
        except KeyboardInterrupt:
            pass
