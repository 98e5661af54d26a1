"""/admin/...: the operators' API (scope payments/admin): list and inspect sessions beside QPay's
live view, reconcile one now, publish PaymentCompleted again, refund a card payment, queue an
Ebarimt receipt again, summarise."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from qpay_common import composition
from qpay_common.http.admin_models import (
    EBARIMT_STATUS_PATTERN,
    STATUS_PATTERN,
    AdminEbarimtView,
    AdminPaymentDetail,
    AdminPaymentItem,
    AdminPaymentList,
    AdminSessionView,
    AdminSummaryView,
    EbarimtRequeueRequest,
    EbarimtRequeueResult,
    EndMoment,
    RefundRequest,
    RepublishResult,
    StartMoment,
    listed_ebarimt_status,
    listed_status,
)
from qpay_common.http.api_models import error_responses
from qpay_common.http.resolver import ADMIN_SCOPE, caller_admin_id, http_handler, public_base_url
from qpay_common.usecases.admin import AdminOperations
from qpay_common.usecases.admin_reports import AdminReports
from qpay_common.usecases.ebarimt import EbarimtService
from qpay_common.usecases.refunds import Refunds

router = Router()

SECURITY = [{"jwt": [ADMIN_SCOPE]}]
SCOPE_NOTE = f"Needs a token with the `{ADMIN_SCOPE}` scope (403 otherwise). "
SessionId = Annotated[str, Path(max_length=64)]


def operator() -> str:
    """The caller's id if the token holds the admin scope, else 403; resolved before the use case."""
    return caller_admin_id(router)


Operator = Annotated[str, Depends(operator)]


def _ok(model: type, description: str) -> dict[int, dict[str, object]]:
    return {200: {"description": description, "content": {"application/json": {"model": model}}}}


@router.get(
    "/admin/payments",
    summary="List payments (operators)",
    description=SCOPE_NOTE + "Newest first, by status, Ebarimt receipt status, user and creation time "
    "(`from`/`to`, ISO 8601, inclusive; a date means the whole day in UTC; `from` after `to` is 400 "
    "`from_after_to`); cursor-paged; read from an index, never a Scan.",
    security=SECURITY,
    responses={**_ok(AdminPaymentList, "A page of sessions"), **error_responses(400, 401, 403, 500, 503)},
)
def list_admin_payments(
    actor: Operator,
    reports: Annotated[AdminReports, Depends(composition.admin_reports)],
    status: Annotated[str | None, Query(pattern=STATUS_PATTERN)] = None,
    ebarimt_status: Annotated[str | None, Query(pattern=EBARIMT_STATUS_PATTERN)] = None,
    created_from: Annotated[StartMoment | None, Query(alias="from")] = None,
    created_to: Annotated[EndMoment | None, Query(alias="to")] = None,
    user_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> AdminPaymentList:
    sessions, next_cursor = reports.list_payments(
        actor,
        status=listed_status(status),
        ebarimt_status=listed_ebarimt_status(ebarimt_status),
        user_id=user_id,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        cursor=cursor,
    )
    return AdminPaymentList(
        items=[AdminPaymentItem.from_session(session) for session in sessions], next_cursor=next_cursor
    )


@router.get(
    "/admin/payments/<session_id>",
    summary="Inspect a payment (operators)",
    description=SCOPE_NOTE + "The session, its order, and QPay's live view (invoice, payment check, "
    "each payment); if QPay fails, `qpay.available` is false and the rest is still shown.",
    security=SECURITY,
    responses={
        **_ok(AdminPaymentDetail, "The session beside QPay's view"),
        **error_responses(400, 401, 403, 404, 500, 503),
    },
)
def inspect_payment(
    actor: Operator,
    session_id: SessionId,
    operations: Annotated[AdminOperations, Depends(composition.admin_operations)],
) -> AdminPaymentDetail:
    return AdminPaymentDetail.from_inspection(operations.inspect(actor, session_id))


@router.post(
    "/admin/payments/<session_id>/reconcile",
    summary="Reconcile a payment now (operators)",
    description=SCOPE_NOTE + "Asks QPay's payment check now and applies it (a found payment is "
    "fulfilled); settled sessions are returned unchanged.",
    security=SECURITY,
    responses={
        **_ok(AdminSessionView, "The session after the check"),
        **error_responses(400, 401, 403, 404, 500, 502, 503),
    },
)
def reconcile_payment(
    actor: Operator,
    session_id: SessionId,
    operations: Annotated[AdminOperations, Depends(composition.admin_operations)],
) -> AdminSessionView:
    return AdminSessionView.from_session(operations.reconcile(actor, session_id))


@router.post(
    "/admin/payments/<session_id>/republish",
    summary="Publish PaymentCompleted again (operators)",
    description=SCOPE_NOTE + "Same order_id (consumers dedupe on it); a refunded session's "
    "PaymentRefunded follows. 409 NO_ORDER if the session was never fulfilled.",
    security=SECURITY,
    responses={**_ok(RepublishResult, "Published"), **error_responses(400, 401, 403, 404, 409, 500, 503)},
)
def republish_payment(
    actor: Operator,
    session_id: SessionId,
    operations: Annotated[AdminOperations, Depends(composition.admin_operations)],
) -> RepublishResult:
    session, published = operations.republish(actor, session_id)
    return RepublishResult(session_id=session.session_id, order_id=session.order_id, published=published)


@router.post(
    "/admin/payments/<session_id>/refund",
    summary="Refund a card payment (operators)",
    description=SCOPE_NOTE + "PROCESSED -> REFUNDED through QPay's refund endpoint, PaymentRefunded "
    "published, the Ebarimt receipt cancelled. Idempotent: a refunded session answers 200 again. "
    "409 REFUND_NOT_SUPPORTED for QR/P2P payments (QPay refunds only cards), 409 NOT_REFUNDABLE "
    "unless PROCESSED; 502 if QPay did not answer (repeat the request), 503 if the event could not "
    "be published (repeat the request).",
    security=SECURITY,
    responses={
        **_ok(AdminSessionView, "Refunded"),
        **error_responses(400, 401, 403, 404, 409, 413, 415, 500, 502, 503),
    },
)
def refund_payment(
    actor: Operator,
    session_id: SessionId,
    request: Annotated[RefundRequest, Body()],
    refunds: Annotated[Refunds, Depends(composition.refunds)],
) -> AdminSessionView:
    session = refunds.refund(
        actor,
        session_id,
        note=request.note,
        payment_id=request.payment_id,
        callback_base_url=public_base_url(router, composition.settings().public_base_url),
    )
    return AdminSessionView.from_session(session)


@router.post(
    "/admin/payments/<session_id>/ebarimt",
    summary="Queue an Ebarimt receipt again (operators)",
    description=SCOPE_NOTE + "For a PROCESSED session whose receipt is ERROR, REJECTED or GAVE_UP: "
    "PENDING again, due at the Ebarimt job's next run (every 2 minutes), with a fresh retry window. "
    "The optional body replaces this session's receiver type, receiver (never shown again), "
    "district or classification code. 409 EBARIMT_ALREADY_REGISTERED if it is registered, 409 "
    "EBARIMT_NOT_REQUEUEABLE in any other state, 409 EBARIMT_DISABLED if Ebarimt is off.",
    security=SECURITY,
    responses={
        202: {
            "description": "Queued; the receipt state as stored now",
            "content": {"application/json": {"model": EbarimtRequeueResult}},
        },
        **error_responses(400, 401, 403, 404, 409, 413, 415, 500, 503),
    },
)
def requeue_ebarimt(
    actor: Operator,
    session_id: SessionId,
    ebarimt: Annotated[EbarimtService, Depends(composition.ebarimt)],
    request: Annotated[EbarimtRequeueRequest | None, Body()] = None,
) -> Response[EbarimtRequeueResult]:
    overrides = request.model_dump(exclude_none=True) if request is not None else None
    session = ebarimt.requeue(actor, session_id, overrides)
    result = EbarimtRequeueResult(
        session_id=session.session_id, ebarimt=AdminEbarimtView.from_session(session)
    )
    return Response(
        status_code=202, content_type=content_types.APPLICATION_JSON, body=result.model_dump(mode="json")
    )


@router.get(
    "/admin/summary",
    summary="Summarise payments (operators)",
    description=SCOPE_NOTE + "Sessions created between `from` and `to` (default: the last 24 hours): "
    "counts and sums by status, cancellation, expiry and late-payment rates, Ebarimt outcomes; `from` "
    "after `to` is 400 `from_after_to`.",
    security=SECURITY,
    responses={**_ok(AdminSummaryView, "The summary"), **error_responses(400, 401, 403, 500, 503)},
)
def summarise_payments(
    actor: Operator,
    reports: Annotated[AdminReports, Depends(composition.admin_reports)],
    created_from: Annotated[StartMoment | None, Query(alias="from")] = None,
    created_to: Annotated[EndMoment | None, Query(alias="to")] = None,
) -> AdminSummaryView:
    summary = reports.summary(actor, created_from=created_from, created_to=created_to)
    return AdminSummaryView.from_summary(summary)


lambda_handler = http_handler(router)
