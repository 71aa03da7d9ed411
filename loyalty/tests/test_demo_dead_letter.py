"""The demo's dead letter (`kind: gift`) fixed the way an operator does it: on its admin page, the decoded
event edited as JSON, then Save and replay; the activity then counts for the customer."""

import json
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.db.models import Sum

from loyalty import demo
from loyalty.models import MonthlyTotal
from mercari_ops.inbox.models import DeadLetter

pytestmark = pytest.mark.django_db


def test_operator_fixes_the_demo_gift_letter_and_the_purchase_counts(client):
    demo.seed(stdout=StringIO(), customers=5)
    letter = DeadLetter.objects.get(event_id=demo.GIFT_EVENT_ID)
    assert letter.status == "open" and "kind must be one of" in letter.error
    operator = User.objects.create_user("gift-op", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="operators"))
    client.force_login(operator)
    url = f"/admin/inbox/deadletter/{letter.pk}/change/"
    page = client.get(url).content.decode()
    assert "&quot;kind&quot;: &quot;gift&quot;" in page and "&quot;source&quot;: &quot;marketplace&quot;" in page
    buys_before = MonthlyTotal.objects.filter(customer__customer_id="c-00003", kind="buy").aggregate(
        n=Sum("count"))["n"] or 0
    # when: kind fixed to "buy" on the page, then Save and replay
    form = client.get(url).context["adminform"].form
    event = {**json.loads(form.fields["event_json"].initial), "kind": "buy"}  # what the page shows, kind fixed
    response = client.post(url, {"event_json": json.dumps(event), "attributes_json": '{"source": "marketplace"}',
                                 "_saveandreplay": "1"}, follow=True)
    # then
    assert "Replayed: processed" in response.content.decode()
    assert DeadLetter.objects.get(pk=letter.pk).status == "replayed"
    buys_after = MonthlyTotal.objects.filter(customer__customer_id="c-00003", kind="buy").aggregate(
        n=Sum("count"))["n"]
    assert buys_after == buys_before + 1
    assert "added nothing" in demo.seed(stdout=StringIO(), customers=5)  # the letter is not sent again
