"""Run in separate processes by the limiter tests: one more client of a limiter key, driven tick by tick.

    python -m mercari_ops.common.tests.limiter_worker KIND KEY LIMIT PERIOD CALLS COUNT

Each line on stdin is a time in microseconds, on a manual clock every worker shares through its input;
the worker makes CALLS calls at that time and answers one line, the JSON list of what they got, in
microseconds: KIND "acquire" (sliding log, cost COUNT) repeats the time once per call granted, COUNT
times; "reserve" (one slot per call) and "reserve_many" (up to COUNT slots per call) list the slots.
End of input ends it. The tests decide when time moves, so what they assert does not depend on load.
"""

import json
import os
import sys

import django


def main(kind: str, key: str, limit: int, period: float, calls: int, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
    django.setup()
    from mercari_ops.common.ratelimit import rate_limiter
    from mercari_ops.common.tests.clock import ManualClock

    clock = ManualClock()
    limiter = rate_limiter(clock=clock)
    for line in sys.stdin:
        clock.set_us(int(line))
        got: list[int] = []
        for _ in range(calls):
            if kind == "acquire":
                granted, at = limiter.acquire_at(key, limit=limit, period=period, cost=count)
                got += [round(at * 1_000_000)] * count if granted else []
            elif kind == "reserve":
                slot = limiter.reserve_at(key, limit=limit, period=period)
                got += [] if slot is None else [round(slot * 1_000_000)]
            else:
                waits, _ = limiter.reserve_many(key, limit=limit, count=count, period=period)
                got += [clock.us + round(wait * 1_000_000) for wait in waits]
        print(json.dumps(got), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
