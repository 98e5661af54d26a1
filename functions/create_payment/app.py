"""POST /payments: a payment session and its QPay invoice (QR, deeplinks, short URL)."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common import dependencies
from qpay_common.api import build_resolver, caller_user_id, public_base_url
from qpay_common.api_models import CreatePaymentRequest, ErrorResponse, PaymentCreated
from qpay_common.observability import logger, metrics

app = build_resolver()


@app.post(
    "/payments",
    summary="Create a payment",
    responses={
        201: {"description": "Created", "content": {"application/json": {"model": PaymentCreated}}},
        400: {"description": "Invalid input", "content": {"application/json": {"model": ErrorResponse}}},
        401: {"description": "No valid JWT", "content": {"application/json": {"model": ErrorResponse}}},
        413: {"description": "Body over 64 KB", "content": {"application/json": {"model": ErrorResponse}}},
        415: {"description": "Body is not JSON", "content": {"application/json": {"model": ErrorResponse}}},
        502: {"description": "QPay unavailable", "content": {"application/json": {"model": ErrorResponse}}},
    },
)
def create_payment(request: Annotated[CreatePaymentRequest, Body()]) -> Response[PaymentCreated]:
    session = dependencies.payments_service().create_payment(
        user_id=caller_user_id(app),
        request=request,
        callback_base_url=public_base_url(app, dependencies.settings().public_base_url),
    )
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=PaymentCreated.from_session(session).model_dump(mode="json"),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
