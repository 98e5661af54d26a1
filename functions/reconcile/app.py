"""Every minute: sessions due a reconcile check (PENDING, PAID first, CANCELLED/EXPIRED/FAILED in
the grace window) are leased and handed to SQS, where ReconcileWorkerFunction checks them."""

from qpay_common import composition
from qpay_common.lambda_entry import scheduled_handler

lambda_handler = scheduled_handler(lambda remaining: composition.reconcile_dispatcher().dispatch(remaining))
