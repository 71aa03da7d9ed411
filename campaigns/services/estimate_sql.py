"""The PostgreSQL statement of the points estimate (the item page's hot path): a customer's facts in one query.

Composed with `psycopg.sql` (table and column names from the models' `_meta`, data only ever as
parameters) once, at first use -- loyalty's models are not loaded yet when this module is imported --
and kept as text: `selectors.customer_facts_get` prepares it once per connection.
"""

from __future__ import annotations

from functools import cache

from psycopg import sql

from ..models import CardStatus


@cache
def customer_facts() -> str:
    """(effective loyalty stage, card status) of customer %s (passed twice); NULL for what is unknown."""
    from loyalty.models import Customer

    def name(model, attname: str) -> sql.Identifier:
        return sql.Identifier(model._meta.get_field(attname).column)

    return sql.SQL(
        "SELECT (SELECT {stage} FROM {customer} WHERE {customer_id} = %s), "
        "(SELECT {mercard_status} FROM {card_status} WHERE {card_customer_id} = %s)"
    ).format(
        customer=sql.Identifier(Customer._meta.db_table), stage=name(Customer, "stage"),
        customer_id=name(Customer, "customer_id"), card_status=sql.Identifier(CardStatus._meta.db_table),
        mercard_status=name(CardStatus, "mercard_status"), card_customer_id=name(CardStatus, "customer_id"),
    ).as_string()
