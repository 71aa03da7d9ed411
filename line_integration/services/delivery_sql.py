"""The PostgreSQL statements of proactive delivery: accepting messages, planning them into requests, outcomes.

Design: the Braze webhook and the sender are hot paths (the webhook at half a bare view or more, the
sender at the LINE limit), so they run plain statements that return tuples, never model instances, and
set-based writes with one array per column (`pg_array` where Python's element-by-element adaptation
cost too much). Every statement is composed here once, at import, with `psycopg.sql` from pieces -- table
and column names from the models' `_meta`, data only ever as parameters -- and kept as its text: psycopg
prepares a statement by its text after `prepare_threshold` runs on a connection (DATABASES OPTIONS).

The skip rule exists once, as `_skip_reason`: a message goes out only while its LINE account is linked to
its customer. Accepting a message (Braze, line_notify, greetings, test messages) and claiming a queued one
(planning, the greeting's send-now) read the account and decide in the same statement, and the callers
take the reason the statement returns.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Model
from psycopg import sql

from mercari_ops.common.sql import pg_array

from ..models import LineRequest, LineUser, OutboundMessage


def _names(model: type[Model], prefix: str) -> dict[str, sql.Identifier]:
    """{prefix + field attname: column}, plus prefix + "table"; the keys a statement's pieces are formatted with."""
    names = {prefix + field.attname: sql.Identifier(field.column) for field in model._meta.concrete_fields}
    names[prefix + "table"] = sql.Identifier(model._meta.db_table)
    return names


_USER = _names(LineUser, "u_")  # {u_table}, {u_line_user_id}, {u_customer_id}, {u_status}...
_MESSAGE = _names(OutboundMessage, "m_")  # {m_table}, {m_dispatch_id}, {m_request_id}...
_REQUEST = _names(LineRequest, "r_")  # {r_table}, {r_retry_key}, {r_claimed_until}...
_VALUES = {
    "linked": sql.Literal(LineUser.Status.LINKED.value), "blocked": sql.Literal(LineUser.Status.BLOCKED.value),
    "queued": sql.Literal(OutboundMessage.Status.QUEUED.value),
    "skipped": sql.Literal(OutboundMessage.Status.SKIPPED.value),
    "pending": sql.Literal(LineRequest.Status.PENDING.value),
    "reason_blocked": sql.Literal(OutboundMessage.SkipReason.BLOCKED.value),
    "reason_not_linked": sql.Literal(OutboundMessage.SkipReason.NOT_LINKED.value),
}


def _compose(template: str, **pieces: sql.Composable) -> sql.Composed:
    return sql.SQL(template).format(**_USER, **_MESSAGE, **_REQUEST, **_VALUES, **pieces)


def _skip_reason(customer: sql.Composable) -> sql.Composed:
    """The skip rule over `u`, the message's LINE account row (NULL when there is none), for the message's
    `customer`: '' while the account is linked to that customer, else why the message is skipped."""
    return _compose("CASE WHEN u.{u_status} = {blocked} THEN {reason_blocked} "
                    "WHEN u.{u_status} = {linked} AND u.{u_customer_id} = {customer} THEN '' "
                    "ELSE {reason_not_linked} END", customer=customer)


# Accepting messages: one row per (dispatch_id, user_id), the first time only; queued with the customer's
# LINE user ID while they are linked, skipped with the reason otherwise. Parameters: kind, created_at, then
# one array per column of MESSAGE_COLUMNS.
MESSAGE_COLUMNS = ("dispatch_id", "user_id", "campaign_id", "template", "params")
MESSAGES_ACCEPT = _compose(
    "INSERT INTO {m_table} ({m_dispatch_id}, {m_user_id}, {m_campaign_id}, {m_template}, {m_params}, "
    "{m_line_user_id}, {m_kind}, {m_status}, {m_reason}, {m_created_at}) "
    "SELECT e.dispatch_id, e.user_id, e.campaign_id, e.template, e.params::jsonb, COALESCE(u.{u_line_user_id}, ''), "
    "%s, CASE WHEN s.reason = '' THEN {queued} ELSE {skipped} END, s.reason, %s "
    "FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::text[]) "
    "AS e(dispatch_id, user_id, campaign_id, template, params) "
    "LEFT JOIN {u_table} u ON u.{u_customer_id} = e.user_id "
    "CROSS JOIN LATERAL (SELECT {skip_reason} AS reason) AS s "
    "ON CONFLICT ({m_dispatch_id}, {m_user_id}) DO NOTHING "
    "RETURNING {m_dispatch_id}, {m_user_id}, {m_status}, {m_reason}",
    skip_reason=_skip_reason(sql.SQL("e.user_id")),
).as_string()
# The (status, reason) of messages recorded before: a repeat is answered as the first time.
MESSAGES_OUTCOME = _compose(
    "SELECT o.{m_dispatch_id}, o.{m_user_id}, o.{m_status}, o.{m_reason} FROM {m_table} o "
    "JOIN unnest(%s::varchar[], %s::varchar[]) AS r(dispatch_id, user_id) "
    "ON o.{m_dispatch_id} = r.dispatch_id AND o.{m_user_id} = r.user_id",
).as_string()

# A queued message as the planner takes it, row-locked (SKIP LOCKED: concurrent planners share the queue):
# (id, kind, template, params, line_user_id, skip reason), the account read again by one indexed lookup per
# message -- a user who unfollowed or was unlinked since the message was queued gets nothing. The lookup is
# a scalar subquery (one index scan per row, no join for the planner to reorder); when it finds no account,
# COALESCE gives what `_skip_reason` answers for a missing (NULL) account.
_QUEUED = _compose(
    "SELECT m.{m_id}, m.{m_kind}, m.{m_template}, m.{m_params}, m.{m_line_user_id}, "
    "COALESCE((SELECT {skip_reason} FROM {u_table} u WHERE u.{u_line_user_id} = m.{m_line_user_id}), "
    "{reason_not_linked}) "
    "FROM {m_table} m WHERE m.{m_status} = {queued}",
    skip_reason=_skip_reason(_compose("m.{m_user_id}")),
)
QUEUED_CLAIM = _compose("{queued_rows} ORDER BY m.{m_id} LIMIT %s FOR UPDATE OF m SKIP LOCKED",
                        queued_rows=_QUEUED).as_string()
QUEUED_CLAIM_ONE = _compose("{queued_rows} AND m.{m_id} = %s FOR UPDATE OF m SKIP LOCKED",
                            queued_rows=_QUEUED).as_string()

# New LineRequests from one JSON array (one parameter, parsed by PostgreSQL), matched back by retry key.
# Parameters: next_attempt_at, claimed_until, created_at, the array.
REQUESTS_INSERT = _compose(
    "INSERT INTO {r_table} ({r_kind}, {r_retry_key}, {r_body}, {r_recipient_count}, {r_status}, {r_attempts}, "
    "{r_next_attempt_at}, {r_claimed_until}, {r_last_error}, {r_accepted_request_id}, {r_created_at}) "
    "SELECT r->>'kind', (r->>'retry_key')::uuid, r->'body', (r->>'count')::int, {pending}, 0, %s, %s, '', '', %s "
    "FROM jsonb_array_elements(%s::jsonb) AS r "
    "RETURNING {r_id}, {r_retry_key}::text",
).as_string()

# One UPDATE ... FROM unnest(arrays) per batch: Django's bulk_update builds a CASE per column and row, which
# cost more CPU than the sending itself at 1,000 messages a second.
MESSAGES_SET = _compose(
    "UPDATE {m_table} AS m SET {m_status} = v.status, {m_request_id} = v.request_id, {m_reason} = v.reason "
    "FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::text[]) AS v(id, status, request_id, reason) "
    "WHERE m.{m_id} = v.id",
).as_string()
# Outcomes of sends, only for requests still under the sender's lease (the last parameter).
REQUESTS_SET = _compose(
    "UPDATE {r_table} AS r "
    "SET {r_attempts} = v.attempts, {r_last_status} = v.last_status, {r_last_error} = v.last_error, "
    "{r_claimed_until} = NULL, {r_status} = v.status, {r_sent_at} = v.sent_at, {r_accepted_request_id} = v.accepted, "
    "{r_next_attempt_at} = v.next_at "
    "FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], "
    "%s::timestamptz[]) AS v(id, attempts, last_status, last_error, status, sent_at, accepted, next_at) "
    "WHERE r.{r_id} = v.id AND r.{r_claimed_until} = %s "
    "RETURNING r.{r_id}",
).as_string()


def messages_accept(*, kind: str, now: datetime, messages: list[tuple[str, str, str, str, str]],
                    ) -> dict[tuple[str, str], tuple[str, str]]:
    """Record messages (tuples in MESSAGE_COLUMNS order, params as JSON text) inside the caller's transaction.

    Returns {(dispatch_id, user_id): (status, reason)} for every message, new or recorded before.
    """
    columns = [list(column) for column in zip(*messages, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(MESSAGES_ACCEPT, [kind, now, *columns])
        outcome = {(dispatch_id, user_id): (status, reason) for dispatch_id, user_id, status, reason in cursor}
        repeats = [(message[0], message[1]) for message in messages if (message[0], message[1]) not in outcome]
        if repeats:
            cursor.execute(MESSAGES_OUTCOME, [[d for d, _ in repeats], [u for _, u in repeats]])
            outcome.update({(d, u): (s, r) for d, u, s, r in cursor})
    return outcome


def queued_claim(*, limit: int) -> list[tuple]:
    """Up to `limit` queued messages, oldest first, locked: (id, kind, template, params, line_user_id, skip reason)."""
    with connection.cursor() as cursor:
        cursor.execute(QUEUED_CLAIM, [limit])
        return cursor.fetchall()


def queued_claim_one(*, message_id: int) -> tuple | None:
    """The message, locked, if it is queued and no one else holds it: a row as `queued_claim`'s."""
    with connection.cursor() as cursor:
        cursor.execute(QUEUED_CLAIM_ONE, [message_id])
        return cursor.fetchone()


def requests_insert(*, requests_json: str, now: datetime, lease: datetime | None) -> dict[str, int]:
    """Insert requests from a JSON array of {kind, retry_key, body, count}; returns {retry key: id}."""
    with connection.cursor() as cursor:
        cursor.execute(REQUESTS_INSERT, [now, lease, now, requests_json])
        return {retry_key: id_ for id_, retry_key in cursor.fetchall()}


def messages_set(*, changes: list[tuple[int, str, int | None, str]]) -> None:
    """Write (message id, status, request id, reason) for each message."""
    ids, statuses, request_ids, reasons = zip(*changes, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(MESSAGES_SET, [pg_array(ids), pg_array(statuses), pg_array(request_ids), pg_array(reasons)])


def requests_set(*, requests: list, lease: datetime) -> set[int]:
    """Write the send outcomes held by `requests` (LineRequest-like objects) of those still under `lease`;
    returns their ids."""
    with connection.cursor() as cursor:
        cursor.execute(REQUESTS_SET, [
            pg_array(r.id for r in requests), pg_array(r.attempts for r in requests),
            pg_array(r.last_status for r in requests), pg_array(r.last_error for r in requests),
            pg_array(r.status for r in requests), pg_array(r.sent_at for r in requests),
            pg_array(r.accepted_request_id for r in requests), pg_array(r.next_attempt_at for r in requests), lease])
        return {row[0] for row in cursor.fetchall()}
