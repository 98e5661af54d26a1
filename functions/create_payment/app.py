"""POST /payments: a payment session and its QPay invoice (QR, deeplinks, short URL)."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header

from qpay_common import composition
from qpay_common.domain.payment_request import CreatePaymentRequest
from qpay_common.http.api_models import PaymentCreated, error_responses
from qpay_common.http.resolver import caller_user_id, http_handler, public_base_url
from qpay_common.usecases.creation import PaymentCreation

router = Router()


@router.post(
    "/payments",
    summary="Create a payment",
    description="Same Idempotency-Key and body: the same session again (200). Same key, other body: 409.",
    responses={
        201: {"description": "Created", "content": {"application/json": {"model": PaymentCreated}}},
        200: {"description": "Idempotent replay", "content": {"application/json": {"model": PaymentCreated}}},
        **error_responses(400, 401, 409, 413, 415, 500, 502, 503),
    },
)
def create_payment(
    request: Annotated[CreatePaymentRequest, Body()],
    creation: Annotated[PaymentCreation, Depends(composition.payment_creation)],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    ] = None,
) -> Response[PaymentCreated]:
    session, created = creation.create_payment(
        user_id=caller_user_id(router),
        request=request,
        callback_base_url=public_base_url(router, composition.settings().public_base_url),
        idempotency_key=idempotency_key,
    )
    return Response(
        status_code=201 if created else 200,
        content_type=content_types.APPLICATION_JSON,
        body=PaymentCreated.from_session(session).model_dump(mode="json"),
    )


lambda_handler = http_handler(router)
