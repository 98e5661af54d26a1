"""The operators' API bodies (/admin/...), validated by the admin handler and documented in the
OpenAPI document. No view carries the Ebarimt receiver (personal data), the QR image or a token."""

from datetime import UTC, datetime, time
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from qpay_common.domain.listing import LISTED_STATUSES
from qpay_common.domain.payment_request import EbarimtOverrides
from qpay_common.domain.session import (
    NO_RECEIPT,
    EbarimtStatus,
    Order,
    PaymentSession,
    PaymentStatus,
    ReceiptState,
    Refund,
)
from qpay_common.usecases.admin import Inspection, QPayLiveView
from qpay_common.usecases.admin_reports import Summary


def _moment(value: Any, *, end_of_day: bool) -> Any:
    """ISO 8601 with or without an offset (naive is UTC), or a date: its start, or for `to` its end."""
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "expected an ISO 8601 date or date-time, e.g. 2026-12-01T08:00:00+08:00"
            ) from None
        if len(text) == 10 and end_of_day:
            moment = datetime.combine(moment.date(), time.max)
        if not moment.tzinfo:
            return moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            # Past the calendar's end in UTC (9999-12-31T23:00-05:00): as far as a bound can go.
            return datetime.min.replace(tzinfo=UTC) if moment.year == 1 else datetime.max.replace(tzinfo=UTC)
    return value


StartMoment = Annotated[datetime, BeforeValidator(lambda value: _moment(value, end_of_day=False))]
EndMoment = Annotated[datetime, BeforeValidator(lambda value: _moment(value, end_of_day=True))]


# The statuses an operator may list by (never CREATING), as the `status` query's pattern.
STATUS_PATTERN = "^(" + "|".join(status.value for status in LISTED_STATUSES) + ")$"


def listed_status(value: str | None) -> PaymentStatus | None:
    """The `status` query (already matched against STATUS_PATTERN) as a status."""
    return PaymentStatus(value) if value else None


EBARIMT_STATUS_PATTERN = "^(" + "|".join(status.value for status in EbarimtStatus) + ")$"


def listed_ebarimt_status(value: str | None) -> EbarimtStatus | None:
    """The `ebarimt_status` query (already matched against EBARIMT_STATUS_PATTERN)."""
    return EbarimtStatus(value) if value else None


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    note: Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)] = Field(
        description="Why: kept with the refund and sent on PaymentRefunded"
    )
    payment_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="If given, must be this session's payment (a guard against a wrong id)"
    )


class AdminPaymentItem(BaseModel):
    """A session in a listing: only fields the by_status index projects (tables.BY_STATUS_PROJECTED)."""

    session_id: str
    user_id: str
    status: PaymentStatus
    amount: int
    paid_amount: int
    currency: str
    description: str | None
    invoice_id: str | None
    order_id: str | None
    payment_ids: list[str]
    created_at: str
    updated_at: str
    expires_at: str | None
    paid_at: str | None
    cancelled_at: str | None
    expired_at: str | None
    processed_at: str | None
    late_payment: bool
    failure_reason: str | None
    ebarimt_status: EbarimtStatus | None
    refunded_at: str | None

    @classmethod
    def from_session(cls, session: PaymentSession) -> "AdminPaymentItem":
        values = {name: getattr(session, name, None) for name in AdminPaymentItem.model_fields}
        values.update(
            late_payment=bool(session.late_payment),
            refunded_at=session.refund.refunded_at if session.refund else None,
        )
        return cls(**values)


class AdminPaymentList(BaseModel):
    items: list[AdminPaymentItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class AdminEbarimtView(BaseModel):
    """A session's receipt as operators see it: never `receiver` (a phone or register number)."""

    status: ReceiptState
    receipt_id: str | None = None
    lottery: str | None = None
    qr_data: str | None = None
    vat_amount: str | None = Field(default=None, description="As QPay stated it (decimal text)")
    city_tax_amount: str | None = Field(default=None, description="As QPay stated it (decimal text)")
    registered_at: str | None = None
    queued_at: str | None = Field(
        default=None, description="When it was last queued: retries go on EBARIMT_MAX_AGE_HOURS from here"
    )
    next_attempt_at: int | None = Field(default=None, description="Epoch seconds; null unless queued")
    attempts: int = 0
    last_error: str | None = None
    receiver_type: str | None = None
    district_code: str | None = None
    classification_code: str | None = None

    @classmethod
    def from_session(cls, session: PaymentSession) -> "AdminEbarimtView":
        overrides = session.ebarimt_overrides or {}
        return cls(
            status=session.ebarimt_status or NO_RECEIPT,
            receipt_id=session.ebarimt_receipt_id,
            lottery=session.ebarimt_lottery,
            qr_data=session.ebarimt_qr_data,
            vat_amount=session.ebarimt_vat_amount,
            city_tax_amount=session.ebarimt_city_tax_amount,
            registered_at=session.ebarimt_registered_at,
            queued_at=session.ebarimt_queued_at,
            next_attempt_at=session.ebarimt_next_at if session.ebarimt_shard else None,
            attempts=session.ebarimt_attempts or 0,
            last_error=session.ebarimt_last_error,
            receiver_type=overrides.get("receiver_type"),
            district_code=overrides.get("district_code"),
            classification_code=overrides.get("classification_code"),
        )


class EbarimtRequeueRequest(EbarimtOverrides):
    """`POST /admin/payments/{id}/ebarimt`: all optional; what is given replaces this session's
    receiver type, receiver, district or classification for the attempts to come."""


class EbarimtRequeueResult(BaseModel):
    session_id: str
    ebarimt: AdminEbarimtView


class RefundView(BaseModel):
    requested_by: str
    requested_at: str
    note: str
    payment_ids: list[str]
    amount: int
    refunded_at: str | None
    published_at: str | None

    @classmethod
    def from_refund(cls, refund: Refund) -> "RefundView":
        return cls.model_validate(refund.model_dump())


class ReconcileView(BaseModel):
    next_check_at: int | None
    checks: int | None
    grace_until: int | None


class AdminSessionView(AdminPaymentItem):
    items: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    short_url: str | None
    ebarimt: AdminEbarimtView
    refund: RefundView | None
    reconcile: ReconcileView | None = Field(description="Present while the reconcile job watches it")

    @classmethod
    def from_session(cls, session: PaymentSession) -> "AdminSessionView":
        return cls(
            **AdminPaymentItem.from_session(session).model_dump(),
            items=[item.model_dump() for item in session.items],
            metadata=session.metadata,
            short_url=session.short_url,
            ebarimt=AdminEbarimtView.from_session(session),
            refund=RefundView.from_refund(session.refund) if session.refund else None,
            reconcile=ReconcileView(
                next_check_at=session.next_check_at,
                checks=session.reconcile_checks,
                grace_until=session.grace_until,
            )
            if session.reconcile_shard
            else None,
        )


class QPayPaymentView(BaseModel):
    payment_id: str
    status: str
    amount: int | None = Field(description="None on attempt rows (NEW, FAILED) that carry none")
    fee: int | None = None
    currency: str | None = None
    date: str | None = None
    type: str | None = Field(default=None, description="CARD, P2P, ...: only CARD can be refunded by API")


class QPayInvoiceView(BaseModel):
    invoice_id: str
    status: str
    total_amount: int
    sender_invoice_no: str | None


class QPayCheckView(BaseModel):
    count: int
    paid_total: int = Field(description="Sum of the PAID rows: the proof of payment")
    rows: list[QPayPaymentView]


class QPayView(BaseModel):
    available: bool = Field(description="False if any QPay call failed (see errors); the rest is shown")
    errors: list[str]
    invoice: QPayInvoiceView | None
    check: QPayCheckView | None
    payments: list[QPayPaymentView]

    @classmethod
    def from_live(cls, live: QPayLiveView) -> "QPayView":
        invoice = live.invoice
        check = live.check
        return cls(
            available=not live.errors,
            errors=live.errors,
            invoice=QPayInvoiceView(
                invoice_id=invoice.invoice_id,
                status=invoice.invoice_status,
                total_amount=invoice.total_amount,
                sender_invoice_no=invoice.sender_invoice_no,
            )
            if invoice
            else None,
            check=QPayCheckView(
                count=check.count,
                paid_total=check.total_paid,
                rows=[
                    QPayPaymentView(
                        payment_id=row.payment_id, status=row.payment_status, amount=row.payment_amount
                    )
                    for row in check.rows
                ],
            )
            if check
            else None,
            payments=[
                QPayPaymentView(
                    payment_id=payment.payment_id,
                    status=payment.payment_status,
                    amount=payment.payment_amount,
                    fee=payment.payment_fee,
                    currency=payment.payment_currency,
                    date=payment.payment_date,
                    type=payment.payment_type,
                )
                for payment in live.payments
            ],
        )


class OrderView(BaseModel):
    order_id: str
    amount: int
    paid_amount: int
    currency: str
    payment_ids: list[str]
    created_at: str

    @classmethod
    def from_order(cls, order: Order) -> "OrderView":
        return cls(**{name: getattr(order, name) for name in cls.model_fields})


class AdminPaymentDetail(BaseModel):
    session: AdminSessionView
    order: OrderView | None
    qpay: QPayView

    @classmethod
    def from_inspection(cls, inspection: Inspection) -> "AdminPaymentDetail":
        return cls(
            session=AdminSessionView.from_session(inspection.session),
            order=OrderView.from_order(inspection.order) if inspection.order else None,
            qpay=QPayView.from_live(inspection.qpay),
        )


class RepublishResult(BaseModel):
    session_id: str
    order_id: str | None
    published: list[str] = Field(description="The events put on the bus, in order")


class StatusTotalsView(BaseModel):
    count: int
    amount: int
    paid_amount: int


class AdminSummaryView(BaseModel):
    created_from: str
    created_to: str
    sessions: int
    by_status: dict[str, StatusTotalsView]
    cancelled: int = Field(description="Sessions ever cancelled (some were paid late after all)")
    expired: int = Field(description="Sessions ever expired")
    paid: int
    late_payments: int = Field(description="Paid after being cancelled or expired (honoured)")
    cancellation_rate: float
    expiry_rate: float
    late_payment_rate: float = Field(description="Late payments among paid sessions")
    refunded_amount: int
    ebarimt: dict[str, int] = Field(description="Sessions by Ebarimt receipt status")
    complete: bool = Field(description="False if the window held more sessions than one summary reads")

    @classmethod
    def from_summary(cls, summary: Summary) -> "AdminSummaryView":
        return cls(
            created_from=summary.created_from,
            created_to=summary.created_to,
            sessions=summary.sessions,
            by_status={
                status: StatusTotalsView(count=t.count, amount=t.amount, paid_amount=t.paid_amount)
                for status, t in summary.by_status.items()
            },
            cancelled=summary.cancelled,
            expired=summary.expired,
            paid=summary.paid,
            late_payments=summary.late_payments,
            cancellation_rate=summary.cancellation_rate,
            expiry_rate=summary.expiry_rate,
            late_payment_rate=summary.late_payment_rate,
            refunded_amount=summary.refunded_amount,
            ebarimt=dict(summary.ebarimt),
            complete=summary.complete,
        )
