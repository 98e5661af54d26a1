"""Every 5 minutes: PENDING sessions older than SESSION_EXPIRY_MINUTES become EXPIRED and their
QPay invoices are cancelled (a payment that beat the cancel is settled instead)."""

from qpay_common import composition
from qpay_common.lambda_entry import scheduled_handler

lambda_handler = scheduled_handler(lambda remaining: composition.scheduled_jobs().expire(remaining))
