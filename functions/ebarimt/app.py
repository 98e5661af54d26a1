"""Every 2 minutes: Ebarimt 3.0 receipts for PROCESSED sessions that are due one."""

from qpay_common import dependencies
from qpay_common.scheduled import scheduled_handler

lambda_handler = scheduled_handler(lambda remaining: dependencies.scheduled_jobs().ebarimt(remaining))
