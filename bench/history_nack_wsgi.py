"""Bench-only WSGI app: the normal project plus POST /bench/history-nack/<topic>, the source team's approach.

An event whose parent is missing is rolled back and answered 409 (a nack), so Pub/Sub would redeliver
it later; nothing is recorded. Everything else is the project's own application.
"""

from mercari_ops.wsgi import application as project  # sets Django up; the imports below need it


class _Nack(Exception):
    pass


def nack_view(environ, topic_name: str) -> int:
    from django.db import transaction

    from mercari_ops.inbox.registry import get_topic
    from mercari_ops.inbox.services import Outcome, envelope_decode, event_clean, inbox_accept

    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    topic = get_topic(topic_name)
    event, message_id = envelope_decode(body)
    event = event_clean(topic, event)
    try:
        with transaction.atomic():
            result = inbox_accept(topic=topic, event=event, message_id=message_id)
            if result.outcome is Outcome.WAITING:
                raise _Nack
    except _Nack:
        return 409
    return 204


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/bench/history-nack/"):
        status = nack_view(environ, path.rsplit("/", 1)[1])
        start_response("204 No Content" if status == 204 else "409 Conflict", [("Content-Length", "0")])
        return [b""]
    return project(environ, start_response)
