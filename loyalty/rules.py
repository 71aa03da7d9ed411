"""Stage rules as pure functions: validation, the rolling window, evaluation. No database access.

How thresholds combine (documented in the README and tested):
- A rule set is an ordered list of stages. The lowest stage has no thresholds: every customer has it.
- Each higher stage has thresholds over the window totals (metrics `buy_amount`, `buy_count`,
  `sell_amount`, `sell_count`, `pay_amount`, `pay_count`) and a `combine` mode:
  `"all"` (default): the stage is reached when EVERY threshold is met (value >= threshold);
  `"any"`: the stage is reached when AT LEAST ONE threshold is met.
- A customer's rules stage is the HIGHEST stage whose thresholds are met; stages are evaluated
  independently (a Gold rule does not require the Silver rule to be met too).
- The window is the last `window_months` business months (BUSINESS_TIME_ZONE, Japan's) including the current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.utils.translation import gettext

from mercari_ops.common.business_time import business_month, month_shift
from mercari_ops.common.errors import ValidationFailed

KINDS = ("buy", "sell", "pay")
METRICS = tuple(f"{kind}_{measure}" for kind in KINDS for measure in ("amount", "count"))
COMBINE_MODES = ("all", "any")
MAX_WINDOW_MONTHS = 60


@dataclass(frozen=True)
class StageRule:
    stage: int
    name: str
    combine: str
    thresholds: dict[str, int]


@dataclass(frozen=True)
class RuleSet:
    version: int
    window_months: int
    stages: tuple[StageRule, ...]  # ascending by stage

    @property
    def base_stage(self) -> int:
        return self.stages[0].stage

    def rule(self, stage: int) -> StageRule | None:
        return next((rule for rule in self.stages if rule.stage == stage), None)

    def next_rule(self, stage: int) -> StageRule | None:
        return next((rule for rule in self.stages if rule.stage > stage), None)

    def name(self, stage: int) -> str:
        rule = self.rule(stage)
        return rule.name if rule else f"stage {stage}"


DEFAULT_DEFINITION = {
    "window_months": 12,
    "stages": [{"stage": 10, "name": "Regular", "combine": "all", "thresholds": {}}],
}


def _invalid(field: str, text: str) -> ValidationFailed:
    """The one format of a rules error: the path of the bad value, once, then what is wrong with it
    ("stages.1.combine: must be 'all' or 'any'"). Forms and APIs show the message as it is."""
    return ValidationFailed(f"{field}: {text}", field)


def definition_validate(data) -> dict:
    """A normalised copy of a rules definition, or ValidationFailed naming the bad field."""
    if not isinstance(data, dict):
        raise _invalid("definition", gettext("must be a JSON object"))
    window = data.get("window_months")
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW_MONTHS:
        raise _invalid("window_months", gettext("must be an integer from 1 to %(max)s") % {"max": MAX_WINDOW_MONTHS})
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise _invalid("stages", gettext("must be a non-empty list"))
    unknown = set(data) - {"window_months", "stages"}
    if unknown:
        raise _invalid(sorted(unknown)[0], gettext("unknown key; allowed: window_months, stages"))
    cleaned = []
    for index, stage in enumerate(stages):
        where = f"stages.{index}"
        if not isinstance(stage, dict):
            raise _invalid(where, gettext("must be an object"))
        number = stage.get("stage")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 32767:
            raise _invalid(f"{where}.stage", gettext("must be an integer from 1 to 32767"))
        if cleaned and number <= cleaned[-1]["stage"]:
            raise _invalid(f"{where}.stage", gettext("must be higher than the stage before it"))
        name = stage.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            raise _invalid(f"{where}.name", gettext("must be a non-empty text of at most 60 characters"))
        combine = stage.get("combine", "all")
        if combine not in COMBINE_MODES:
            raise _invalid(f"{where}.combine", gettext("must be 'all' or 'any'"))
        thresholds = stage.get("thresholds", {})
        if not isinstance(thresholds, dict):
            raise _invalid(f"{where}.thresholds", gettext("must be an object"))
        for metric, value in thresholds.items():
            if metric not in METRICS:
                raise _invalid(f"{where}.thresholds.{metric}", gettext("unknown metric; use one of %(metrics)s")
                               % {"metrics": ", ".join(METRICS)})
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _invalid(f"{where}.thresholds.{metric}", gettext("must be a positive integer"))
        if index == 0 and thresholds:
            raise _invalid(f"{where}.thresholds",
                           gettext("must be empty: the lowest stage is everyone's stage, it has no thresholds"))
        if index > 0 and not thresholds:
            raise _invalid(f"{where}.thresholds", gettext("needs at least one threshold"))
        cleaned.append({"stage": number, "name": name.strip(), "combine": combine,
                        "thresholds": {metric: thresholds[metric] for metric in METRICS if metric in thresholds}})
    return {"window_months": window, "stages": cleaned}


def ruleset_build(version: int, definition: dict) -> RuleSet:
    return RuleSet(
        version=version,
        window_months=definition["window_months"],
        # In METRICS order whatever the JSON storage did to key order (jsonb sorts keys).
        stages=tuple(StageRule(s["stage"], s["name"], s.get("combine", "all"),
                               {m: s["thresholds"][m] for m in METRICS if m in s["thresholds"]})
                     for s in sorted(definition["stages"], key=lambda s: s["stage"])),
    )


def month_start(moment: datetime | date) -> date:
    """The business month (BUSINESS_TIME_ZONE) of an instant; a date is taken as already local."""
    return business_month(moment)


def window_start(now: datetime | date, months: int) -> date:
    """First day of the oldest month in a window of `months` business months ending with now's month."""
    return month_shift(business_month(now), -(months - 1))


def metrics_empty() -> dict[str, int]:
    return dict.fromkeys(METRICS, 0)


def metrics_add(metrics: dict[str, int], kind: str, amount: int, count: int) -> None:
    metrics[f"{kind}_amount"] += amount
    metrics[f"{kind}_count"] += count


def threshold_report(rule: StageRule, metrics: dict[str, int]) -> list[dict]:
    return [{"metric": metric, "threshold": threshold, "value": metrics.get(metric, 0),
             "met": metrics.get(metric, 0) >= threshold}
            for metric, threshold in rule.thresholds.items()]


def stage_meets(rule: StageRule, metrics: dict[str, int]) -> bool:
    if not rule.thresholds:
        return True
    checks = (metrics.get(metric, 0) >= threshold for metric, threshold in rule.thresholds.items())
    return all(checks) if rule.combine == "all" else any(checks)


def stage_evaluate(ruleset: RuleSet, metrics: dict[str, int]) -> StageRule:
    """The highest stage whose thresholds the window metrics meet."""
    best = ruleset.stages[0]
    for rule in ruleset.stages[1:]:
        if stage_meets(rule, metrics):
            best = rule
    return best


def missing_for(rule: StageRule, metrics: dict[str, int]) -> dict[str, int]:
    """What is still missing per threshold (for `any`, closing one of them is enough)."""
    return {metric: threshold - metrics.get(metric, 0) for metric, threshold in rule.thresholds.items()
            if metrics.get(metric, 0) < threshold}


def change_reason(ruleset: RuleSet, metrics: dict[str, int], *, from_stage: int, to_stage: int,
                  window_from: date, trigger: str) -> dict:
    """Why a rules stage moved: the window totals and, per stage involved, each threshold met or not."""
    reason = {
        "trigger": trigger,
        "rules_version": ruleset.version,
        "window": {"months": ruleset.window_months, "from": window_from.strftime("%Y-%m")},
        "totals": {metric: metrics.get(metric, 0) for metric in METRICS},
    }
    reached = ruleset.rule(to_stage)
    if reached is not None and reached.thresholds:
        reason["reached"] = {"stage": to_stage, "combine": reached.combine,
                             "thresholds": threshold_report(reached, metrics)}
    if to_stage < from_stage:
        lost = ruleset.rule(from_stage)
        if lost is not None:
            reason["lost"] = {"stage": from_stage, "combine": lost.combine,
                              "thresholds": threshold_report(lost, metrics)}
        else:
            reason["lost"] = {"stage": from_stage, "note": "stage no longer exists in these rules"}
    return reason
