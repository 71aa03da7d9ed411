import io

import pytest

from campaigns import demo
from campaigns.models import Bill, Campaign, CampaignReward, CardStatus, MerchantAlias

pytestmark = pytest.mark.django_db


def test_demo_seed_is_idempotent(customer):
    customer("c-00001", stage=40, card_status=None)
    first = demo.seed(stdout=io.StringIO())
    counts = (Campaign.objects.count(), MerchantAlias.objects.count(), CardStatus.objects.count(),
              Bill.objects.count(), CampaignReward.objects.count())
    assert counts[0] == 2 and counts[2] == 3000 and counts[3] == demo.BILL_CUSTOMERS and counts[4] > 0
    second = demo.seed(stdout=io.StringIO())
    assert "0 campaigns" in second and "0 bills" in second and first != second
    assert counts == (Campaign.objects.count(), MerchantAlias.objects.count(), CardStatus.objects.count(),
                      Bill.objects.count(), CampaignReward.objects.count())
