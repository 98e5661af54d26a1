"""GET /payments?limit=&cursor=: the caller's own sessions, newest first."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from qpay_common import composition
from qpay_common.http.api_models import PaymentList, PaymentView, error_responses
from qpay_common.http.resolver import caller_user_id, http_handler
from qpay_common.usecases.queries import Queries

router = Router()


@router.get(
    "/payments",
    summary="List my payments",
    responses={
        200: {"description": "A page of sessions", "content": {"application/json": {"model": PaymentList}}},
        **error_responses(400, 401, 500, 503),
    },
)
def list_payments(
    queries: Annotated[Queries, Depends(composition.queries)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=1024,
            pattern=r"^[A-Za-z0-9_-]*$",
            description="`next_cursor` of the previous page; any other value is 400 `cursor_not_issued`",
        ),
    ] = None,
) -> PaymentList:
    sessions, next_cursor = queries.list_payments(caller_user_id(router), limit=limit, cursor=cursor)
    return PaymentList(
        items=[PaymentView.from_session(session) for session in sessions], next_cursor=next_cursor
    )


lambda_handler = http_handler(router)
