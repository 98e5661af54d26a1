"""Every 5 minutes: PENDING sessions older than SESSION_EXPIRY_MINUTES become EXPIRED and their
QPay invoices are cancelled (a payment that beat the cancel is settled instead)."""

from qpay_common import dependencies
from qpay_common.scheduled import scheduled_handler

lambda_handler = scheduled_handler(lambda remaining: dependencies.scheduled_jobs().expire(remaining))
