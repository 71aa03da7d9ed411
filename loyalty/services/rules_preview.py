"""What publishing a stage-rules definition would do to today's customers, computed without writing anything.

The same evaluation the recomputation runs (`rules.stage_evaluate` over each customer's window totals, both
directions, then an active operator pin raised on top), but read-only: customers are read in pk order in
batches with one window-totals query per batch, and nothing is locked, so the figures are a snapshot and the
real recomputation may differ by the activity that arrives meanwhile. Stages counted are effective stages
(what the customer sees), as in `Customer.stage`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from django.utils import timezone

from .. import selectors
from ..models import Customer
from ..rules import definition_validate, ruleset_build, stage_evaluate, window_start

BATCH = 5000


def stage_rules_preview(*, definition: dict, now: datetime | None = None, batch_size: int = BATCH) -> dict:
    """How many customers would move from which stage to which under `definition` (validated first).

    Returns {"customers": N, "moves": [{"from_stage", "to_stage", "customers"}] (only real moves, by size),
    "up": n, "down": n, "unchanged": n, "per_stage_before": {stage: n}, "per_stage_after": {stage: n},
    "stage_names": {stage: name} (the proposed names, and the current ones for stages that disappear),
    "window_from": "YYYY-MM"}. Stage keys are ints (strings once stored as JSON). Raises ValidationFailed.
    """
    now = now or timezone.now()
    proposed = ruleset_build(0, definition_validate(definition))
    current = selectors.rules_active()
    start = window_start(now, proposed.window_months)
    before: Counter[int] = Counter()
    after: Counter[int] = Counter()
    moves: Counter[tuple[int, int]] = Counter()
    last_pk = 0
    while True:
        rows = list(Customer.objects.filter(pk__gt=last_pk).order_by("pk")
                    .values_list("pk", "rules_stage", "pin_floor", "pin_expires_at")[:batch_size])
        if not rows:
            break
        last_pk = rows[-1][0]
        metrics_by_pk = selectors.window_metrics(customer_pks=[row[0] for row in rows], start=start)
        for pk, rules_stage, pin_floor, pin_expires_at in rows:
            old = selectors.effective_stage(rules_stage, pin_floor, pin_expires_at, now)
            new_rules = stage_evaluate(proposed, metrics_by_pk[pk]).stage
            new = selectors.effective_stage(new_rules, pin_floor, pin_expires_at, now)
            before[old] += 1
            after[new] += 1
            if new != old:
                moves[(old, new)] += 1
    names = {rule.stage: rule.name for rule in current.stages}
    names.update({rule.stage: rule.name for rule in proposed.stages})
    total = sum(before.values())
    return {
        "customers": total,
        "moves": [{"from_stage": a, "to_stage": b, "customers": n}
                  for (a, b), n in sorted(moves.items(), key=lambda item: (-item[1], item[0]))],
        "up": sum(n for (a, b), n in moves.items() if b > a),
        "down": sum(n for (a, b), n in moves.items() if b < a),
        "unchanged": total - sum(moves.values()),
        "per_stage_before": dict(sorted(before.items())),
        "per_stage_after": dict(sorted(after.items())),
        "stage_names": dict(sorted(names.items())),
        "window_from": start.strftime("%Y-%m"),
    }
