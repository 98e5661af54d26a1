"""The HTTP contract's bodies (ARCHITECTURE.md section 3), validated by the handlers and used to
generate the OpenAPI document."""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from qpay_common.domain import PaymentSession, PaymentStatus
from qpay_common.settings import MAX_PAYMENT_AMOUNT

METADATA_MAX_BYTES = 4096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineItemIn(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]
    quantity: Annotated[StrictInt, Field(ge=1, le=100_000)]
    unit_price: Annotated[StrictInt, Field(ge=0, le=MAX_PAYMENT_AMOUNT)]


class EbarimtOverrides(_Strict):
    receiver_type: Literal["CITIZEN", "COMPANY"] | None = None
    # A phone number (CITIZEN) or company register number (COMPANY): personal data, never logged.
    receiver: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z\u0400-\u04FF]{1,20}$")] | None = None
    district_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] | None = None
    classification_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{7}$")] | None = None


class CreatePaymentRequest(_Strict):
    amount: Annotated[StrictInt, Field(ge=1, le=MAX_PAYMENT_AMOUNT, description="Whole MNT")]
    description: Annotated[str, StringConstraints(max_length=255)] | None = None
    items: list[LineItemIn] | None = Field(default=None, max_length=100)
    ebarimt: EbarimtOverrides | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="At most 4 KB of JSON")

    @model_validator(mode="after")
    def _check_totals(self) -> "CreatePaymentRequest":
        if self.items is not None:
            total = sum(item.quantity * item.unit_price for item in self.items)
            if total != self.amount:
                raise ValueError(f"items sum to {total}, not to amount {self.amount}")
        if self.metadata is not None:
            size = len(json.dumps(self.metadata, ensure_ascii=False).encode())
            if size > METADATA_MAX_BYTES:
                raise ValueError(f"metadata is {size} bytes of JSON; at most {METADATA_MAX_BYTES}")
        return self


class DeeplinkOut(BaseModel):
    name: str = ""
    description: str = ""
    logo: str = ""
    link: str


class PaymentCreated(BaseModel):
    session_id: str
    status: str
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
            status=session.status.value,
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
    status: str
    receipt_id: str | None = None
    qr_data: str | None = None


class PaymentView(BaseModel):
    session_id: str
    status: str
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
            status=session.status.value,
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
            ebarimt=EbarimtView(
                status=session.ebarimt_status or "NONE",
                receipt_id=session.ebarimt_receipt_id,
                qr_data=session.ebarimt_qr_data,
            ),
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
        404: "Unknown, or not the caller's",
        409: "Conflicts with the session's state or an earlier request",
        413: "Body over 64 KB",
        415: "Body is not JSON",
        500: "Internal error",
        502: "QPay unavailable",
    }
    return {
        status: {
            "description": descriptions[status],
            "content": {"application/json": {"model": ErrorResponse}},
        }
        for status in statuses
    }
