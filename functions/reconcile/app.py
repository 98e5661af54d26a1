"""Every minute: sessions due a reconcile check (PENDING, PAID first, CANCELLED/EXPIRED/FAILED in
the grace window) are leased and handed to SQS, where ReconcileWorkerFunction checks them."""

from qpay_common import dependencies
from qpay_common.scheduled import scheduled_handler

lambda_handler = scheduled_handler(lambda remaining: dependencies.reconcile_dispatcher().dispatch(remaining))
