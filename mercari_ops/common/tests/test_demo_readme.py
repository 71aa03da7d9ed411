"""The demo as the README shows it: the README's estimate and loyalty examples answer exactly what the seeded
demo answers, and no demo date lies in the future (issue 19 point 7)."""

import io
import json
import re

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import models
from django.utils import timezone

from campaigns.catalog import catalog_reset
from campaigns.demo import MARKETPLACE_NAME
from campaigns.models import Campaign

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_catalog(settings):
    """The estimate's campaign catalog is per process: another test's campaigns must not answer here."""
    settings.CAMPAIGNS_CATALOG_CHECK_SECONDS = 0
    catalog_reset()
    yield
    catalog_reset()

# Dates that are meant to be ahead: ends of periods, expiries, next attempts, leases.
FUTURE_BY_DESIGN = re.compile(r"expire|ends_at|next_|until|deadline|due|valid_to")


def readme() -> str:
    return (settings.BASE_DIR / "README.md").read_text()


def answer_after(text: str, command_part: str) -> str:
    """The `# ...` answer lines that follow the shell command containing `command_part` in a README block."""
    start = text.index(command_part)
    lines, seen_answer = [], False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            lines.append(line.lstrip("#").strip())
            seen_answer = True
        elif seen_answer or line.startswith(("curl", "```")):
            break
    return " ".join(lines)


def test_seeded_demo_answers_the_readme_examples_and_lies_in_the_past(api_client):
    call_command("seed_demo", stdout=io.StringIO())
    now = timezone.now()

    # no demo date after now (bills settled, payments, activities, links, ...)
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not isinstance(field, models.DateField) or FUTURE_BY_DESIGN.search(field.name):
                continue
            # a DateTimeField is a DateField too; a plain date (a business month or day) is Japan's
            limit = now if isinstance(field, models.DateTimeField) else timezone.localdate(now)
            late = model.objects.filter(**{f"{field.name}__gt": limit}).values_list(field.name, flat=True)[:1]
            assert not late, f"{model._meta.label}.{field.name} = {late[0]} is after {limit}"

    text = readme()

    # the estimate example: the whole answer, as printed (the campaign's id is the demo campaign's)
    shown = json.loads(answer_after(text, '"customer_id": "c-00001", "amount": 3000, "channel": "mercari"'))
    body = {"customer_id": "c-00001", "amount": 3000, "channel": "mercari", "payment_method": "mercard"}
    got = api_client.post("/api/campaigns/estimate", body, format="json").json()
    assert shown["campaign_id"] == 1 and got["campaign_id"] == Campaign.objects.get(name=MARKETPLACE_NAME).pk
    assert {**shown, "campaign_id": None} == {**got, "campaign_id": None}

    # the loyalty example: stage, totals and what is missing for the next stage, as printed
    shown = answer_after(text, "/api/loyalty/customers/c-00001")
    got = api_client.get("/api/loyalty/customers/c-00001").json()
    stage, name = re.search(r'"stage": (\d+), "stage_name": "(\w+)"', shown).groups()
    assert (int(stage), name) == (got["stage"], got["stage_name"]) == (20, "Silver")
    totals = json.loads(re.search(r'"totals": (\{(?:[^{}]|\{[^{}]*\})*\})', shown).group(1))
    assert totals == got["totals"]
    missing = json.loads(re.search(r'"missing": (\{[^{}]*\})', shown).group(1))
    assert missing == got["next_stage"]["missing"] and got["next_stage"]["name"] == "Gold"
