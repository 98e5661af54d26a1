"""One place for the Powertools logger and metrics every function shares.

Tracer is deliberately absent: it imports the X-Ray SDK (~0.5 s of cold start here) even when
tracing is off; the template turns on Lambda's active tracing instead.
"""

from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()

Handler = TypeVar("Handler", bound=Callable[..., Any])


def log_metrics(handler: Handler) -> Handler:
    """Flush the invocation's metrics when the handler returns (or raises), and count a
    ColdStart (by function_name) on an environment's first invocation: the dashboard's cold
    starts, restores from a SnapStart snapshot included."""
    return cast(Handler, metrics.log_metrics(handler, capture_cold_start_metric=True))


def qpay_latency(milliseconds: float) -> None:
    """How long QPay took to answer one request (QPayLatency, on the dashboard; no path
    dimension, since paths hold invoice ids). One EMF line per call (single_metric): the
    reconcile worker calls QPay from several threads at once, and the shared Metrics object is
    not built for that."""
    from aws_lambda_powertools.metrics import single_metric

    with single_metric(name="QPayLatency", unit=MetricUnit.Milliseconds, value=milliseconds):
        pass


def count(name: str, **dimensions: str) -> None:
    """Emit a count of one, with dimensions that belong to this metric only."""
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        return
    from aws_lambda_powertools.metrics import single_metric

    with single_metric(name=name, unit=MetricUnit.Count, value=1) as metric:
        for key, value in dimensions.items():
            metric.add_dimension(name=key, value=value)


def record(name: str, value: float, *, seconds: bool = False) -> None:
    """Add a value to the invocation's metrics (flushed by log_metrics): a count, or seconds."""
    metrics.add_metric(name=name, unit=MetricUnit.Seconds if seconds else MetricUnit.Count, value=value)


class QPayCallMetrics:
    """The QPay client's monitor in Lambda: QPayCalls and QPayErrors by operation (the
    PaymentCheckFailureAlarm divides the payment_check ones) and one warning per failed call, so
    no use case counts or logs a QPay failure itself. Codes and statuses only: QPay's messages
    can carry what we do not log."""

    def called(self, operation: str) -> None:
        count("QPayCalls", operation=operation)

    def failed(self, operation: str, error: Exception) -> None:
        count("QPayErrors", operation=operation)
        logger.warning(
            "QPay call failed",
            extra={"operation": operation, "error": str(error), "qpay_code": getattr(error, "code", None)},
        )
