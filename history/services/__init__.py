"""Every write of the payment history (events applied, repayments requested and delivered)."""

from .events import customer_lock, payment_event_apply, state_key
from .repayments import Delivery, repayment_deliver, repayment_request, repayment_sweep

__all__ = ["Delivery", "customer_lock", "payment_event_apply", "repayment_deliver", "repayment_request",
           "repayment_sweep", "state_key"]
