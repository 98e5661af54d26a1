"""The one Lambda entry wrapper, for HTTP, schedule and SQS invocations alike: the logging
context of the invocation, metrics flushed (and a ColdStart counted) when it returns, and the
invocation's deadline set for every QPay call made inside it (deadlines.py)."""

from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common import deadlines
from qpay_common.observability import log_metrics, logger

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def lambda_entry(run: LambdaHandler) -> LambdaHandler:
    @logger.inject_lambda_context(clear_state=True)
    @log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        deadlines.begin(context)
        try:
            return run(event, context)
        finally:
            deadlines.end()

    return lambda_handler


class Summary(Protocol):
    def as_dict(self) -> dict[str, object]: ...


def scheduled_handler(job: Callable[[float], Summary]) -> LambdaHandler:
    """A scheduled job's entry point: the job gets the invocation's remaining seconds and answers
    its summary."""
    return lambda_entry(lambda event, context: job(context.get_remaining_time_in_millis() / 1000).as_dict())
