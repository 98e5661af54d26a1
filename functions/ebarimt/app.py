"""Every 2 minutes: Ebarimt 3.0 receipts for PROCESSED sessions that are due one."""

from qpay_common import composition
from qpay_common.lambda_entry import scheduled_handler

lambda_handler = scheduled_handler(lambda remaining: composition.scheduled_jobs().ebarimt(remaining))
