"""Every write of the LINE integration. Split by area; import from here."""

from .audience import audience_rotate, audience_sync, linkage_user_add  # noqa: F401
from .delivery import (  # noqa: F401
    braze_accept,
    line_notify,
    message_enqueue,
    outbound_plan,
    planned_cancel,
    requests_send_due,
    sender_run,
    template_save,
    test_message_send,
)
from .linking import line_unlink, link_nonce_create, rich_menu_sync, webhook_receive  # noqa: F401
