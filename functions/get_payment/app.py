"""GET /payments/{session_id}: the caller's own payment session."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common import dependencies
from qpay_common.api import build_resolver, caller_user_id
from qpay_common.api_models import ErrorResponse, PaymentView
from qpay_common.observability import logger, metrics

app = build_resolver()


@app.get(
    "/payments/<session_id>",
    summary="Read a payment",
    responses={
        200: {"description": "The session", "content": {"application/json": {"model": PaymentView}}},
        401: {"description": "No valid JWT", "content": {"application/json": {"model": ErrorResponse}}},
        404: {
            "description": "Unknown, or another user's",
            "content": {"application/json": {"model": ErrorResponse}},
        },
    },
)
def get_payment(session_id: Annotated[str, Path(max_length=64)]) -> PaymentView:
    session = dependencies.payments_service().get_payment(caller_user_id(app), session_id)
    return PaymentView.from_session(session)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
