"""Four eyes on changes that move money or messages: change requests, their kinds and the approvers' role.

Apps register kinds (`register_change_kind`) and call `change_request_create` where the change used to be
made; core never imports an app. Models: mercari_ops.common.models.ChangeRequest; admin: `.admin`.
"""

from .registry import change_kind_get, change_kinds, register_change_kind, state_fingerprint
from .roles import APPROVERS, approver_group_sync
from .services import (
    ApprovalRefused,
    ChangeRequestStale,
    can_approve,
    change_request_approve,
    change_request_create,
    change_request_reject,
    change_request_withdraw,
    change_requests_decided,
    change_requests_for,
    change_requests_pending_count,
    mass_threshold,
)

__all__ = [
    "APPROVERS",
    "ApprovalRefused",
    "ChangeRequestStale",
    "approver_group_sync",
    "can_approve",
    "change_kind_get",
    "change_kinds",
    "change_request_approve",
    "change_request_create",
    "change_request_reject",
    "change_request_withdraw",
    "change_requests_decided",
    "change_requests_for",
    "change_requests_pending_count",
    "mass_threshold",
    "register_change_kind",
    "state_fingerprint",
]
