"""Campaigns, stage rates and the merchant master, held in memory per process.

The estimate API must not query them per request. Each process keeps one
`Catalog`; at most every CAMPAIGNS_CATALOG_CHECK_SECONDS it reads the single
`CatalogGeneration` row (one primary-key query) and reloads everything when the
generation moved. Every service that changes a campaign, a rate or the merchant
master bumps the generation in the same transaction (`catalog_changed`), so a
change is visible to every process within CAMPAIGNS_CATALOG_CHECK_SECONDS
(default 2 s) plus one reload. As a safety net against a write that bypassed
the services, the catalog is also reloaded unconditionally every
CAMPAIGNS_CATALOG_MAX_AGE_SECONDS (default 300 s).

Campaign start and end times are compared with the clock on every request, so
a scheduled start or end needs no reload.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from .models import Campaign, CampaignStageRate, CatalogGeneration, MerchantAlias
from .rules import CampaignRule, MerchantDirectory, MerchantInfo


@dataclass(frozen=True)
class Catalog:
    generation: int
    campaigns: tuple[CampaignRule, ...]
    merchants: MerchantDirectory
    loaded_at: float

    def active(self, at: datetime) -> list[CampaignRule]:
        return [rule for rule in self.campaigns if rule.starts_at <= at < rule.ends_at]


def campaign_rules_load(campaigns) -> list[CampaignRule]:
    """Compile campaigns (a queryset or list) and their rates into pure rules."""
    campaigns = list(campaigns)
    rates: dict[int, list[tuple[int, int, object]]] = {c.pk: [] for c in campaigns}
    for row in CampaignStageRate.objects.filter(campaign__in=[c.pk for c in campaigns]).values_list(
        "campaign_id", "stage_from", "stage_to", "rate"
    ):
        rates[row[0]].append(row[1:])
    return [
        CampaignRule.build(
            id=c.pk, version=c.version, name=c.name, starts_at=c.starts_at, ends_at=c.ends_at,
            upper_limit=c.upper_limit, user_filters=c.user_filters, payment_filters=c.payment_filters,
            rates=rates[c.pk],
        )
        for c in campaigns
    ]


def merchant_directory_load() -> MerchantDirectory:
    rows = MerchantAlias.objects.values_list(
        "merchant_id", "payment_method", "master__master_id", "master__is_marketplace", "master__category"
    )
    return MerchantDirectory(
        (merchant_id, method, MerchantInfo(master_id, is_marketplace, category))
        for merchant_id, method, master_id, is_marketplace, category in rows.iterator(chunk_size=5000)
    )


def generation_current() -> int:
    row = CatalogGeneration.objects.filter(pk=1).values_list("generation", flat=True).first()
    return row or 0


def catalog_changed() -> None:
    """Bump the generation so every process reloads. Call inside the transaction that made the change."""
    updated = CatalogGeneration.objects.filter(pk=1).update(generation=F("generation") + 1,
                                                           changed_at=timezone.now())
    if not updated:
        CatalogGeneration.objects.get_or_create(pk=1, defaults={"generation": 2})


def catalog_load() -> Catalog:
    generation = generation_current()
    campaigns = Campaign.objects.filter(status=Campaign.Status.ACTIVE)
    return Catalog(generation, tuple(campaign_rules_load(campaigns)), merchant_directory_load(), time.monotonic())


_lock = threading.Lock()
_state: dict[str, object] = {"catalog": None, "checked_at": 0.0}


def catalog_get() -> Catalog:
    """This process's catalog, reloaded when the generation moved (checked at most every few seconds)."""
    catalog: Catalog | None = _state["catalog"]  # type: ignore[assignment]
    now = time.monotonic()
    if catalog is not None and now - _state["checked_at"] < settings.CAMPAIGNS_CATALOG_CHECK_SECONDS:
        return catalog
    with _lock:
        catalog = _state["catalog"]  # type: ignore[assignment]
        if catalog is None or now - catalog.loaded_at > settings.CAMPAIGNS_CATALOG_MAX_AGE_SECONDS \
                or generation_current() != catalog.generation:
            catalog = catalog_load()
            _state["catalog"] = catalog
        _state["checked_at"] = time.monotonic()
        return catalog


def catalog_reset() -> None:
    """Forget the in-memory catalog (tests, and after a bulk import in the same process)."""
    with _lock:
        _state["catalog"] = None
        _state["checked_at"] = 0.0
