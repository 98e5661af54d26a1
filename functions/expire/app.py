"""Every 5 minutes: PENDING sessions older than SESSION_EXPIRY_MINUTES become EXPIRED and their
QPay invoices are cancelled (a payment that beat the cancel is settled instead)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common import dependencies
from qpay_common.observability import logger, metrics


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000
    return dependencies.scheduled_jobs().expire(remaining).as_dict()
