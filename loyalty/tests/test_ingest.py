import json
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from loyalty.models import Customer, MonthlyTotal, StageChange
from loyalty.selectors import customer_stage_get
from loyalty.tests.factories import event, publish_rules
from mercari_ops.inbox.models import DeadLetter, InboxEvent

pytestmark = pytest.mark.django_db(transaction=False)

TOPIC = "loyalty-activity"


def totals(customer_id="c-1"):
    return {(t.kind, t.month, t.amount, t.count)
            for t in MonthlyTotal.objects.filter(customer__customer_id=customer_id)}


def test_activity_adds_amount_and_count_to_its_month(push):
    # given two buys and one sale in October and one buy in November, Japan time
    for kind, amount, at in [("buy", 1200, "2026-10-03T09:00:00Z"), ("buy", 800, "2026-10-31T14:59:59Z"),
                             ("sell", 500, "2026-10-10T00:00:00Z"), ("buy", 300, "2026-10-31T15:00:00Z")]:
        assert push(TOPIC, event(kind=kind, amount=amount, occurred_at=at)).status_code == 204
    # then one row per kind and business month
    assert totals() == {("buy", date(2026, 10, 1), 2000, 2), ("sell", date(2026, 10, 1), 500, 1),
                        ("buy", date(2026, 11, 1), 300, 1)}


def test_the_month_boundary_is_japan_midnight(push):
    # 2026-11-30T14:59:59Z is 23:59:59 on 30 November in Japan; one second later it is 1 December
    push(TOPIC, event(amount=100, occurred_at="2026-11-30T14:59:59Z"))
    push(TOPIC, event(amount=200, occurred_at="2026-11-30T15:00:00Z"))
    push(TOPIC, event(amount=400, occurred_at="2026-12-01T08:59:59+09:00"))  # still December, any offset

    assert totals() == {("buy", date(2026, 11, 1), 100, 1), ("buy", date(2026, 12, 1), 600, 2)}


def test_with_a_utc_business_calendar_the_months_are_utc_months(push, settings):
    settings.BUSINESS_TIME_ZONE = "UTC"

    push(TOPIC, event(amount=200, occurred_at="2026-11-30T15:00:00Z"))
    push(TOPIC, event(amount=100, occurred_at="2026-11-01T08:00:00+09:00"))  # 2026-10-31T23:00Z

    assert totals() == {("buy", date(2026, 11, 1), 200, 1), ("buy", date(2026, 10, 1), 100, 1)}


def test_repeated_event_id_changes_nothing(push):
    first = event(amount=700)
    for _ in range(3):
        assert push(TOPIC, first).status_code == 204
    # a publisher retry with the same event_id but a different body is still the same event
    assert push(TOPIC, {**first, "amount": 9999}).status_code == 204
    assert {(t[2], t[3]) for t in totals()} == {(700, 1)}
    assert InboxEvent.objects.filter(topic=TOPIC).count() == 1


def test_nothing_per_event_is_kept_beyond_the_dedupe_key(push):
    push(TOPIC, event(event_id="act-private", amount=4321))
    row = InboxEvent.objects.get(topic=TOPIC, event_id="act-private")
    assert row.status == "processed" and row.payload is None
    # no loyalty table holds the amount per event: only the monthly sum
    assert MonthlyTotal.objects.get().amount == 4321
    loyalty_tables = [t for t in connection.introspection.table_names() if t.startswith("loyalty_")]
    # (loyalty_rebucketed_event: event_ids and months moved by loyalty_rebucket, no amount, no customer)
    assert sorted(loyalty_tables) == ["loyalty_customer", "loyalty_monthlytotal", "loyalty_rebucketed_event",
                                      "loyalty_recomputejob", "loyalty_stagechange", "loyalty_stagepin",
                                      "loyalty_stageruleversion"]



def test_reversal_before_the_activity_gives_correct_totals_once_both_are_in(push):
    at = "2026-10-05T10:00:00Z"
    # given the cancellation arrives first
    assert push(TOPIC, event(event_id="rev-1", amount=-3000, occurred_at=at)).status_code == 204
    assert totals() == {("buy", date(2026, 10, 1), -3000, -1)}
    # when the activity it reverses arrives (and is redelivered)
    original = event(event_id="act-1", amount=3000, occurred_at=at)
    push(TOPIC, original)
    push(TOPIC, original)
    # then the month nets to zero, and another buy counts normally
    assert totals() == {("buy", date(2026, 10, 1), 0, 0)}
    push(TOPIC, event(event_id="act-2", amount=500, occurred_at=at))
    assert totals() == {("buy", date(2026, 10, 1), 500, 1)}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"kind": "refund"}, "kind"),
        ({"customer_id": None}, "customer_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"amount": "1200"}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"occurred_at": "2026-13-01T00:00:00Z"}, "occurred_at"),
        ({"occurred_at": "2026-10-01T00:00:00"}, "occurred_at"),
        ({"customer_id": "c" * 65}, "customer_id"),
    ],
)
def test_bad_events_are_400_naming_the_field_and_kept_as_dead_letter(push, change, field):
    body = {**event(event_id="bad-1"), **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = push(TOPIC, body)
    assert response.status_code == 400
    assert response.json()["field"] == field and response.json()["error"]
    letter = DeadLetter.objects.get(topic=TOPIC)
    assert letter.field == field and json.loads(letter.raw_body)["message"]["data"]
    assert not MonthlyTotal.objects.exists() and not Customer.objects.exists()
    assert not InboxEvent.objects.filter(topic=TOPIC).exists()


def test_time_in_the_future_beyond_tolerance_is_400(push, settings):
    too_late = datetime.now(UTC) + timedelta(seconds=settings.EVENT_FUTURE_TOLERANCE_SECONDS + 120)
    response = push(TOPIC, event(occurred_at=too_late))
    assert response.status_code == 400 and response.json()["field"] == "occurred_at"
    assert DeadLetter.objects.filter(topic=TOPIC, field="occurred_at").exists()
    # within the tolerance (clock skew) is accepted
    assert push(TOPIC, event(occurred_at=datetime.now(UTC) + timedelta(seconds=30))).status_code == 204


def test_fixed_dead_letter_replays_once(push):
    from mercari_ops.inbox.services import dead_letter_replay

    bad = {**event(event_id="fix-1"), "kind": "refund"}
    push(TOPIC, bad)
    letter = DeadLetter.objects.get(topic=TOPIC)
    from conftest import push_body

    letter.raw_body = push_body({**bad, "kind": "buy"}).decode()
    letter.save()
    assert dead_letter_replay(letter_pk=letter.pk, by="op").outcome.value == "processed"
    assert dead_letter_replay(letter_pk=letter.pk, by="op").outcome.value == "duplicate"
    assert MonthlyTotal.objects.get().amount == 1000


def test_upgrade_happens_at_once_with_its_reason(push):
    publish_rules()
    push(TOPIC, event(amount=6000))
    assert customer_stage_get(customer_id="c-1") == 10
    push(TOPIC, event(amount=6000))
    assert customer_stage_get(customer_id="c-1") == 20
    change = StageChange.objects.get()
    assert (change.from_stage, change.to_stage, change.cause) == (10, 20, "upgrade")
    assert change.reason["totals"]["buy_amount"] == 12000
    assert change.reason["reached"]["thresholds"] == [
        {"metric": "buy_amount", "threshold": 10000, "value": 12000, "met": True},
        {"metric": "buy_count", "threshold": 2, "value": 2, "met": True},
    ]
    assert change.reason["trigger"] == "event" and change.rule_version == 1


def test_reversal_never_downgrades_in_the_handler(push):
    publish_rules()
    push(TOPIC, event(amount=60000))
    assert customer_stage_get(customer_id="c-1") == 30
    push(TOPIC, event(amount=-60000))
    assert customer_stage_get(customer_id="c-1") == 30  # downgrades are the nightly job's
    assert StageChange.objects.count() == 1


def test_activity_outside_the_window_does_not_upgrade(push):
    publish_rules()
    long_ago = "2015-03-01T00:00:00Z"
    push(TOPIC, event(amount=900000, occurred_at=long_ago))
    push(TOPIC, event(amount=900000, occurred_at=long_ago))
    assert customer_stage_get(customer_id="c-1") == 10
    assert totals() == {("buy", date(2015, 3, 1), 1800000, 2)}


def _write_jsonl(path, events):
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def assert_totals_of_one_clean_pass(events):
    expected: dict = {}
    for e in events:
        key = (e["customer_id"], e["kind"], date(int(e["occurred_at"][:4]), int(e["occurred_at"][5:7]), 1))
        amount, count = expected.get(key, (0, 0))
        expected[key] = (amount + e["amount"], count + (1 if e["amount"] >= 0 else -1))
    got = {(t.customer.customer_id, t.kind, t.month): (t.amount, t.count)
           for t in MonthlyTotal.objects.select_related("customer")}
    assert got == expected
    assert InboxEvent.objects.filter(topic=TOPIC).count() == len(events)


def test_ingest_jsonl_refeeding_a_partly_applied_file_adds_only_what_is_missing(tmp_path):
    publish_rules()
    events = [event(customer_id=f"c-{i % 7}", kind=("buy", "sell", "pay")[i % 3], amount=100 + i,
                    occurred_at=f"20{13 + i % 14}-0{1 + i % 9}-15T12:00:00Z") for i in range(300)]
    events.append(event(customer_id="c-0", amount=-250, occurred_at="2020-02-02T00:00:00Z"))
    # given the first 120 lines went through before a crash
    call_command("ingest_jsonl", TOPIC, _write_jsonl(tmp_path / "part.jsonl", events[:120]), "--no-progress",
                 "--batch-size", "50")
    # when the whole file is fed again
    call_command("ingest_jsonl", TOPIC, _write_jsonl(tmp_path / "all.jsonl", events), "--no-progress",
                 "--batch-size", "64")
    # then totals equal one clean pass
    assert_totals_of_one_clean_pass(events)
    # the inbox kept no payload (SQL NULL or JSON null: both read back as None)
    assert set(InboxEvent.objects.filter(topic=TOPIC).values_list("payload", flat=True)) == {None}


def test_batch_path_gives_the_same_stages_as_one_by_one(tmp_path, push):
    publish_rules()
    events = [event(customer_id="c-a", amount=6000) for _ in range(3)]
    events += [event(customer_id="c-b", kind="sell", amount=10) for _ in range(10)]
    call_command("ingest_jsonl", TOPIC, _write_jsonl(tmp_path / "b.jsonl", events), "--no-progress")
    for e in events:
        push(TOPIC, {**e, "event_id": e["event_id"] + "-push", "customer_id": e["customer_id"] + "-push"})
    stages = dict(Customer.objects.values_list("customer_id", "stage"))
    assert stages == {"c-a": 20, "c-b": 30, "c-a-push": 20, "c-b-push": 30}
    assert StageChange.objects.filter(customer__customer_id="c-a").count() == 1


def test_ingest_jsonl_keeps_bad_lines_as_dead_letters(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(event(amount=5)) + "\nnot json\n" + json.dumps({**event(), "kind": "x"}) + "\n")
    call_command("ingest_jsonl", TOPIC, str(path), "--no-progress")
    assert MonthlyTotal.objects.get().amount == 5
    assert sorted(DeadLetter.objects.filter(topic=TOPIC).values_list("field", flat=True)) == ["kind", "line"]


@pytest.mark.django_db(transaction=True)
def test_parallel_ingest_on_committed_transactions_gives_the_totals_of_one_clean_pass(tmp_path):
    # given a backfill split over 3 connections (not inside a test transaction: each worker commits its own)
    publish_rules()
    events = [event(customer_id=f"p-{i % 23}", kind=("buy", "sell", "pay")[i % 3], amount=50 + i,
                    occurred_at=f"20{14 + i % 12}-1{i % 3}-0{1 + i % 9}T08:00:00Z") for i in range(400)]
    events.insert(100, event(customer_id="p-3", amount=-999, occurred_at="2020-11-02T00:00:00Z"))
    out = StringIO()
    call_command("ingest_jsonl", TOPIC, _write_jsonl(tmp_path / "part.jsonl", events[:150]), "--no-progress",
                 "--batch-size", "16", "--workers", "3")
    # when the whole file goes again, in parallel
    call_command("ingest_jsonl", TOPIC, _write_jsonl(tmp_path / "all.jsonl", events), "--no-progress",
                 "--batch-size", "16", "--workers", "3", stdout=out)
    # then only what was missing was added, and the totals are those of one clean pass
    assert "processed 251, duplicate 150" in out.getvalue()
    assert_totals_of_one_clean_pass(events)
    assert Customer.objects.count() == 23


def test_before_any_rules_are_published_an_event_costs_no_query_for_the_rules_version():
    # given: no rules published, and this process has already looked once
    from django.test.utils import CaptureQueriesContext

    from loyalty.selectors import rules_cache_clear
    from loyalty.services import activity_apply

    rules_cache_clear()
    activity_apply(events=[event("c-1")])
    # when: the next event arrives
    with CaptureQueriesContext(connection) as captured:
        activity_apply(events=[event("c-2")])
    # then: one statement (customers, totals, window and the version together), no separate version read
    statements = [query["sql"] for query in captured.captured_queries if not query["sql"].startswith("SAVEPOINT")
                  and not query["sql"].startswith("RELEASE")]
    assert not any(sql.startswith("SELECT MAX(") for sql in statements), statements
    assert customer_stage_get(customer_id="c-2") == 10  # the one base stage of no published rules ("Regular")
