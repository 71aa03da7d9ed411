"""The PostgreSQL statement of the points estimate (the item page's hot path): a customer's facts in one query.

Composed with `psycopg.sql` (table and column names from the models' `_meta`, data only ever as
parameters; loyalty's part from loyalty's selectors) once, at first use -- loyalty is not loaded yet
when this module is imported -- and kept as text: `selectors.customer_facts_get` prepares it once per
connection.
"""

from __future__ import annotations

from functools import cache

from psycopg import sql

from ..models import CardStatus


@cache
def customer_facts() -> str:
    """(loyalty stage, card status) of customer %s (passed twice); NULL for what is unknown."""
    from loyalty.selectors import customer_stage_sql

    def name(attname: str) -> sql.Identifier:
        return sql.Identifier(CardStatus._meta.get_field(attname).column)

    return sql.SQL("SELECT ({stage}), (SELECT {mercard_status} FROM {card_status} WHERE {customer_id} = %s)").format(
        stage=customer_stage_sql(), card_status=sql.Identifier(CardStatus._meta.db_table),
        mercard_status=name("mercard_status"), customer_id=name("customer_id"),
    ).as_string()
