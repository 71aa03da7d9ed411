"""Reading the Prometheus text of /metrics in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label items): value} of a /metrics answer."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels) -> float:
    """One sample's value; 0 when the series is absent (a counter nobody counted yet)."""
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape() -> str:
    """What /metrics would answer now (every process's counters of this test run, the scrape gauges)."""
    from mercari_ops.common.metrics.registry import exposition

    return exposition().decode()
