"""The HTTP contract's bodies (ARCHITECTURE.md section 3), validated by the handlers and used to
generate the OpenAPI document."""

from typing import Any

from pydantic import BaseModel, Field

from qpay_common.domain.errors import InvalidCursor, InvertedWindow
from qpay_common.domain.payment_request import ITEMS_TOTAL_MISMATCH, METADATA_TOO_LARGE
from qpay_common.domain.session import NO_RECEIPT, PaymentSession, PaymentStatus, ReceiptState

# Error types of rules that span fields, which no JSON Schema can state; clients (and the
# contract tests) tell them apart by `details[].type`.
CROSS_FIELD_RULES = frozenset(
    {ITEMS_TOTAL_MISMATCH, METADATA_TOO_LARGE, InvalidCursor.detail_type, InvertedWindow.detail_type}
)


class DeeplinkOut(BaseModel):
    name: str = ""
    description: str = ""
    logo: str = ""
    link: str


class PaymentCreated(BaseModel):
    session_id: str
    status: PaymentStatus
    amount: int
    currency: str
    invoice_id: str
    qr_text: str
    qr_image: str = Field(description="Base64 PNG")
    short_url: str | None
    deeplinks: list[DeeplinkOut]
    created_at: str
    expires_at: str | None

    @classmethod
    def from_session(cls, session: PaymentSession) -> "PaymentCreated":
        return cls(
            session_id=session.session_id,
            status=session.status,
            amount=session.amount,
            currency=session.currency,
            invoice_id=session.invoice_id or "",
            qr_text=session.qr_text or "",
            qr_image=session.qr_image or "",
            short_url=session.short_url,
            deeplinks=[DeeplinkOut.model_validate(link) for link in session.deeplinks],
            created_at=session.created_at,
            expires_at=session.expires_at,
        )


class EbarimtView(BaseModel):
    """The shopper's e-receipt: what the e-barimt app scans (`qr_data`) and the lottery number.
    Never the receiver (a phone or register number)."""

    status: ReceiptState
    receipt_id: str | None = None
    lottery: str | None = Field(
        default=None,
        description="The receipt's lottery number, e.g. `HV 83198235` (null in `GET /payments` listings)",
    )
    qr_data: str | None = Field(default=None, description="The receipt's QR payload, for the e-barimt app")
    registered_at: str | None = Field(default=None, description="null in `GET /payments` listings")

    @classmethod
    def from_session(cls, session: PaymentSession) -> "EbarimtView":
        return cls(
            status=session.ebarimt_status or NO_RECEIPT,
            receipt_id=session.ebarimt_receipt_id,
            lottery=session.ebarimt_lottery,
            qr_data=session.ebarimt_qr_data,
            registered_at=session.ebarimt_registered_at,
        )


class PaymentView(BaseModel):
    session_id: str
    status: PaymentStatus
    amount: int
    paid_amount: int
    currency: str
    description: str | None = None
    created_at: str
    expires_at: str | None
    paid_at: str | None
    cancelled_at: str | None
    order_id: str | None
    failure_reason: str | None = None
    ebarimt: EbarimtView

    @classmethod
    def from_session(cls, session: PaymentSession) -> "PaymentView":
        # The Ebarimt receiver is personal data: it is stored, never returned.
        return cls(
            session_id=session.session_id,
            status=session.status,
            amount=session.amount,
            paid_amount=session.paid_amount,
            currency=session.currency,
            description=session.description,
            created_at=session.created_at,
            expires_at=session.expires_at,
            paid_at=session.paid_at,
            cancelled_at=session.cancelled_at,
            order_id=session.order_id,
            failure_reason=session.failure_reason,
            ebarimt=EbarimtView.from_session(session),
        )


class PaymentWithQr(PaymentView):
    """`GET /payments/{id}?include=qr`: also what the customer pays with, while the session is
    PENDING (null afterwards, so a closed session's QR is not shown again)."""

    qr_text: str | None = None
    qr_image: str | None = Field(default=None, description="Base64 PNG")
    short_url: str | None = None
    deeplinks: list[DeeplinkOut] | None = None

    @classmethod
    def from_session(cls, session: PaymentSession) -> "PaymentWithQr":
        view = PaymentView.from_session(session).model_dump()
        if session.status != PaymentStatus.PENDING:
            return cls(**view)
        return cls(
            **view,
            qr_text=session.qr_text,
            qr_image=session.qr_image,
            short_url=session.short_url,
            deeplinks=[DeeplinkOut.model_validate(link) for link in session.deeplinks],
        )


class PaymentList(BaseModel):
    items: list[PaymentView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorInfo


def error_responses(*statuses: int) -> dict[int, dict[str, Any]]:
    """OpenAPI entries for the error answers a route can give, all in the contract's shape."""
    descriptions = {
        400: "Invalid input",
        401: "Missing or invalid credentials",
        403: "The token lacks the scope this route needs",
        404: "Unknown, or not the caller's",
        409: "Conflicts with the session's state or an earlier request",
        413: "Body over 64 KB",
        415: "Body is not JSON",
        500: "Internal error",
        502: "QPay unavailable",
        503: "Storage (SERVICE_UNAVAILABLE) or the event bus (EVENT_BUS_UNAVAILABLE) is busy for a "
        "moment; repeat the request (Retry-After)",
    }
    return {
        status: {
            "description": descriptions[status],
            "content": {"application/json": {"model": ErrorResponse}},
        }
        for status in statuses
    }
