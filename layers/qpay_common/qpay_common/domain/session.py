"""The payment session, its order and its statuses. The allowed transitions between statuses, and
which scheduled jobs watch each one, are in state_machine.py."""

import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PaymentStatus(StrEnum):
    # Written before the QPay invoice exists; never shown to clients, deleted (or purged by TTL)
    # if the invoice cannot be created, so no PENDING session lacks an invoice.
    CREATING = "CREATING"
    PENDING = "PENDING"
    PAID = "PAID"
    PROCESSED = "PROCESSED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    # A card payment returned to the customer through QPay's refund endpoint (admin refund).
    REFUNDED = "REFUNDED"


AMOUNT_MISMATCH = "AMOUNT_MISMATCH"


class EbarimtStatus(StrEnum):
    PENDING = "PENDING"
    REGISTERED = "REGISTERED"
    # The last attempt failed in a way another can fix (network, 5xx, 429, "try again"): retried.
    ERROR = "ERROR"
    # QPay refused the request for good (settings/qpay_codes: a validation code): not retried
    # until an operator re-queues it, perhaps with other receiver data.
    REJECTED = "REJECTED"
    # Still failing when its retry window (EBARIMT_MAX_AGE_HOURS) closed: an operator re-queues it.
    GAVE_UP = "GAVE_UP"
    SKIPPED = "SKIPPED"
    # The session was refunded: its receipt is being cancelled, was cancelled, or could not be.
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    CANCEL_FAILED = "CANCEL_FAILED"


# How a view names the receipt state of a session that has none yet (not PROCESSED so far).
NO_RECEIPT = "NONE"
ReceiptState = EbarimtStatus | Literal["NONE"]

# Receipt states in which QPay may hold a receipt for the payment (a registration may have
# landed although its answer was lost): a refund asks QPay to cancel it.
RECEIPT_MAY_EXIST = frozenset(
    {EbarimtStatus.PENDING, EbarimtStatus.REGISTERED, EbarimtStatus.ERROR, EbarimtStatus.GAVE_UP}
)
# Receipt states an operator may queue again (POST /admin/payments/{id}/ebarimt).
REQUEUEABLE = frozenset({EbarimtStatus.ERROR, EbarimtStatus.REJECTED, EbarimtStatus.GAVE_UP})


CURRENCY = "MNT"


def iso(moment: datetime) -> str:
    """Millisecond ISO-8601 in UTC with a Z: sorts as text, which the by_user index relies on."""
    utc = moment.astimezone(UTC)
    # The year padded to four digits by hand: strftime's %Y gives "485" for 485, which sorts after "2026".
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


# 35 characters: fits QPay's 45-character sender_invoice_no, unguessable.
SESSION_ID_PATTERN = r"^ps_[0-9a-f]{32}$"


def new_session_id() -> str:
    return "ps_" + secrets.token_hex(16)


def order_id_for(session_id: str) -> str:
    """Deterministic, so every retry of one fulfilment names the same order."""
    return "ord_" + session_id.removeprefix("ps_")


def purge_epoch(moment: datetime, days: int) -> int:
    return int((moment + timedelta(days=days)).timestamp())


class LineItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    quantity: int
    unit_price: int


class Refund(BaseModel):
    """An operator's refund of a session: who asked, when, why, and how far it got."""

    model_config = ConfigDict(frozen=True)

    requested_by: str
    requested_at: str
    note: str
    payment_ids: list[str]
    amount: int
    refunded_at: str | None = None
    # When PaymentRefunded was put on the bus; None while it still has to be.
    published_at: str | None = None


class PaymentSession(BaseModel):
    """A payment session as stored; the session store returns these, never raw items."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    user_id: str
    status: PaymentStatus
    version: int = 0
    amount: int
    paid_amount: int = 0
    currency: str = CURRENCY
    description: str | None = None
    items: list[LineItem] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    ebarimt_overrides: dict[str, Any] | None = None
    invoice_id: str | None = None
    qr_text: str | None = None
    qr_image: str | None = None
    short_url: str | None = None
    deeplinks: list[dict[str, Any]] = Field(default_factory=list)
    payment_ids: list[str] = Field(default_factory=list)
    order_id: str | None = None
    created_at: str
    updated_at: str
    expires_at: str | None = None
    paid_at: str | None = None
    cancelled_at: str | None = None
    expired_at: str | None = None
    processed_at: str | None = None
    # Paid after it was cancelled or expired (honoured by policy A).
    late_payment: bool | None = None
    failure_reason: str | None = None
    # When QPay confirmed the invoice cancelled (no payment can arrive after it).
    invoice_cancelled_at: str | None = None
    refund: Refund | None = None
    purge_at: int | None = None
    emit_lease_until: float | None = None
    reconcile_shard: str | None = None
    next_check_at: int | None = None
    reconcile_checks: int | None = None
    grace_until: int | None = None
    pending_shard: str | None = None
    ebarimt_shard: str | None = None
    ebarimt_next_at: int | None = None
    ebarimt_status: str | None = None
    ebarimt_receipt_id: str | None = None
    ebarimt_qr_data: str | None = None
    ebarimt_lottery: str | None = None
    ebarimt_attempts: int | None = None
    ebarimt_last_error: str | None = None
    # When the receipt was (last) queued: its retry window runs EBARIMT_MAX_AGE_HOURS from here.
    ebarimt_queued_at: str | None = None
    ebarimt_registered_at: str | None = None
    # As QPay answered them (decimal text: VAT is 1/11 of the amount, not whole MNT).
    ebarimt_vat_amount: str | None = None
    ebarimt_city_tax_amount: str | None = None
    # QPay's whole answer, with the receiver's identifying fields removed.
    ebarimt_answer: dict[str, Any] | None = None


class Order(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    session_id: str
    user_id: str
    amount: int
    paid_amount: int
    currency: str
    payment_ids: list[str]
    items: list[LineItem] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    created_at: str
