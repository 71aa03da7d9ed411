"""Stage-rules change requests as an approver reads them, and rejected proposals in the rules' history."""

import json
import re

import pytest
from django.utils import timezone

from loyalty.tests.test_rules_four_eyes import ADD, SILVER_EASIER, customers, people  # noqa: F401 (fixtures)
from mercari_ops.common.approvals import change_request_reject
from mercari_ops.common.models import ChangeRequest

pytestmark = pytest.mark.django_db
RULES_LIST = "/admin/loyalty/stageruleversion/"


def test_the_request_page_shows_moves_per_named_stage_and_only_the_changed_threshold(client, people,  # noqa: F811
                                                                                      customers):  # noqa: F811
    client.post(ADD, {"definition": json.dumps(SILVER_EASIER), "note": "easier Silver"})
    change = ChangeRequest.objects.get()
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    changed = re.search(r'<table class="change-diff">.*?</table>', page, re.S).group(0)
    # one threshold changed, in yen; buy_count went away
    assert "stages.1.thresholds.buy_amount" in changed and "\u00a510,000" in changed and "\u00a55,000" in changed
    assert "stages.2." not in changed and "window_months" not in changed
    # the figures: who moves where, by stage name, with a chart; no raw dumps
    assert "Of 2 customers, 1 would move up, 0 would move down and 1 would keep their stage" in page
    stages = re.search(r'<table class="rules-preview-stages">.*?</table>', page, re.S).group(0)
    assert "Regular (10)" in stages and "Silver (20)" in stages
    assert "<svg" in page and "per_stage_after" not in page and "stage_names" not in page


def test_a_rejected_proposal_is_listed_with_its_decider_on_the_rules_list(client, people, customers):  # noqa: F811
    client.post(ADD, {"definition": json.dumps(SILVER_EASIER), "note": "easier Silver"})
    change = change_request_reject(request_id=ChangeRequest.objects.get().pk, by=people["anna"],
                                   note="not this month")
    page = client.get(RULES_LIST).content.decode()
    section = page.split('id="rejected-proposals"', 1)[1]
    assert f'/admin/common/changerequest/{change.pk}/change/">#{change.pk}</a>' in section
    assert "easier Silver" in section and "<td>mika</td><td>anna</td>" in section and "not this month" in section
    assert f"{timezone.localtime(change.decided_at):%Y-%m-%d %H:%M} JST" in section
