"""loyalty_rebucket: activity counted in its UTC month before the switch moves to its business month, once."""

import json
import threading
from datetime import UTC, date, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from conftest import push_body
from loyalty.models import Customer, MonthlyTotal, RebucketedEvent, StageChange
from loyalty.selectors import customer_stage_get
from loyalty.services.rebucket import rebucket_run
from loyalty.tests.factories import event, publish_rules
from mercari_ops.inbox.models import InboxEvent
from mercari_ops.inbox.services import inbox_receive

pytestmark = pytest.mark.django_db

TOPIC = "loyalty-activity"
SWITCHED = "2026-12-05T12:00:00Z"
SWITCHED_AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
BEFORE_SWITCH = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
OCT, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)


def counted_by_old_rule(ev, *, processed_at=BEFORE_SWITCH, keep_payload=False, month=None):
    """What the handler did before the switch: the amount in the UTC month of occurred_at, the inbox row
    processed, no payload kept."""
    customer, _ = Customer.objects.get_or_create(customer_id=ev["customer_id"])
    if month is None:
        occurred = datetime.fromisoformat(ev["occurred_at"])
        month = date(occurred.year, occurred.month, 1)
    total, _ = MonthlyTotal.objects.get_or_create(customer=customer, kind=ev["kind"], month=month)
    total.amount += ev["amount"]
    total.count += 1 if ev["amount"] >= 0 else -1
    total.save()
    InboxEvent.objects.create(topic=TOPIC, event_id=ev["event_id"], status=InboxEvent.Status.PROCESSED,
                              payload=ev if keep_payload else None, attempts=1, received_at=processed_at,
                              processed_at=processed_at)
    return ev


def export(tmp_path, *lines, name="export.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def rebucket(*args):
    out = StringIO()
    call_command("loyalty_rebucket", "--switched-at", SWITCHED, *args, stdout=out)
    return out.getvalue()


def totals(customer_id="c-1"):
    return {(t.kind, t.month): (t.amount, t.count)
            for t in MonthlyTotal.objects.filter(customer__customer_id=customer_id)}


def test_an_event_counted_in_its_utc_month_moves_to_its_business_month(tmp_path):
    # given 1,000 bought at 00:30 on 1 December in Japan, counted in November by the old rule
    late = counted_by_old_rule(event(event_id="act-late", amount=1000, occurred_at="2026-11-30T15:30:00Z"))
    revision = Customer.objects.get().totals_revision
    assert totals() == {("buy", NOV): (1000, 1)}

    output = rebucket("--jsonl", export(tmp_path, late))

    assert totals() == {("buy", NOV): (0, 0), ("buy", DEC): (1000, 1)}
    marker = RebucketedEvent.objects.get()
    assert (marker.event_id, marker.old_month, marker.new_month) == ("act-late", NOV, DEC)
    assert Customer.objects.get().totals_revision == revision + 1
    assert "batch 1 [" in output and "export.jsonl]: read 1, moved 1, already moved 0" in output
    assert "Done: read 1, moved 1," in output


def test_running_it_again_moves_nothing_twice(tmp_path):
    late = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"))
    path = export(tmp_path, late, late)  # the same event twice in the export, too

    first = rebucket("--jsonl", path)
    second = rebucket("--jsonl", path, "--batch", "1")

    assert "moved 1, already moved 1" in first
    assert "moved 0, already moved 2" in second
    assert totals() == {("buy", NOV): (0, 0), ("buy", DEC): (1000, 1)}
    assert RebucketedEvent.objects.count() == 1


def test_an_event_the_inbox_did_not_count_is_not_moved(tmp_path):
    # given one event never received and one the inbox gave up on (dead)
    unseen = event(amount=1000, occurred_at="2026-11-30T15:30:00Z")
    dead = event(amount=500, occurred_at="2026-11-30T16:00:00Z")
    InboxEvent.objects.create(topic=TOPIC, event_id=dead["event_id"], status=InboxEvent.Status.DEAD, payload=dead)

    output = rebucket("--jsonl", export(tmp_path, unseen, dead))

    assert "moved 0" in output and "not counted in the inbox 2" in output
    assert not MonthlyTotal.objects.exists() and not RebucketedEvent.objects.exists()


def test_an_event_counted_after_the_switch_is_in_its_business_month_already(tmp_path):
    late = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"),
                               processed_at=datetime(2026, 12, 5, 13, 0, tzinfo=UTC), month=DEC)

    output = rebucket("--jsonl", export(tmp_path, late))

    assert "moved 0" in output and "counted after the switch 1" in output
    assert totals() == {("buy", DEC): (1000, 1)}


def test_an_event_before_japan_midnight_stays_in_its_month(tmp_path):
    # 2026-11-30T14:59:59Z is 23:59:59 on 30 November in Japan: November under both rules
    last = counted_by_old_rule(event(amount=100, occurred_at="2026-11-30T14:59:59Z"))

    output = rebucket("--jsonl", export(tmp_path, last))

    assert "moved 0" in output and "same month 1" in output
    assert totals() == {("buy", NOV): (100, 1)}


def test_a_reversal_moves_its_amount_and_a_count_of_minus_one(tmp_path):
    # given a purchase on 10 November and its reversal at 05:00 on 1 December in Japan, both in November
    counted_by_old_rule(event(amount=3000, occurred_at="2026-11-10T00:00:00Z"))
    reversal = counted_by_old_rule(event(amount=-3000, occurred_at="2026-11-30T20:00:00Z"))
    assert totals() == {("buy", NOV): (0, 0)}

    rebucket("--jsonl", export(tmp_path, reversal))

    assert totals() == {("buy", NOV): (3000, 1), ("buy", DEC): (-3000, -1)}


def test_a_month_losing_and_gaining_events_in_one_batch(tmp_path):
    # 31 October 20:00Z is November in Japan; 30 November 20:00Z is December
    into_november = counted_by_old_rule(event(amount=10, occurred_at="2026-10-31T20:00:00Z"))
    into_december = counted_by_old_rule(event(amount=100, occurred_at="2026-11-30T20:00:00Z"))
    other = counted_by_old_rule(event(customer_id="c-2", kind="sell", amount=7, occurred_at="2026-10-31T15:00:00Z"))

    output = rebucket("--jsonl", export(tmp_path, into_december, other, into_november))

    assert "moved 3" in output
    assert totals() == {("buy", OCT): (0, 0), ("buy", NOV): (10, 1), ("buy", DEC): (100, 1)}
    assert totals("c-2") == {("sell", OCT): (0, 0), ("sell", NOV): (7, 1)}


def test_events_kept_in_the_inbox_are_moved_without_an_export():
    kept = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"), keep_payload=True)

    output = rebucket()

    assert "batch 1 [inbox]: read 1, moved 1" in output
    assert totals() == {("buy", NOV): (0, 0), ("buy", DEC): (1000, 1)}
    assert RebucketedEvent.objects.get().event_id == kept["event_id"]


def test_the_report_names_the_counted_events_without_payload(tmp_path):
    # given three events counted before the switch without payload, one after it, one with its payload
    late = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"))
    counted_by_old_rule(event(amount=1, occurred_at="2026-10-03T00:00:00Z"))
    counted_by_old_rule(event(amount=2, occurred_at="2026-10-31T18:00:00Z"))
    counted_by_old_rule(event(customer_id="c-3", amount=3), processed_at=datetime(2026, 12, 5, 13, 0, tzinfo=UTC))
    counted_by_old_rule(event(amount=4, occurred_at="2026-10-04T00:00:00Z"), keep_payload=True)

    without_export = rebucket("--dry-run")
    with_export = rebucket("--jsonl", export(tmp_path, late))

    assert "Without payload: 3 loyalty-activity events counted before 2026-12-05T12:00:00Z" in without_export
    assert "Cannot be rebuilt by this run: 3 of them were not in the --jsonl exports" in without_export
    assert "Cannot be rebuilt by this run: at least 2 of them were not in the --jsonl exports (found: 1)" \
        in with_export
    assert "run again with --jsonl" in with_export
    assert totals()[("buy", DEC)] == (1000, 1)  # still moved


def test_the_report_says_when_every_payloadless_event_was_in_the_export(tmp_path):
    late = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"))

    output = rebucket("--jsonl", export(tmp_path, late))

    assert "All of them were in the --jsonl exports of this run." in output
    assert "Cannot be rebuilt" not in output


def test_a_dry_run_writes_nothing(tmp_path):
    publish_rules({"window_months": 1, "stages": [{"stage": 10, "name": "Regular", "thresholds": {}},
                                                  {"stage": 20, "name": "Silver", "thresholds": {"buy_amount": 1}}]})
    late = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"))
    path = export(tmp_path, late, late)

    output = rebucket("--jsonl", path, "--dry-run")

    assert "Dry run, nothing written: read 2, would move 1, already moved 1" in output
    assert totals() == {("buy", NOV): (1000, 1)}
    assert not RebucketedEvent.objects.exists() and not StageChange.objects.exists()
    assert Customer.objects.get().totals_revision == 0


def test_bad_lines_are_skipped_and_reported_with_their_line_number(tmp_path):
    late = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"))
    path = export(tmp_path, "{not json", {**event(), "kind": "sale"}, late, "")

    output = rebucket("--jsonl", path)

    assert "bad lines 2" in output and "moved 1" in output
    assert "export.jsonl:1: not valid JSON" in output
    assert "export.jsonl:2: kind must be one of sell, buy, pay; got 'sale'" in output


def test_with_utc_business_months_nothing_moves(tmp_path, settings):
    settings.BUSINESS_TIME_ZONE = "UTC"
    late = counted_by_old_rule(event(amount=1000, occurred_at="2026-11-30T15:30:00Z"))

    output = rebucket("--jsonl", export(tmp_path, late))

    assert "moved 0" in output and "same month 1" in output
    assert "nothing needs moving" in output
    assert totals() == {("buy", NOV): (1000, 1)}


def test_a_stage_that_depends_on_the_move_is_recomputed_both_ways():
    publish_rules({"window_months": 1, "stages": [
        {"stage": 10, "name": "Regular", "thresholds": {}},
        {"stage": 20, "name": "Silver", "thresholds": {"buy_amount": 5000}}]})
    now = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)  # the window is December alone
    # given c-1 bought 3,000 in December, and 4,000 on 1 December in Japan counted in November
    counted_by_old_rule(event(customer_id="c-1", amount=3000, occurred_at="2026-12-03T00:00:00Z"))
    late = counted_by_old_rule(event(customer_id="c-1", amount=4000, occurred_at="2026-11-30T16:00:00Z"))
    # and Silver c-2 bought 6,000 in December, one 2,000 of them reversed on 1 December, counted in November
    counted_by_old_rule(event(customer_id="c-2", amount=6000, occurred_at="2026-12-02T00:00:00Z"))
    reversal = counted_by_old_rule(event(customer_id="c-2", amount=-2000, occurred_at="2026-11-30T20:00:00Z"))
    Customer.objects.filter(customer_id="c-2").update(stage=20, rules_stage=20)

    report = rebucket_run(switched_at=SWITCHED_AT, jsonl=[("export", [json.dumps(late), json.dumps(reversal)])],
                          now=now)

    assert (report.moved, report.stage_changes) == (2, 2)
    assert customer_stage_get(customer_id="c-1") == 20 and customer_stage_get(customer_id="c-2") == 10
    up = StageChange.objects.get(customer__customer_id="c-1")
    down = StageChange.objects.get(customer__customer_id="c-2")
    assert (up.from_stage, up.to_stage, up.cause) == (10, 20, "upgrade")
    assert (down.from_stage, down.to_stage, down.cause) == (20, 10, "downgrade")
    assert up.reason["trigger"] == "rebucket" and up.reason["totals"]["buy_amount"] == 7000
    assert down.reason["totals"]["buy_amount"] == 4000


def test_switched_at_must_be_an_instant_in_the_past():
    with pytest.raises(CommandError, match="in the future"):
        rebucket_command_at("2999-01-01T00:00:00Z")
    with pytest.raises(CommandError):
        rebucket_command_at("2026-12-05T12:00:00")  # no offset


def rebucket_command_at(switched_at):
    call_command("loyalty_rebucket", "--switched-at", switched_at, stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db(transaction=True)
def test_rebucketing_while_events_of_the_same_customers_arrive():
    # given 20 customers each with a late-November event counted in November by the old rule
    customers = [f"c-{i:02d}" for i in range(20)]
    lates = [counted_by_old_rule(event(customer_id=c, amount=100, occurred_at="2026-11-30T15:30:00Z"))
             for c in customers]
    # when the move runs in small batches while December events of the same customers arrive, in reverse order
    live = [[push_body(event(customer_id=c, amount=1, occurred_at="2026-12-02T00:00:00Z")) for c in customers[::-1]]
            for _ in range(2)]
    barrier = threading.Barrier(3)
    errors = []

    def in_thread(work):
        def run():
            try:
                barrier.wait(timeout=10)
                work()
            except Exception as exc:  # surfaced by the assertion below
                errors.append(repr(exc))
            finally:
                connections.close_all()
        return threading.Thread(target=run)

    def ingest(bodies):
        for body in bodies:
            assert inbox_receive(topic_name=TOPIC, body=body).outcome.value == "processed"

    threads = [in_thread(lambda: rebucket_run(switched_at=SWITCHED_AT, batch_size=3,
                                              jsonl=[("export", [json.dumps(late) for late in lates])]))]
    threads += [in_thread(lambda bodies=bodies: ingest(bodies)) for bodies in live]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then nothing deadlocked, and every customer has the moved event and both live ones in December
    assert errors == []
    assert RebucketedEvent.objects.count() == 20
    for customer in customers:
        assert totals(customer) == {("buy", NOV): (0, 0), ("buy", DEC): (102, 3)}
