"""Every write of the campaigns app (see the modules for the details)."""

from .backtest import campaign_backtest_compute, campaign_backtest_queue, campaign_backtest_run
from .campaigns import (
    campaign_activate,
    campaign_create,
    campaign_end,
    campaign_snapshot,
    campaign_update,
    campaign_validate,
    campaign_version_record,
)
from .events import bill_record, bill_record_batch, bills_record_many, card_status_record, card_status_record_many
from .grants import customers_notify, grant_rewards_reverse, grants_deliver, grants_deliver_all
from .merchants import merchant_import_start, merchant_master_import_csv
from .provisions import journal_csv, provision_journal_compute, provisions_daily_compute
from .settlement import SettlementContext, SettlementReport, bills_settle, month_settle, pending_bills_settle

__all__ = [
    "SettlementContext", "SettlementReport", "bill_record", "bill_record_batch", "bills_record_many", "bills_settle",
    "campaign_activate", "campaign_backtest_compute", "campaign_backtest_queue", "campaign_backtest_run",
    "campaign_create", "campaign_end", "campaign_snapshot", "campaign_update", "campaign_validate",
    "campaign_version_record", "card_status_record", "card_status_record_many", "customers_notify",
    "grant_rewards_reverse", "grants_deliver", "grants_deliver_all", "journal_csv", "merchant_import_start",
    "merchant_master_import_csv",
    "month_settle", "pending_bills_settle", "provision_journal_compute", "provisions_daily_compute",
]
