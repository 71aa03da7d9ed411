"""Reads other apps make of LINE accounts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from line_integration.models import LineUser
from line_integration.selectors import line_user_linked, line_users_linked

pytestmark = pytest.mark.django_db


def test_linked_customers_are_those_with_a_linked_account():
    # given
    LineUser.objects.create(line_user_id="U" + "a" * 32, customer_id="c-linked", status=LineUser.Status.LINKED)
    LineUser.objects.create(line_user_id="U" + "b" * 32, customer_id="c-blocked", status=LineUser.Status.BLOCKED)
    LineUser.objects.create(line_user_id="U" + "c" * 32, customer_id=None, status=LineUser.Status.FOLLOWING)
    customers = ["c-linked", "c-blocked", "c-none"]
    # when
    with CaptureQueriesContext(connection) as queries:
        linked = line_users_linked(customer_ids=customers)
    # then
    assert linked == {"c-linked"}
    assert linked == {customer for customer in customers if line_user_linked(customer_id=customer)}
    assert len(queries.captured_queries) == 1


def test_no_customers_cost_no_query():
    with CaptureQueriesContext(connection) as queries:
        assert line_users_linked(customer_ids=[]) == set()
    assert not queries.captured_queries
