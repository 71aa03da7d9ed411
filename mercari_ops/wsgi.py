"""WSGI entry point: browser pages and machine endpoints on two Django handlers.

Machine-to-machine endpoints (`MACHINE_PATH_PREFIXES`: Pub/Sub push, the Braze and LINE webhooks, the
APIs) authenticate their callers by a token or a signature, never by a browser session. They run through a
second Django handler whose middleware is `MACHINE_MIDDLEWARE` (security headers and redirect,
database-unavailable -> 503) instead of the full stack (sessions, CSRF, auth, messages,
clickjacking), which costs them nothing useful and costs every push its time. Same settings,
URLconf, views, signals and error handling otherwise.
"""

import os

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

from mercari_ops.common.gcfreeze import loaded_objects_freeze

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
django.setup(set_prefix=False)


class MachineWSGIHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.MACHINE_MIDDLEWARE  # read by Django's loader; restored below
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def _application():
    browser, machine = WSGIHandler(), MachineWSGIHandler()
    prefixes = tuple(settings.MACHINE_PATH_PREFIXES)

    def application(environ, start_response):
        handler = machine if environ.get("PATH_INFO", "").startswith(prefixes) else browser
        return handler(environ, start_response)

    return application


application = _application()

if settings.WSGI_GC_FREEZE:
    # Everything loaded so far (Django, the apps, settings) lives as long as the process: keep the cyclic
    # collector from walking it again in every full collection, a pause of several milliseconds in the
    # middle of a request. Measured (docs/benchmarks.md): removes the history read's p99 outliers on sync
    # workers, but doubles the threaded ingest's p50, hence a setting for read pools only.
    loaded_objects_freeze()
