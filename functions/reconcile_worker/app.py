"""SQS: each queued session is checked with QPay and driven through the same transitions as the
webhook; a failed message is named in the partial batch response and retried."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common import composition
from qpay_common.lambda_entry import lambda_entry


def _work_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return composition.reconcile_worker().work_batch(event, context)


lambda_handler = lambda_entry(_work_batch)
