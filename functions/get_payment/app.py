"""GET /payments/{session_id}: the caller's own payment session (asks QPay, throttled, while PENDING).
With `?include=qr`, also the QR code and bank app links, for a checkout page that has only the id."""

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from qpay_common import composition
from qpay_common.http.api_models import PaymentView, PaymentWithQr, error_responses
from qpay_common.http.resolver import SessionIdPath, caller_user_id, http_handler
from qpay_common.usecases.queries import Queries

router = Router()


@router.get(
    "/payments/<session_id>",
    summary="Read a payment",
    responses={
        200: {
            "description": "The session (with `include=qr`, its QR code and bank app links while PENDING)",
            "content": {"application/json": {"model": PaymentWithQr}},
        },
        **error_responses(400, 401, 404, 500, 503),
    },
)
def get_payment(
    session_id: SessionIdPath,
    queries: Annotated[Queries, Depends(composition.queries)],
    include: Annotated[Literal["qr"] | None, Query()] = None,
) -> PaymentView | PaymentWithQr:
    session = queries.get_payment(caller_user_id(router), session_id)
    if include == "qr":
        return PaymentWithQr.from_session(session)
    return PaymentView.from_session(session)


lambda_handler = http_handler(router)
