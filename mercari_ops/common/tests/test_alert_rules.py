"""The alert rules in ops/prometheus: valid for promtool, unit-tested on synthetic series, each with a runbook
section in docs/operations.md that exists, about metrics /metrics really serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

RULES = settings.BASE_DIR / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = settings.BASE_DIR / "ops" / "prometheus" / "alerts_test.yml"
OPERATIONS = settings.BASE_DIR / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool (Debian's prometheus) missing")


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", markdown, re.MULTILINE)}


@needs_promtool
def test_promtool_checks_the_rules():
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    result = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                            timeout=120, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_silent():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for alert in _alerts():
        name = alert["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} never fires in a test"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} never stays silent"


def test_every_alert_links_a_runbook_section_that_exists():
    anchors = _anchors(OPERATIONS.read_text())
    alerts = _alerts()
    assert len(alerts) >= 10
    for alert in alerts:
        url = alert.get("annotations", {}).get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md" and anchor, f"{alert['alert']}: runbook_url {url!r}"
        assert anchor in anchors, f"{alert['alert']}: no section #{anchor} in docs/operations.md"


def test_alerts_use_only_metrics_the_docs_list():
    """A renamed metric would leave its alert silent forever: every mercari_ops_ name in the rules is one
    of the names docs/operations.md ("Metrics") lists."""
    documented = set(re.findall(r"`(mercari_ops_[a-z_]+)`", OPERATIONS.read_text()))
    used = set(re.findall(r"\b(mercari_ops_[a-z_]+)", RULES.read_text())) - {"mercari_ops_"}
    assert used and used <= documented, sorted(used - documented)
