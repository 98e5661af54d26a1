"""GET /payments/{session_id}: the caller's own payment session (asks QPay, throttled, while PENDING)."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.api_gateway import Router

from qpay_common import dependencies
from qpay_common.api import SessionIdPath, caller_user_id, http_handler
from qpay_common.api_models import PaymentView, error_responses
from qpay_common.queries import Queries

router = Router()


@router.get(
    "/payments/<session_id>",
    summary="Read a payment",
    responses={
        200: {"description": "The session", "content": {"application/json": {"model": PaymentView}}},
        **error_responses(401, 404, 500),
    },
)
def get_payment(
    session_id: SessionIdPath,
    queries: Annotated[Queries, Depends(dependencies.queries)],
) -> PaymentView:
    session = queries.get_payment(caller_user_id(router), session_id)
    return PaymentView.from_session(session)


lambda_handler = http_handler(router)
