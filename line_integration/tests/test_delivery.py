"""Sender: exactly-once delivery through 429/5xx/timeouts, multicast coalescing, limits, killed workers.

Where time is the subject (pacing, rates, leases, retries) it is the test's manual clock (`clock` in
conftest.py): the sender paces on it, the sandbox stamps arrivals on it, retries and leases come due when the
test moves it; no assertion depends on how fast the machine runs.
"""

import bisect
import heapq
import itertools
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection, connections

from line_integration.models import LineRequest, OutboundMessage
from line_integration.services import line_notify, message_enqueue, pacing, sender, sender_run, template_save
from mercari_ops.common.ratelimit import rate_limiter
from mercari_ops.common.tests.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]


def enqueue(linked: dict, *, personal: bool = True, dispatch: str = "d-1") -> None:
    for customer_id in linked:
        message_enqueue(dispatch_id=dispatch, user_id=customer_id, template="saved_search_new_items",
                        params={"search_id": customer_id if personal else "same"}, campaign_id="cmp")


def assert_each_delivered_once(sandbox, linked: dict) -> None:
    counts = sandbox.control("deliveries")["counts"]
    assert {line_id: counts.get(line_id, 0) for line_id in linked.values()} == {v: 1 for v in linked.values()}
    assert not OutboundMessage.objects.exclude(status="sent").exists()


@pytest.mark.django_db
def test_personalized_messages_are_pushed_identical_ones_multicast(line_sandbox, text_template, link_customers, drain):
    linked = link_customers([f"c-{i}" for i in range(1, 8)])
    enqueue(linked, personal=True, dispatch="personal")
    enqueue(linked, personal=False, dispatch="same")
    drain()
    stats = line_sandbox.control("stats")
    assert stats["status_counts"] == {"push": {"200": 7}, "multicast": {"200": 1}}
    assert sorted(m[0]["text"] for m in line_sandbox.control(f"deliveries?to={linked['c-3']}")["messages"]) == [
        "New items for your search c-3", "New items for your search same"]
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_multicast_is_split_at_500_recipients(line_sandbox, text_template, link_customers, settings, drain):
    settings.LINE_SEND_BATCH_SIZE = 2000
    linked = link_customers([f"c-{i}" for i in range(1203)])
    enqueue(linked, personal=False)
    drain()
    assert sorted(r.recipient_count for r in LineRequest.objects.all()) == [203, 500, 500]
    assert_each_delivered_once(line_sandbox, linked)


@pytest.mark.django_db
def test_429_and_500_bursts_and_timeouts_still_deliver_each_message_exactly_once(
        line_sandbox, text_template, link_customers, settings, drain):
    settings.LINE_READ_TIMEOUT = 0.3
    linked = link_customers([f"c-{i}" for i in range(300)])
    enqueue(dict(list(linked.items())[:200]), personal=True)
    enqueue(dict(list(linked.items())[200:]), personal=False)
    line_sandbox.control("faults", {"rate_429": 0.2, "error_rate": 0.2, "accept_before_error": 0.5,
                                    "timeout_rate": 0.05, "timeout_seconds": 0.6, "accept_before_timeout": 0.5,
                                    "next": [429] * 20 + [500] * 20, "seed": 7})
    drain()
    stats = line_sandbox.control("stats")
    assert stats["status_counts"]["push"].get("429", 0) > 20 and stats["status_counts"]["push"].get("500", 0) > 20
    assert stats["duplicates_refused"] > 0  # accepted-then-failed requests were retried with their key
    assert_each_delivered_once(line_sandbox, linked)
    assert LineRequest.objects.filter(last_status=409, status="sent").exists()


@pytest.mark.django_db
def test_other_4xx_fails_with_the_reason_and_is_not_retried(line_sandbox, text_template, link_customers, drain):
    linked = link_customers(["c-1"])
    enqueue(linked)
    line_sandbox.control("faults", {"next": [400]})
    drain()
    message = OutboundMessage.objects.get()
    assert message.status == "failed" and message.reason.startswith("400")
    assert line_sandbox.control("stats")["requests"] == 1


@pytest.mark.django_db
def test_missing_placeholder_fails_with_a_reason(line_sandbox, link_customers, drain):
    template_save(name="needs_name", messages=[{"type": "text", "text": "Hi {name}"}])
    link_customers(["c-1"])
    message_enqueue(dispatch_id="d", user_id="c-1", template="needs_name", params={})
    drain()
    assert OutboundMessage.objects.get().reason == "missing value for placeholder {name}"


@pytest.mark.django_db
def test_enrichment_fills_the_template_and_falls_back_when_slow(line_sandbox, link_customers, settings, drain):
    template_save(name="items", enrich_path="/saved-searches/{search_id}/items",
                  messages=[{"type": "text", "text": "{enrich.count} new: {enrich.items.0.name}"}],
                  fallback_messages=[{"type": "text", "text": "New items for your saved search"}])
    linked = link_customers(["c-1", "c-2"])
    message_enqueue(dispatch_id="d", user_id="c-1", template="items", params={"search_id": "s-5"})
    drain()
    settings.ENRICH_TIMEOUT_SECONDS = 0.2
    line_sandbox.control("enrich", {"delay_ms": 600})
    message_enqueue(dispatch_id="d", user_id="c-2", template="items", params={"search_id": "s-5"})
    drain()
    first = line_sandbox.control(f"deliveries?to={linked['c-1']}")["messages"][0][0]["text"]
    second = line_sandbox.control(f"deliveries?to={linked['c-2']}")["messages"][0][0]["text"]
    assert (first, second) == ("2 new: Vintage camera", "New items for your saved search")


def arrivals(sandbox) -> list[float]:
    """When the sandbox received each push, on the test's clock, in order."""
    return sorted(sandbox.sandbox.arrived_at["push"])


@pytest.mark.django_db
def test_push_rate_limit_is_never_exceeded_in_any_second(line_sandbox, link_customers, text_template, settings,
                                                         paced_on_clock, drain):
    settings.LINE_PUSH_RATE_PER_SECOND = 40  # the sender keeps a tenth as headroom under 200/s: aims at 36/s
    linked = link_customers([f"c-{i}" for i in range(100)])
    enqueue(linked, personal=True)
    started = paced_on_clock.time()
    drain()
    stats = line_sandbox.control("stats")
    assert stats["max_requests_per_window"]["push"] <= 40
    assert stats["status_counts"]["push"] == {"200": 100}
    assert paced_on_clock.time() - started >= 1.5  # 100 at 40/s cannot finish in under two windows
    # the slots of the even schedule, one every 1/36 s (and a microsecond): never closer
    stamps = arrivals(line_sandbox)
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) >= 1 / 36


@pytest.mark.django_db
def test_push_pacing_reaches_the_aimed_rate_without_bursts(line_sandbox, link_customers, text_template, settings,
                                                           paced_on_clock, drain):
    # given a limit LINE enforces too (the sandbox, on the same clock), and the sender aiming at 0.95 of it
    settings.LINE_PUSH_RATE_PER_SECOND = 200
    settings.LINE_RATE_SAFETY = 0.95
    line_sandbox.control("limits", {"push": [200, 1.0]})
    linked = link_customers([f"c-{i}" for i in range(500)])
    enqueue(linked, personal=True)
    # when
    drain()
    # then: no 429, never more than the limit in any sliding second, at the aimed rate
    stats = line_sandbox.control("stats")
    assert stats["status_counts"]["push"] == {"200": 500}
    assert stats["max_requests_per_window"]["push"] <= 200
    span = stats["last_request_at"]["push"] - stats["first_request_at"]["push"]
    assert 499 / span >= 0.9 * 190, f"{499 / span:.1f} req/s"
    assert 499 / span == pytest.approx(190, rel=1e-3)  # no slot was lost: the schedule is the aimed rate
    # and evenly spaced: 100 ms slices let ~20 through at once and then nothing, an even schedule holds
    # ~10 per 50 ms -- here in every 50-ms bin, not only most of them
    stamps = arrivals(line_sandbox)
    bins = [0] * (int((stamps[-1] - stamps[0]) / 0.05) + 1)
    for stamp in stamps:
        bins[int((stamp - stamps[0]) / 0.05)] += 1
    assert max(bins) <= 10, sorted(bins)
    assert sorted(bins)[int(0.8 * len(bins))] <= 14, sorted(bins)
    assert_each_delivered_once(line_sandbox, linked)


@pytest.mark.django_db
def test_the_next_batch_is_claimed_while_the_current_one_is_on_the_wire(
        line_sandbox, link_customers, text_template, settings, monkeypatch):
    settings.LINE_SEND_BATCH_SIZE = 10
    settings.LINE_SEND_THREADS = 2
    linked = link_customers([f"c-{i}" for i in range(40)])
    enqueue(linked, personal=True)
    claimed_at_record = []  # requests claimed and not yet recorded, each time a batch's outcomes are recorded
    batch_finish = sender._batch_finish

    def recorded(batch):
        claimed_at_record.append(LineRequest.objects.filter(status="pending", claimed_until__isnull=False).count())
        return batch_finish(batch)

    monkeypatch.setattr(sender, "_batch_finish", recorded)
    result = sender_run(seconds=60)
    # two batches in hand: the next one was claimed and handed to the pool before the current one's
    # bookkeeping, so the pool never waits for it
    assert max(claimed_at_record) > 10
    assert claimed_at_record == [20, 20, 20, 10]
    assert result["sent"] == 40
    assert line_sandbox.control("stats")["duplicates_refused"] == 0
    assert_each_delivered_once(line_sandbox, linked)


@pytest.mark.django_db
def test_line_notify(line_sandbox, link_customers, drain):
    linked = link_customers(["c-1"])
    assert line_notify(customer_id="c-1", text="Your points arrived", idempotency_key="k-1") is True
    assert line_notify(customer_id="c-1", text="Your points arrived", idempotency_key="k-1") is True
    assert line_notify(customer_id="c-404", text="x", idempotency_key="k-2") is False
    drain()
    assert line_sandbox.control(f"deliveries?to={linked['c-1']}")["messages"] == [
        [{"type": "text", "text": "Your points arrived"}]]


@pytest.mark.django_db
def test_line_notify_cuts_a_long_text_to_lines_limit_in_utf16_units_never_mid_emoji(
        line_sandbox, link_customers, drain):
    linked = link_customers(["c-1"])
    text = "a" + "\U0001F34E" * 3000  # 6,001 UTF-16 units; the 2,500th apple would end at unit 5,001
    assert line_notify(customer_id="c-1", text=text, idempotency_key="long") is True
    drain()
    [[sent]] = line_sandbox.control(f"deliveries?to={linked['c-1']}")["messages"]
    assert sent["text"] == "a" + "\U0001F34E" * 2499  # 4,999 units: sent, where 3,000 code points were refused


def _db_env() -> dict:
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    return {**os.environ, "DATABASE_URL": f"{base}/{connection.settings_dict['NAME']}"}


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_is_taken_over_and_nothing_is_sent_twice(
        line_sandbox, link_customers, text_template, settings, drain):
    linked = link_customers([f"c-{i}" for i in range(60)])
    enqueue(linked, personal=True)
    line_sandbox.control("faults", {"latency_ms": 100})
    env = {**_db_env(), "LINE_API_BASE": line_sandbox.url, "LINE_SEND_LEASE_SECONDS": "2", "LINE_SEND_THREADS": "4",
           "LINE_SEND_BATCH_SIZE": "60"}
    worker = subprocess.Popen([sys.executable, "manage.py", "line_send", "--seconds", "60"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert line_sandbox.sandbox.wait_for(lambda sandbox: sum(sandbox.deliveries.values()) >= 10, timeout=30)
        assert worker.poll() is None
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    delivered_by_killed = line_sandbox.control("stats")["deliveries"]
    assert 10 <= delivered_by_killed < 60
    assert OutboundMessage.objects.filter(status="planned").count() >= 60 - delivered_by_killed
    line_sandbox.control("faults", {"latency_ms": 0})
    drain()  # moves the clock past the dead worker's lease, then sends what it left

    assert_each_delivered_once(line_sandbox, linked)
    assert line_sandbox.control("stats")["duplicates_refused"] >= 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_share_the_work_without_doubles(line_sandbox, link_customers, text_template, settings):
    settings.LINE_SEND_BATCH_SIZE = 100
    linked = link_customers([f"c-{i}" for i in range(600)])
    enqueue(linked, personal=True)
    results = []

    def work():
        try:
            results.append(sender_run(seconds=60))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.get("sent", 0) for r in results) == 600
    assert sum(1 for r in results if r.get("sent")) >= 2  # the work was really shared
    assert line_sandbox.control("stats")["duplicates_refused"] == 0
    assert_each_delivered_once(line_sandbox, linked)


@pytest.mark.django_db
def test_send_task_respects_the_sender_concurrency_lease(line_sandbox, link_customers, text_template, settings):
    from line_integration.tasks import line_kick_senders, line_send_due
    from mercari_ops.common.ratelimit import concurrency_limiter

    settings.LINE_SENDER_CONCURRENCY = 1
    linked = link_customers(["c-1", "c-2"])
    enqueue(linked)
    token = concurrency_limiter().acquire("line:sender", limit=1, ttl=30)
    try:
        assert line_send_due.run() == {"skipped": "enough senders running"}
    finally:
        concurrency_limiter().release("line:sender", token)
    assert line_send_due.run()["sent"] == 2
    assert line_kick_senders.run()["senders_started"] == 0  # nothing left to send
    assert_each_delivered_once(line_sandbox, linked)


SLOT = 0.010001  # the slot spacing of 100 a second: the limiter keeps slots strictly more than 1/100 s apart


def test_pacing_slots_nobody_took_in_time_are_dropped_not_used_late(line_sandbox):
    # given a process that reserved 4 slots 10 ms apart and used only the first
    clock = ManualClock()
    key = "line:sender"  # a limiter key the fixture resets
    pacer = pacing._Pacer(key, limit=100, batch=4, clock=clock)
    pacer.waiting = 3  # three other threads are inside wait() with this one: the reservation books 4 slots
    pacer.wait()
    assert len(pacer.slots) == 3
    # when the other three pass unused and a thread asks again
    clock.advance(0.06)
    asked_at = clock.time()
    pacer.wait()
    # then they were dropped: the thread got the first slot of a fresh batch, booked after the old four, at once
    assert pacer.stale == 3 and len(pacer.slots) == 3
    assert clock.time() == asked_at
    next_free = rate_limiter(clock=clock).reserve(key, limit=100, max_ahead=1.0)
    assert next_free == pytest.approx(4 * SLOT, abs=1e-6)  # the fresh batch's 3 unused slots are still booked ahead


@pytest.mark.django_db
def test_a_backlog_of_due_retries_does_not_starve_new_messages(link_customers, text_template):
    from concurrent.futures import ThreadPoolExecutor

    from django.utils import timezone

    from line_integration.services.sender import _batch_start

    # given 8 requests due for a retry (more than a batch of 4) and 2 messages queued since
    linked = link_customers([f"r-{i}" for i in range(10)])
    now = timezone.now()
    LineRequest.objects.bulk_create([
        LineRequest(kind="push", body={"to": line_id, "messages": [{"type": "text", "text": "retry"}]},
                    status="pending", attempts=1, next_attempt_at=now, created_at=now)
        for line_id in list(linked.values())[:8]])
    enqueue(dict(list(linked.items())[8:]))
    # when a sender starts a batch of 4, with no LINE to send to (the sends fail and are retried later)
    with ThreadPoolExecutor(max_workers=1) as pool:
        batch, planned = _batch_start(pool, 4, plan=True)
    # then a quarter of the batch went to new messages, the rest to the oldest due retries
    assert planned == 1
    assert len(batch[0]) == 4
    assert OutboundMessage.objects.filter(status="queued").count() == 1


class OversleepingClock(ManualClock):
    """A manual clock whose first sleep lasts `extra` seconds more than asked (the GIL, the scheduler)."""

    def __init__(self, extra: float):
        super().__init__()
        self.extra, self.sleeps = extra, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds + (self.extra if len(self.sleeps) == 1 else 0))


def test_a_slot_whose_thread_woke_too_late_is_given_up_not_used(line_sandbox):
    # given a pacer whose next slot is 10 ms ahead (one slot taken just before), and a thread that oversleeps
    clock = OversleepingClock(extra=0.03)
    key = "line:sender"  # a limiter key the fixture resets
    limiter = rate_limiter(clock=clock)
    assert limiter.reserve(key, limit=100, max_ahead=1.0) == 0
    pacer = pacing._Pacer(key, limit=100, batch=1, clock=clock)
    # when it waits for its slot and wakes 30 ms past it
    pacer.wait()
    # then that slot was given up and the thread went on a fresh one at once: three slots booked in all, one late
    assert pacer.late == 1
    assert clock.sleeps == [pytest.approx(SLOT, abs=1e-6)]
    assert limiter.reserve(key, limit=100, max_ahead=1.0) == pytest.approx(SLOT, abs=1e-6)


def test_a_pacer_books_no_more_slots_than_threads_waiting(line_sandbox):
    # given one thread waiting on a pacer that may book up to 4 slots at once
    clock = ManualClock()
    key = "line:sender"  # a limiter key the fixture resets
    pacer = pacing._Pacer(key, limit=100, batch=4, clock=clock)
    pacer.wait()
    # then it booked one slot, not four that nobody would be there to take (and no other process could use)
    assert len(pacer.slots) == 0 and pacer.waiting == 0
    next_free = rate_limiter(clock=clock).reserve(key, limit=100, max_ahead=1.0)
    assert next_free == pytest.approx(SLOT, abs=1e-6)  # the slot after the one it took


class SteppedClock(ManualClock):
    """A manual clock for several threads: time moves only while every one of them sleeps on it, straight to
    the earliest wake-up, and wakes that thread alone. Whatever the machine's load, each sleeper wakes exactly
    at the time it asked for, and no time passes while a thread works."""

    def __init__(self, parties: int):
        super().__init__()
        self.parties, self.sleepers = parties, []  # [(wake-up in us, ticket)], smallest first
        self.tickets, self.changed = itertools.count(), threading.Condition()

    def sleep(self, seconds: float) -> None:
        with self.changed:
            entry = (self.us + round(seconds * 1_000_000), next(self.tickets))
            heapq.heappush(self.sleepers, entry)
            self.changed.notify_all()
            while not (len(self.sleepers) == self.parties and self.sleepers[0] == entry):
                self.changed.wait(10)
            heapq.heappop(self.sleepers)
            self.set_us(max(self.us, entry[0]))

    def leave(self) -> None:
        """A thread is done: time no longer waits for it."""
        with self.changed:
            self.parties -= 1
            self.changed.notify_all()


def test_threads_sharing_a_pacer_send_at_its_even_schedule(line_sandbox):
    # given 8 threads taking calls from one pacer aimed at 190 a second (slots a 190th of a second apart)
    threads, calls_each, limit = 8, 50, 190
    clock = SteppedClock(parties=threads)
    pacer = pacing._Pacer("line:push", limit=limit, batch=16, clock=clock)
    sent: list[float] = []

    def send() -> None:
        try:
            for _ in range(calls_each):
                pacer.wait()
                sent.append(clock.time())
        finally:
            clock.leave()

    # when they all send
    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    # then every call went at its own slot of the even schedule: none closer than the spacing, no second
    # holding more than the limit, and none lost, so the rate is the aimed rate
    stamps = sorted(sent)
    assert len(stamps) == threads * calls_each
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) >= 1 / limit
    assert max(bisect.bisect_left(stamps, start + 1.0) - index for index, start in enumerate(stamps)) <= limit
    assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) == pytest.approx(limit, rel=1e-3)
    assert pacer.stale == pacer.late == 0
