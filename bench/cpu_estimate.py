"""CPU per estimate request in process (no network, no wrk: a shared VM's CPU steal does not bend it), for an
A/B between commits: `make test PYTEST_ARGS="bench/cpu_estimate.py -s -p no:cacheprovider"` in each checkout."""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_cpu_per_estimate(settings):
    from campaigns.catalog import catalog_reset
    from campaigns.models import CardStatus
    from campaigns.services import campaign_activate, campaign_create, merchant_master_import_csv
    from loyalty.models import Customer
    from mercari_ops.common.services import service_token_create
    from mercari_ops.common.tests.wsgi_client import wsgi_call

    settings.CAMPAIGNS_CATALOG_CHECK_SECONDS = 2
    Customer.objects.create(customer_id="c-1", stage=20)
    CardStatus.objects.create(customer_id="c-1", mercard_status=3, changed_at=timezone.now())
    merchant_master_import_csv(text="merchant_id,payment_method,master_id,is_marketplace\nm-mercari,,mercari,1\n")
    now = timezone.now()
    campaign = campaign_create(name="p", starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=10),
                               rates=[(10, 40, "1.0")], user_filters={}, payment_filters={}, upper_limit=1000)
    campaign_activate(campaign_id=campaign.pk)
    catalog_reset()
    headers = {"Authorization": f"Token {service_token_create(name='cpu')}"}
    body = json.dumps({"customer_id": "c-1", "amount": 3000, "channel": "mercari", "payment_method": "mercard"})
    for _ in range(300):  # warm: prepared statements, caches
        status, _, content = wsgi_call("/api/campaigns/estimate", method="POST", body=body.encode(), headers=headers)
    assert status == 200, content
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(1000):
            wsgi_call("/api/campaigns/estimate", method="POST", body=body.encode(), headers=headers)
        rounds.append((time.process_time() - started) * 1000)
    print(f"estimate: {min(rounds):.1f} us of CPU per request (best of 5 x 1,000)")
