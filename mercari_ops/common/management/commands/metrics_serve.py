"""`manage.py metrics_serve --port 9108`: this machine's counters and histograms, for Prometheus.

For Celery workers (or beat) on a machine without the web: the web's /metrics sums the multiprocess folder of
its own machine only. This serves the same folder's counters and histograms at GET /metrics with the same
bearer token (METRICS_TOKEN), and no scrape gauges (the web serves those once, from the database). Run one
per machine beside the workers, with the same PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import hmac
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from mercari_ops.common.metrics.process import multiproc_dir


def counters_text() -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir()))
    return generate_latest(registry)


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    header, expected = environ.get("HTTP_AUTHORIZATION", ""), settings.METRICS_TOKEN
    if not expected or not header.startswith("Bearer ") or not hmac.compare_digest(header[7:].encode(),
                                                                                    expected.encode()):
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
        return [b"missing or wrong bearer token\n"]
    body = counters_text()
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line per scrape every few seconds is noise
        pass


class Command(BaseCommand):
    help = "Serve this machine's metric counters (the multiprocess folder) at /metrics, for workers without the web."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9108)
        parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: all)")

    def handle(self, *args, port: int, bind: str, **options):
        with make_server(bind, port, application, handler_class=_QuietHandler) as server:
            self.stdout.write(f"metrics of {multiproc_dir()} on http://{bind}:{port}/metrics", ending="\n")
            self.stdout.flush()
            server.serve_forever()
