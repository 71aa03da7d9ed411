"""Property-based test (hypothesis) of the Braze webhook body: any body is accepted (202) or a 400 naming the field,
never another exception. Deterministic (derandomize), 200 examples."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from line_integration.models import OutboundMessage
from mercari_ops.common.tests.test_untrusted_properties import bodies, json_values, serialised

pytestmark = pytest.mark.django_db

BODY = {"user_id": "c-1", "dispatch_id": "d-1", "campaign_id": "braze-cmp-9", "template": "saved_search_new_items",
        "params": {"search_id": "s-5"}}


def test_any_braze_body_is_queued_or_skipped_or_a_400_with_a_field(braze, text_template, link_customers):
    link_customers(["c-1"])
    braze_bodies = st.one_of(
        bodies,
        st.builds(lambda key, value, ascii_: serialised({**BODY, key: value}, ascii_),
                  st.sampled_from(sorted(BODY)), json_values, st.booleans()),
        st.builds(lambda key, value, ascii_: serialised({**BODY, "params": {key: value}}, ascii_),
                  st.text(max_size=5), json_values, st.booleans()),
    )

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(braze_bodies)
    def check(body):
        response = braze(body)
        assert response.status_code in (202, 400), (response.status_code, response.content[:300])
        answer = response.json()
        if response.status_code == 400:
            assert answer["field"] and answer["error"], answer
        else:
            assert answer in ({"status": "queued"}, {"status": "skipped", "reason": "not_linked"})

    check()
    for message in OutboundMessage.objects.all():
        json.dumps(message.params, allow_nan=False).encode("utf-8")
