"""The one mapping from errors to HTTP responses. Every error body has the contract's shape:
{"error": {"code": ..., "message": ..., "details": [...]}}; none echoes the input."""

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from qpay_common.domain.errors import (
    AlreadyPaid,
    EventBusUnavailable,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NoOrder,
    NotCancellable,
    NotRefundable,
    NotRequeueable,
    PayloadTooLarge,
    PaymentError,
    QPayUnavailable,
    RefundNotSupported,
    SessionExpired,
    SessionNotFound,
    StorageUnavailable,
    Unauthorized,
)

STATUS_BY_ERROR: dict[type[PaymentError], HTTPStatus] = {
    InvalidRequest: HTTPStatus.BAD_REQUEST,
    Unauthorized: HTTPStatus.UNAUTHORIZED,
    Forbidden: HTTPStatus.FORBIDDEN,
    SessionNotFound: HTTPStatus.NOT_FOUND,
    AlreadyPaid: HTTPStatus.CONFLICT,
    SessionExpired: HTTPStatus.CONFLICT,
    IdempotencyConflict: HTTPStatus.CONFLICT,
    NotCancellable: HTTPStatus.CONFLICT,
    NotRefundable: HTTPStatus.CONFLICT,
    RefundNotSupported: HTTPStatus.CONFLICT,
    NoOrder: HTTPStatus.CONFLICT,
    NotRequeueable: HTTPStatus.CONFLICT,
    PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    QPayUnavailable: HTTPStatus.BAD_GATEWAY,
    EventBusUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    StorageUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}


def status_for(error: PaymentError) -> HTTPStatus:
    for error_type in type(error).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type]  # type: ignore[index]
    return HTTPStatus.INTERNAL_SERVER_ERROR


def error_body(code: str, message: str, details: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": list(details)}}


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors without `input` and `ctx`, which may hold personal data."""
    details = []
    for error in errors:
        location = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        message = str(error.get("msg") or error.get("type", "invalid"))
        details.append({"loc": location, "msg": message, "type": str(error.get("type", "invalid"))})
    return details


def lambda_error_response(status: HTTPStatus, code: str, message: str) -> dict[str, Any]:
    """A ready API Gateway response, for answers given before the router runs."""
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(error_body(code, message)),
        "isBase64Encoded": False,
    }
