"""CPU per Pub/Sub push in process (no network, no wrk: a shared VM's CPU steal does not bend it), for an A/B
between commits: `make test PYTEST_ARGS="bench/cpu_push.py -s -p no:cacheprovider"` in each checkout.

Each push is a new event through the whole WSGI application (machine handler, auth, decoding, group commit led by
this one thread, a real commit); the figure is this process's CPU only (PostgreSQL's is not counted)."""

import base64
import cProfile
import json
import os
import pstats
import time
import uuid

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

TOPICS = {
    "platform-ping": lambda n: {"event_id": f"cpu-{n}"},
    "loyalty-activity": lambda n: {"event_id": f"cpu-{n}", "customer_id": f"cpu-c-{n % 500}", "kind": "buy",
                                   "amount": 1200, "occurred_at": "2026-11-20T10:00:00Z"},
}


def body(event: dict) -> bytes:
    data = base64.b64encode(json.dumps(event).encode()).decode()
    return json.dumps({"message": {"data": data, "messageId": uuid.uuid4().hex,
                                   "publishTime": "2026-11-01T10:00:00.123Z"},
                       "subscription": "projects/p/subscriptions/s"}).encode()


@pytest.mark.parametrize("topic", list(TOPICS))
def test_cpu_per_push(settings, topic):
    from mercari_ops.common.groupcommit import group_committers_stop
    from mercari_ops.common.tests.wsgi_client import wsgi_call

    settings.GROUP_COMMIT = True
    settings.PUBSUB_AUTH = "token"
    headers = {"Authorization": f"Bearer {settings.PUBSUB_PUSH_TOKEN}"}
    event = TOPICS[topic]
    bodies = [body(event(n)) for n in range(6300)]
    try:
        for n in range(300):  # warm: prepared statements, caches
            status, _, content = wsgi_call(f"/pubsub/push/{topic}", method="POST", body=bodies[n], headers=headers)
            assert status == 204, content
        rounds = []
        for r in range(5):
            started = time.process_time()
            for n in range(300 + r * 1200, 300 + (r + 1) * 1200):
                wsgi_call(f"/pubsub/push/{topic}", method="POST", body=bodies[n], headers=headers)
            rounds.append((time.process_time() - started) / 1200 * 1e6)
        print(f"\n{topic}: {min(rounds):.1f} us of CPU per push (best of 5 x 1,200)")
        if os.environ.get("CPU_PUSH_PROFILE"):  # where the CPU goes: one more round under cProfile
            profile = cProfile.Profile(time.process_time)
            profile.enable()
            for n in range(6300, 6300 + 600):
                wsgi_call(f"/pubsub/push/{topic}", method="POST", body=body(event(n)), headers=headers)
            profile.disable()
            pstats.Stats(profile).dump_stats(os.environ["CPU_PUSH_PROFILE"])
    finally:
        group_committers_stop()
        connection.close()
