"""Every write of the LINE integration. Split by area; import from here."""

from .audience import audience_rotate, audience_sync, linkage_user_add  # noqa: F401
from .braze import braze_accept  # noqa: F401
from .delivery import line_notify, message_enqueue, test_message_send  # noqa: F401
from .linking import line_unlink, link_nonce_create, rich_menu_sync, webhook_receive  # noqa: F401
from .pause import sending_pause_set, sending_paused  # noqa: F401
from .planning import outbound_plan, planned_cancel  # noqa: F401
from .sender import requests_send_due, sender_run  # noqa: F401
from .templates import template_save  # noqa: F401
