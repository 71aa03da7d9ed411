"""Run in a separate process by the limiter tests: hammer one key, print the limiter's grant times."""

import json
import os
import sys
import time

import django


def main(key: str, limit: int, period: float, seconds: float, cost: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
    django.setup()
    from mercari_ops.common.ratelimit import rate_limiter

    limiter = rate_limiter()
    grants = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        granted, at = limiter.acquire_at(key, limit=limit, period=period, cost=cost)
        if granted:
            grants.extend([at] * cost)
    print(json.dumps(grants))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
