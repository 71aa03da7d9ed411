"""The marketers' and operators' screens for campaigns (one module per area)."""

from . import campaigns, merchants, provisions, settlement  # noqa: F401
