"""POST /payments/{session_id}/cancel: PENDING -> CANCELLED (idempotent), then the QPay invoice."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.api_gateway import Router

from qpay_common import composition
from qpay_common.http.api_models import PaymentView, error_responses
from qpay_common.http.resolver import SessionIdPath, caller_user_id, http_handler
from qpay_common.usecases.cancellation import Cancellation

router = Router()


@router.post(
    "/payments/<session_id>/cancel",
    summary="Cancel a payment",
    description="409 ALREADY_PAID once paid (also when the payment arrives during the cancel), 409 EXPIRED.",
    responses={
        200: {"description": "Cancelled", "content": {"application/json": {"model": PaymentView}}},
        **error_responses(401, 404, 409, 500, 503),
    },
)
def cancel_payment(
    session_id: SessionIdPath,
    cancellation: Annotated[Cancellation, Depends(composition.cancellation)],
) -> PaymentView:
    session = cancellation.cancel(caller_user_id(router), session_id)
    return PaymentView.from_session(session)


lambda_handler = http_handler(router)
