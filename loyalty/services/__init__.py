"""Every write of loyalty. Import from here: `from loyalty import services`."""

from .activity import activity_apply, activity_handle, activity_handle_batch
from .rules import recompute_job_resume_stale, recompute_job_run, rules_version_publish
from .stages import pins_expire, stage_pin_revoke, stage_pin_set, stage_pin_validate, stages_downgrade_nightly

__all__ = [
    "activity_apply",
    "activity_handle",
    "activity_handle_batch",
    "pins_expire",
    "recompute_job_resume_stale",
    "recompute_job_run",
    "rules_version_publish",
    "stage_pin_revoke",
    "stage_pin_set",
    "stage_pin_validate",
    "stages_downgrade_nightly",
]
