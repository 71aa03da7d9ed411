"""Grant delivery with a partly failing points service (issue 16, point 6), against a real local HTTP server.

Per-grant failure accounting: only a grant the service refused while it answered others gets an attempt
and a backoff; an outage opens the breaker, pauses delivery and charges nothing; once the service
answers again every grant goes out once. Time is injected (`now=`), never waited for.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import PointsGrant, PointsServiceBreaker
from campaigns.services import bills_record_many, bills_settle, grants_deliver, grants_deliver_all
from campaigns.tests.factories import _counter, bill_event, line
from campaigns.tests.points_server import PointsServer

pytestmark = pytest.mark.django_db

SWEEP = timedelta(seconds=10)  # campaigns.settle_grants_sweep's interval


@pytest.fixture
def grants(campaigns, customer):
    """`make(n)`: n pending grants of 30 points (one bill each, distinct customers)."""

    def make(count: int) -> list[str]:
        events = []
        for _ in range(count):
            n = next(_counter)
            customer(f"c-{n}", stage=10)
            events.append(bill_event(f"c-{n}", [line(f"p-{n}", 3000)]))
        bills = bills_record_many(events=events, enqueue=False)
        bills_settle(bill_ids=bills)
        keys = list(PointsGrant.objects.filter(bill_id__in=bills).values_list("idempotency_key", flat=True))
        assert len(keys) == count
        return keys

    return make


def _serve(settings, server: PointsServer) -> PointsServer:
    settings.POINTS_API_URL = server.url
    settings.POINTS_API_TIMEOUT_SECONDS = 2
    return server


def _sweep_until_delivered(start, *, limit: timedelta) -> timedelta:
    """Run the grants sweep every SWEEP from `start` until nothing is pending; how long it took."""
    now = start
    while PointsGrant.objects.filter(status="pending").exists():
        assert now - start <= limit, f"{PointsGrant.objects.filter(status='pending').count()} grants still pending"
        grants_deliver_all(now=now)
        now += SWEEP
    return now - SWEEP - start


def test_five_percent_503s_each_grant_once_and_attempts_only_on_grants_refused(settings, grants):
    keys = grants(300)
    with _serve(settings, PointsServer(fail_percent=5, seed=16)) as server:
        start = timezone.now() + timedelta(seconds=1)
        # the first pass sends every grant: one refusal does not stop the grants after it
        first = grants_deliver(now=start)
        assert first["sent"] + first["retry"] == 300 and len(server.requests) == 300
        assert first["retry"] == sum(server.refused.values()) > 5
        took = _sweep_until_delivered(start, limit=timedelta(minutes=2))
    # every grant delivered, each once, within two minutes
    assert took <= timedelta(minutes=2)
    assert sorted(server.granted) == sorted(keys)
    assert [body["points"] for body in server.granted.values()] == [30] * 300
    # attempts only for sends the service refused (then one for the success): a grant never refused has one
    attempts = dict(PointsGrant.objects.values_list("idempotency_key", "attempts"))
    assert all(attempts[key] == 1 for key in keys if not server.refused[key])
    assert all(1 <= attempts[key] <= server.refused[key] + 1 for key in keys)
    assert sum(attempts.values()) - 300 >= first["retry"]  # the first pass's refusals were charged
    assert set(PointsGrant.objects.values_list("status", flat=True)) == {"sent"}
    assert PointsServiceBreaker.objects.get().openings == 0  # scattered refusals are no outage


def test_a_refused_grant_backs_off_alone(settings, grants):
    grants(40)
    with _serve(settings, PointsServer(fail_percent=5, seed=16)) as server:
        now = timezone.now() + timedelta(seconds=1)
        counts = grants_deliver(now=now)
        refused = [key for key, count in server.refused.items() if count]
        assert counts["retry"] == len(refused) >= 1 and counts["not_charged"] == 0
        retry = PointsGrant.objects.get(idempotency_key=refused[0])
        assert (retry.status, retry.attempts) == ("pending", 1) and "503" in retry.last_error
        assert retry.next_attempt_at == now + timedelta(seconds=settings.CAMPAIGNS_GRANT_RETRY_BASE_SECONDS)
        # not due yet: nothing is sent again
        assert grants_deliver(now=now + timedelta(seconds=1))["sent"] == 0
        assert len(server.requests) == 40


def test_an_outage_pauses_delivery_charges_no_attempt_and_all_go_out_once_after_recovery(settings, grants):
    keys = grants(50)
    threshold = settings.CAMPAIGNS_POINTS_BREAKER_FAILURES
    with _serve(settings, PointsServer()) as server:
        server.mode = "down"
        start = timezone.now() + timedelta(seconds=1)
        # the breaker opens after `threshold` unavailable answers in a row; the rest are not even sent
        counts = grants_deliver(now=start)
        assert (counts["sent"], counts["not_charged"], counts["retry"]) == (0, threshold, 50)
        assert len(server.requests) == threshold
        breaker = PointsServiceBreaker.objects.get()
        assert breaker.open_until > start and breaker.opened_at == start and "503" in breaker.last_error
        assert grants_deliver(now=start + timedelta(seconds=1))["paused"] == 1
        assert len(server.requests) == threshold
        # ten minutes of outage, swept every 10 s: a probe now and then, never an attempt charged
        now = start
        while now < start + timedelta(minutes=10):
            now += SWEEP
            grants_deliver_all(now=now)
        probes = len(server.requests) - threshold
        assert 0 < probes <= 600 // settings.CAMPAIGNS_POINTS_BREAKER_RETRY_MAX_SECONDS + 4
        assert set(PointsGrant.objects.values_list("attempts", flat=True)) == {0}
        assert not server.granted
        # the service answers again: delivery resumes within a minute, every grant once
        server.mode = "ok"
        recovered = now
        took = _sweep_until_delivered(recovered + SWEEP, limit=timedelta(minutes=1))
        assert took + SWEEP <= timedelta(minutes=1)
    assert sorted(server.granted) == sorted(keys)
    assert set(PointsGrant.objects.values_list("status", "attempts")) == {("sent", 1)}
    breaker = PointsServiceBreaker.objects.get()
    assert (breaker.open_until, breaker.consecutive_failures, breaker.openings) == (None, 0, 0)
    assert breaker.last_success_at is not None


def test_a_refused_connection_opens_the_breaker_at_once(settings, grants):
    grants(3)
    with PointsServer() as gone:
        url = gone.url
    settings.POINTS_API_URL = url  # nothing listens there any more
    settings.POINTS_API_TIMEOUT_SECONDS = 1
    now = timezone.now() + timedelta(seconds=1)
    counts = grants_deliver(now=now)
    assert (counts["not_charged"], counts["retry"]) == (1, 3)
    assert PointsServiceBreaker.objects.get().open_until == now + timedelta(
        seconds=settings.CAMPAIGNS_POINTS_BREAKER_RETRY_SECONDS)
    assert set(PointsGrant.objects.values_list("attempts", flat=True)) == {0}


def test_grants_due_during_an_outage_wait_without_a_request(settings, grants):
    with _serve(settings, PointsServer()) as server:
        grants(1)
        server.mode = "down"
        now = timezone.now() + timedelta(seconds=1)
        settings.CAMPAIGNS_POINTS_BREAKER_FAILURES = 1
        grants_deliver(now=now)
        grants(3)  # settled during the outage: their after-commit delivery finds the breaker open
        new = list(PointsGrant.objects.order_by("pk").values_list("pk", flat=True))[1:]
        assert grants_deliver(grant_ids=new, now=now + timedelta(seconds=1))["paused"] == 1
        assert len(server.requests) == 1
