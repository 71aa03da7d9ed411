"""Reads of the payment history: the customer's feed (keyset paginated) and one payment."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import datetime

from django.conf import settings

from mercari_ops.common.errors import NotFound, ValidationFailed
from mercari_ops.common.logging import log_safe_customer

from .models import EntryState, EntryType, PaymentEntry, PaymentTransition
from .services import history_sql
from .states import actions_for

logger = logging.getLogger(__name__)


# --- cursor --------------------------------------------------------------------


def cursor_encode(occurred_at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at.isoformat()}|{pk}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, pk = raw.split("|")
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed, int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("cursor is not a cursor this API returned", "cursor") from None


# --- cashback estimates ------------------------------------------------------------


def _estimate_wanted(entry: dict) -> bool:
    return entry["type"] != EntryType.PURCHASE and entry["state"] != EntryState.REFUNDED


def _estimate_item(entry: dict, channel: str) -> dict:
    attributes = entry["attributes"] or {}
    method = attributes.get("payment_method") or ("mercard" if entry["type"] == EntryType.CARD else None)
    return {"amount": entry["amount"], "channel": channel, "merchant_id": attributes.get("merchant_id"),
            "payment_method": method}


def estimates_many(*, customer_id: str, wanted: list[tuple[int, dict]]) -> dict[int, dict]:
    """Cashback estimates from campaigns for (entry pk, item) pairs of one customer, in one call.

    Uses campaigns.selectors.estimate_items (one query for a whole page) when it exists, else
    points_estimate per item (interfaces.md); {} while the campaigns app has not landed.
    """
    if not wanted:
        return {}
    try:
        from campaigns import selectors as campaigns_selectors
    except ImportError:
        return {}
    try:
        bulk = getattr(campaigns_selectors, "estimate_items", None)
        if bulk is not None:
            results = bulk(customer_id=customer_id, items=[item for _, item in wanted])
        else:
            results = [campaigns_selectors.points_estimate(customer_id=customer_id, **item) for _, item in wanted]
    except Exception:  # an estimate is decoration: never fail the history because of it
        logger.exception("points estimates failed for customer %s", log_safe_customer(customer_id))
        return {}
    return {pk: result for (pk, _), result in zip(wanted, results, strict=False)}


# --- rows --------------------------------------------------------------------------


def _dicts(rows: list[tuple]) -> list[dict]:
    """Rows of `history_sql` (ordered by (occurred_at, id)) as plain dicts, never model instances.

    Attributes come as JSON text and are parsed in one call for all rows (json.loads per row was a
    tenth of a page's CPU).
    """
    dicts = [dict(zip(history_sql.ROW_NAMES, values, strict=True)) for values in rows]
    if dicts:
        attributes = json.loads("[" + ",".join(row["attributes"] for row in dicts) + "]")
        for row, value in zip(dicts, attributes, strict=True):
            row["attributes"] = value
    return dicts


# --- shaping -----------------------------------------------------------------------


class _Tree:
    """Entries of a page (or one payment's family) with their children, shaped for the API."""

    def __init__(self, rows: list[dict], customer_id: str):
        """`rows` in (occurred_at, id) order, the order children are listed in."""
        self.by_pk = {row["id"]: row for row in rows}
        self.children_of: dict[int, list[dict]] = {}
        for row in rows:
            if row["parent_id"] is not None:
                self.children_of.setdefault(row["parent_id"], []).append(row)
        self.customer_id = customer_id
        self.channels: dict[int, str] = {}

    def channel(self, entry: dict) -> str:
        """mercari when the payment paid for a marketplace purchase (an ancestor), else outside."""
        pk = entry["id"]
        if pk not in self.channels:
            parent = self.by_pk.get(entry["parent_id"])
            if entry["type"] == EntryType.PURCHASE:
                self.channels[pk] = "mercari"
            elif parent is None:
                self.channels[pk] = "outside"
            else:
                self.channels[pk] = self.channel(parent)
        return self.channels[pk]

    def estimates_load(self, entries: list[dict]) -> None:
        wanted = [(e["id"], _estimate_item(e, self.channel(e))) for e in entries if _estimate_wanted(e)]
        self.estimates = estimates_many(customer_id=self.customer_id, wanted=wanted)

    def shape(self, entry: dict) -> dict:
        parent = self.by_pk.get(entry["parent_id"])
        return {
            "payment_id": entry["payment_id"],
            "type": entry["type"],
            "parent_id": parent["payment_id"] if parent else None,
            "amount": entry["amount"],
            "state": entry["state"],
            "state_at": entry["state_at"],
            "occurred_at": entry["occurred_at"],
            "title": entry["title"],
            "attributes": entry["attributes"],
            "actions": actions_for(entry_type=entry["type"], state=entry["state"], amount=entry["amount"],
                                   payment_id=entry["payment_id"]),
            "cashback": self.estimates.get(entry["id"]),
            "children": [self.shape(child) for child in self.children_of.get(entry["id"], [])],
        }


def _customer_known(customer_id: str) -> bool:
    if PaymentEntry.objects.filter(customer_id=customer_id).exists():
        return True
    try:
        from loyalty.selectors import customer_stage_get
    except ImportError:
        return False
    return customer_stage_get(customer_id=customer_id) is not None


def history_page(*, customer_id: str, cursor: str | None = None, page_size: int | None = None) -> dict:
    """A customer's top-level entries, newest first, with their children, actions and cashback estimate.

    Keyset pagination on history_entry_feed (customer_id, occurred_at DESC, id DESC): one statement
    per page whatever its depth (the page's entries and every descendant of them), no OFFSET, no COUNT.
    """
    size = settings.HISTORY_PAGE_SIZE if page_size is None else page_size
    if not 1 <= size <= settings.HISTORY_PAGE_SIZE_MAX:
        raise ValidationFailed(f"page_size must be between 1 and {settings.HISTORY_PAGE_SIZE_MAX}", "page_size")
    after = cursor_decode(cursor) if cursor else None
    rows = _dicts(history_sql.feed_page(customer_id=customer_id, limit=size + 1, after=after))
    tops = [row for row in reversed(rows) if row["parent_id"] is None]  # newest first
    if not tops and not cursor and not _customer_known(customer_id):
        raise NotFound(f"unknown customer {customer_id}", "customer_id")
    more = len(tops) > size
    tops = tops[:size]
    # The extra top-level entry (fetched to know that another page exists) and its family are not shown.
    shown = {top["id"] for top in tops}
    rows = [row for row in rows if (row["root_id"] or row["id"]) in shown]
    tree = _Tree(rows, customer_id)
    tree.estimates_load(tops + [row for row in rows if row["parent_id"] is not None])
    last = tops[-1] if tops else None
    return {
        "customer_id": customer_id,
        "entries": [tree.shape(top) for top in tops],
        "next_cursor": cursor_encode(datetime.fromisoformat(last["occurred_at"]), last["id"]) if more else None,
    }


def payment_get(*, payment_id: str) -> dict:
    """One entry with its children (recursively), its parent's ID and every state transition."""
    found = history_sql.entry_locate(payment_id=payment_id)
    if found is None:
        raise NotFound(f"unknown payment {payment_id}", "payment_id")
    pk, root_pk, customer_id = found
    tree_root = root_pk or pk
    tree = _Tree(_dicts(history_sql.family(root_pk=tree_root)), customer_id)
    entry = tree.by_pk[pk]
    below, frontier = [], [entry]
    while frontier:
        frontier = [child for row in frontier for child in tree.children_of.get(row["id"], [])]
        below += frontier
    tree.estimates_load([entry, *below])
    shaped = tree.shape(entry)
    shaped["customer_id"] = customer_id
    shaped["transitions"] = [
        {"kind": t.kind, "from_state": t.from_state, "to_state": t.to_state, "outcome": t.outcome,
         "occurred_at": _datetime_iso(t.occurred_at), "recorded_at": _datetime_iso(t.recorded_at), "note": t.note}
        for t in PaymentTransition.objects.filter(entry_id=pk).order_by("recorded_at", "id")
    ]
    return shaped


def _datetime_iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
