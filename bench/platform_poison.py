"""Poison mix (issue 16): concurrent pushes, some of them poisoned, against a real gunicorn with group commit.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_poison [--pushes 400] [--poisoned 10]
        [--rounds 1]

Each round sends `--pushes` wrapped pushes to `POST /pubsub/push/platform-ping` at once (one thread and one
connection each, released together by a barrier, so they meet in the workers' group commits), `--poisoned`
of them carrying an event_id with NUL (`"\\u0000"`), which PostgreSQL cannot store. Every answer's status is
counted; then the bench database is asked how many dead letters the poisoned pushes left (their messageId is
in the kept body) and how many valid events were recorded.

Goal (issue 16): pushes - poisoned x 204, poisoned x 400, poisoned dead letters, 0 x 5xx, every valid event
recorded once. Before the strict decoder and the group-commit fallback, 10 NUL events among 400 turned 137
valid pushes into 503s (the whole group failed with them).

Beside it, the cost of the strict decoding on the hot path: timeit of `envelope_decode` on a typical 300-byte
push, against the plain json.loads / b64decode / json.loads it replaced (microseconds per push).

Runs on the embedded PostgreSQL and Redis under var/bench like every bench (bench.harness); database
mercari_ops_bench.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import threading
import timeit
import uuid
from collections import Counter
from contextlib import closing

from bench import harness
from bench.harness import DEFAULT_DATABASE, Server, bench_env, report

TOPIC = "platform-ping"


def push_body(event: dict, message_id: str) -> bytes:
    data = base64.b64encode(json.dumps(event).encode()).decode()
    return json.dumps({"message": {"data": data, "messageId": message_id, "publishTime": "2026-11-01T10:00:00Z"},
                       "subscription": "projects/p/subscriptions/bench"}).encode()


def pushes_at_once(port: int, bodies: list[bytes], token: str) -> list[int]:
    """POST every body from its own thread and connection, all released together; the status of each."""
    statuses: list[int] = [0] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def send(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            connection.connect()
            barrier.wait(60)
            connection.request("POST", f"/pubsub/push/{TOPIC}", body=bodies[index],
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            response.read()
            statuses[index] = response.status
        except Exception:  # a refused or reset connection is counted as status 0
            statuses[index] = 0
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def database_counts(database_url: str, run: str) -> dict[str, int]:
    import psycopg

    with closing(psycopg.connect(database_url, autocommit=True)) as conn:
        dead = conn.execute("SELECT count(*), coalesce(sum(times_received), 0) FROM inbox_deadletter "
                            "WHERE topic = %s AND raw_body LIKE %s", [TOPIC, f"%poison-{run}-%"]).fetchone()
        recorded = conn.execute("SELECT count(*) FROM inbox_inboxevent WHERE topic = %s AND event_id LIKE %s",
                                [TOPIC, f"ok-{run}-%"]).fetchone()[0]
    return {"dead_letters": dead[0], "dead_letter_receipts": dead[1], "valid_recorded": recorded}


def decoder_cost(number: int = 20_000) -> dict:
    """Microseconds per push of the strict envelope decoding, and of the plain decoding it replaced."""
    harness.django_in_process(DEFAULT_DATABASE)
    import django

    django.setup()
    from mercari_ops.inbox.services import envelope_decode

    event = {"event_id": "act-" + uuid.uuid4().hex, "customer_id": "c-000123", "kind": "sell", "amount": 1200,
             "occurred_at": "2026-10-03T09:00:00Z"}
    body = push_body(event, "2070443601311540")

    def plain() -> dict:
        envelope = json.loads(body)
        return json.loads(base64.b64decode(envelope["message"]["data"], validate=True))

    assert envelope_decode(body)[0] == plain() == event
    strict = min(timeit.repeat(lambda: envelope_decode(body), number=number, repeat=5)) / number * 1e6
    before = min(timeit.repeat(plain, number=number, repeat=5)) / number * 1e6
    return {"push_bytes": len(body), "strict_us": round(strict, 2), "plain_us": round(before, 2),
            "added_us": round(strict - before, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=400)
    parser.add_argument("--poisoned", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    env = bench_env(GROUP_COMMIT="1")
    token = env["PUBSUB_PUSH_TOKEN"]
    rounds = []
    with Server(env=env) as server:
        for _ in range(args.rounds):
            run = uuid.uuid4().hex[:12]
            poisoned = set(range(0, args.pushes, max(1, args.pushes // max(1, args.poisoned))))
            poisoned = set(sorted(poisoned)[:args.poisoned])
            bodies = [push_body({"event_id": f"poison-{run}-{i}-\u0000"}, f"poison-{run}-{i}") if i in poisoned
                      else push_body({"event_id": f"ok-{run}-{i}"}, f"ok-{run}-{i}") for i in range(args.pushes)]
            statuses = pushes_at_once(server.port, bodies, token)
            valid = Counter(status for i, status in enumerate(statuses) if i not in poisoned)
            bad = Counter(status for i, status in enumerate(statuses) if i in poisoned)
            counts = database_counts(env["DATABASE_URL"], run)
            rounds.append({
                "valid_answers": dict(valid), "poisoned_answers": dict(bad), **counts,
                "target_met": valid == Counter({204: args.pushes - len(poisoned)})
                and bad == Counter({400: len(poisoned)}) and counts["dead_letters"] == len(poisoned)
                and counts["valid_recorded"] == args.pushes - len(poisoned),
            })
    cost = decoder_cost()
    report("Platform: poison mix (NUL events among concurrent pushes, group commit on)", {
        "pushes": args.pushes, "poisoned": args.poisoned,
        "gunicorn": f"{server.workers} workers x {server.threads} threads",
        "rounds": rounds,
        "server_errors_5xx": sum(count for row in rounds for answers in (row["valid_answers"], row["poisoned_answers"])
                                 for status, count in answers.items() if status >= 500),
        "decoder_cost_per_push": cost,
        "target_met": all(row["target_met"] for row in rounds),
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_poison "
                   f"--pushes {args.pushes} --poisoned {args.poisoned} --rounds {args.rounds}",
    })


if __name__ == "__main__":
    main()
