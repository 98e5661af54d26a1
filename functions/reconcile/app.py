"""Every minute: sessions due for a check (PENDING, PAID, CANCELLED/EXPIRED/FAILED in the grace
window) are checked with QPay and driven through the same transitions as the webhook."""

from qpay_common import dependencies
from qpay_common.scheduled import scheduled_handler

lambda_handler = scheduled_handler(lambda remaining: dependencies.scheduled_jobs().reconcile(remaining))
