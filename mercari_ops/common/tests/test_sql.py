from datetime import date

import pytest
from django.db import connection

from mercari_ops.common.sql import pg_array

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("values", "cast"), [
    (["plain", 'with "quotes"', "back\\slash", "comma,brace{}", " spaced ", "", "NULL", "日本語", None], "varchar"),
    ([1, -2, 3_000_000_000_000, None], "bigint"),
    ([date(2026, 10, 1), date(2013, 7, 1)], "date"),
])
def test_pg_array_round_trips_through_postgresql(values, cast):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{cast}[]", [pg_array(values)])
        assert cursor.fetchone()[0] == values


def test_pg_array_of_nothing_is_the_empty_array():
    assert pg_array([]) == "{}"
