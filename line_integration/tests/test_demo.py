import pytest

from line_integration import demo
from line_integration.models import LineLinkageUser, LineUser, OutboundMessage


@pytest.mark.django_db
def test_seed_links_300_customers_without_the_sandbox_and_is_idempotent(settings):
    settings.LINE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    first = demo.seed(stdout=None)
    counts = (LineUser.objects.count(), LineLinkageUser.objects.count(), OutboundMessage.objects.count())
    second = demo.seed(stdout=None)
    assert first.startswith("300 demo customers linked") and second.startswith("0 demo customers linked")
    assert counts == (LineUser.objects.count(), LineLinkageUser.objects.count(), OutboundMessage.objects.count())
    assert counts == (300, 300, 161)
    assert OutboundMessage.objects.get(user_id="c-00301").status == "skipped"


@pytest.mark.django_db
def test_seeded_messages_are_delivered_to_the_sandbox(line_sandbox):
    from line_integration.services import sender_run

    demo.seed(stdout=None)
    sender_run(seconds=30)
    stats = line_sandbox.control("stats")
    assert stats["status_counts"] == {"push": {"200": 40}, "multicast": {"200": 1}}
    assert stats["deliveries"] == 160
