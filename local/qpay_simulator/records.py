"""What the simulated QPay merchant remembers: invoices, payments and e-receipts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
# Captured answers show a fee of 1.00 on a payment of 100.00, for P2P and card payments alike
# (techpartners-asia/qpay-go `response_shape_test.go`, quoting QPay's published examples).
FEE_RATE = Decimal("0.01")
# The recorded P2P payment names its wallet by id; the recorded card row says "qPay wallet".
WALLET_ID = "0fc9b71c-cd87-4ffd-9cac-2279ebd9deb0"


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class InvoiceTerms:
    """The money side of an invoice: its total, how the lines make it up, and its payment limits."""

    total: Decimal
    gross: Decimal
    discount: Decimal
    surcharge: Decimal
    tax: Decimal
    lines: list[dict[str, Any]]
    transactions: list[dict[str, Any]]
    allow_partial: bool = False
    minimum_amount: Decimal | None = None
    allow_exceed: bool = False
    maximum_amount: Decimal | None = None
    # An explicit `false` is enforced; a simple invoice that never mentions the flags lets the
    # control API record any amount, so merchants can test their under- and over-payment handling.
    partial_stated: bool = False
    exceed_stated: bool = False
    enable_expiry: bool = False
    expiry_date: str | None = None
    expires_at: datetime | None = None


@dataclass
class Invoice:
    invoice_id: str
    invoice_code: str
    sender_invoice_no: str
    invoice_receiver_code: str
    invoice_description: str
    terms: InvoiceTerms
    callback_url: str
    qr_text: str
    short_url: str
    created_at: datetime
    sender_branch_code: str | None = None
    # Full-form fields QPay shows back on GET /invoice/{id} (sender data, due date, note, ...).
    shown_back: dict[str, Any] = field(default_factory=dict)
    tax_type: str = "1"
    district_code: str | None = None
    is_ebarimt: bool = False
    status: str = "OPEN"
    payment_ids: list[str] = field(default_factory=list)

    @property
    def amount(self) -> Decimal:
        return self.terms.total


@dataclass
class Payment:
    payment_id: str
    invoice_id: str
    amount: Decimal
    payment_type: str
    paid_at: datetime
    status: str = "PAID"
    status_changed_at: datetime | None = None

    @property
    def wallet(self) -> str:
        return WALLET_ID if self.payment_type == "P2P" else "qPay wallet"

    @property
    def fee(self) -> Decimal:
        return cents(self.amount * FEE_RATE)


@dataclass
class Receipt:
    """An Ebarimt 3.0 e-receipt for one payment."""

    id: str
    payment_id: str
    invoice_id: str
    paid_by: str
    receiver_type: str
    receiver: str | None
    district_code: str
    classification_code: str | None
    tax_type: str
    amount: Decimal
    vat_amount: Decimal
    city_tax_amount: Decimal
    qr_data: str
    lottery: str
    receipt_id: str | None
    created_at: datetime
    status: str = "REGISTERED"
    status_at: datetime | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    histories: list[dict[str, Any]] = field(default_factory=list)
