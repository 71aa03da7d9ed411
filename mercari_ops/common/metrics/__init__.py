"""Prometheus metrics (issue 20): see registry.py for the two kinds, docs/operations.md "Metrics" for the list.

    from mercari_ops.common.metrics import snapshot
    snapshot()["mercari_ops_line_outbound_messages"][("queued",)]
"""

from .registry import (
    ScrapeGauge,
    counter,
    counters_initialise,
    histogram,
    metrics_flush,
    scrape_area_register,
    scrape_gauges,
    snapshot,
)

__all__ = ["ScrapeGauge", "counter", "counters_initialise", "histogram", "metrics_flush", "scrape_area_register",
           "scrape_gauges", "snapshot"]
