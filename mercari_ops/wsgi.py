"""WSGI entry point: browser pages and machine endpoints on two Django handlers.

Machine-to-machine endpoints (`MACHINE_PATH_PREFIXES`: Pub/Sub push, the Braze and LINE webhooks, the
APIs) authenticate their callers by a token or a signature, never by a browser session. They run through a
second Django handler whose middleware is `MACHINE_MIDDLEWARE` (database-unavailable -> 503) instead of
the full stack (security headers, sessions, CSRF, auth, messages, clickjacking), which speaks to browsers,
gives these callers nothing and costs every push its time. Same settings,
URLconf, views, signals and error handling otherwise.
"""

import os

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.utils import translation
from django.utils.module_loading import import_string

from mercari_ops.common.gcfreeze import loaded_objects_freeze

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
django.setup(set_prefix=False)


class MachineWSGIHandler(WSGIHandler):
    """Django's WSGI handler on `MACHINE_MIDDLEWARE` (or another fixed list) instead of `MIDDLEWARE`.

    `load_middleware` is Django's (django/core/handlers/base.py) for a synchronous handler, over another
    list: Django's reads settings.MIDDLEWARE itself, and settings are never changed at runtime. The chain it
    builds is the one Django would build for that list, so a request costs the same.
    """

    middleware_setting = "MACHINE_MIDDLEWARE"

    def load_middleware(self, is_async=False):
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(getattr(settings, self.middleware_setting)):
            middleware = import_string(path)
            if not getattr(middleware, "sync_capable", True):
                raise ImproperlyConfigured(f"{self.middleware_setting}: {path} cannot run synchronously (WSGI)")
            try:
                instance = middleware(handler)
            except MiddlewareNotUsed:
                continue
            if instance is None:
                raise ImproperlyConfigured(f"Middleware factory {path} returned None.")
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, self.adapt_method_mode(False, instance.process_view))
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(
                    self.adapt_method_mode(False, instance.process_template_response))
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(self.adapt_method_mode(False, instance.process_exception))
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler

    def __call__(self, environ, start_response):
        # The admin speaks Japanese by default (LANGUAGE_CODE); the contracts' messages are English.
        translation.activate("en")
        return super().__call__(environ, start_response)


class BenchBareWSGIHandler(WSGIHandler):
    """The benchmarks' baseline on a fixed middleware list (BENCH_BARE_MIDDLEWARE): the denominator of every share
    must not move when the admin gains a middleware (docs/benchmarks.md, Method)."""

    load_middleware = MachineWSGIHandler.load_middleware
    middleware_setting = "BENCH_BARE_MIDDLEWARE"


def _application():
    browser, machine = WSGIHandler(), MachineWSGIHandler()
    prefixes = tuple(settings.MACHINE_PATH_PREFIXES)
    bench = BenchBareWSGIHandler() if settings.BENCH_BARE_VIEW else None

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if bench is not None and path == "/bench/bare":
            return bench(environ, start_response)
        handler = machine if path.startswith(prefixes) else browser
        return handler(environ, start_response)

    return application


application = _application()

if settings.WSGI_GC_FREEZE:
    # Start-up tuning for read-serving pools: see mercari_ops/common/gcfreeze.py and docs/benchmarks.md.
    loaded_objects_freeze()
