"""SQS: each queued session is checked with QPay and driven through the same transitions as the
webhook; a failed message is named in the partial batch response and retried."""

from qpay_common import dependencies
from qpay_common.reconcile import reconcile_worker_handler

lambda_handler = reconcile_worker_handler(dependencies.reconcile_worker)
