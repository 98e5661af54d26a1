"""GET and POST /webhooks/qpay: QPay's payment callback.

The URL carries the session id, its HMAC token and the id of the key that made it (`kid`; URLs
from before key ids have none and verify against every key); the body (if any) is ignored because only
QPay's payment check proves a payment. Answers 200 `SUCCESS`, duplicates included, and also when
DynamoDB is throttled or failing past the SDK's retries (Settlement.handle_callback says why).
"""

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from qpay_common import composition
from qpay_common.http.api_models import error_responses
from qpay_common.http.resolver import http_handler
from qpay_common.observability import logger
from qpay_common.usecases.settlement import Settlement

router = Router()


@router.route(
    "/webhooks/qpay",
    method=["GET", "POST"],
    summary="QPay payment callback",
    security=[],
    responses={
        200: {
            "description": "Acknowledged: SUCCESS",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(400, 401, 404, 500, 502),
    },
)
def qpay_callback(
    settlement: Annotated[Settlement, Depends(composition.settlement)],
    # Unconstrained on purpose: any session id or token that is not a valid pair is a 401.
    session_id: Annotated[str | None, Query(description="The session id in the callback URL")] = None,
    token: Annotated[str | None, Query(description="The callback URL's HMAC; a wrong one is 401")] = None,
    kid: Annotated[
        str | None, Query(description="The webhook key that made the token; one no longer held is 401")
    ] = None,
    qpay_payment_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Response[str]:
    logger.info("QPay callback", extra={"qpay_payment_id": qpay_payment_id})
    settlement.handle_callback(session_id, token, kid)
    return Response(status_code=200, content_type=content_types.TEXT_PLAIN, body="SUCCESS")


lambda_handler = http_handler(router)
