"""At-a-glance panels on the admin index. Apps register a function returning rows of (label, value, url)."""

from __future__ import annotations

from collections.abc import Callable

PANELS: list[tuple[str, Callable[[], list[tuple[str, object, str]]]]] = []


def register_panel(title: str, rows: Callable[[], list[tuple[str, object, str]]]) -> None:
    PANELS.append((title, rows))


def inbox_rows() -> list[tuple[str, object, str]]:
    from django.db.models import Count
    from django.urls import reverse

    from mercari_ops.inbox.models import DeadLetter, InboxEvent

    by_status = dict(
        InboxEvent.objects.filter(status__in=["retry", "waiting", "dead"]).values_list("status")
        .annotate(n=Count("id")).values_list("status", "n")
    )
    base = reverse("admin:inbox_inboxevent_changelist") + "?status__exact="
    return [
        ("Events retrying", by_status.get("retry", 0), base + "retry"),
        ("Events waiting for another event", by_status.get("waiting", 0), base + "waiting"),
        ("Dead events (need an operator)", by_status.get("dead", 0), base + "dead"),
        ("Open dead letters (bad bodies)", DeadLetter.objects.filter(status="open").count(),
         reverse("admin:inbox_deadletter_changelist") + "?status__exact=open"),
    ]


register_panel("Event inbox", inbox_rows)
