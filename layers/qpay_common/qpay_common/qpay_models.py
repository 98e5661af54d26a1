"""QPay's request and response shapes, read tolerantly (see shared/qpay/QPAY_API.md).

Rule from the API notes: accept every observed form when reading, send the majority form when
writing. Amounts arrive as numbers or strings like "50000.00"; row field names vary; the short URL
is camelCase; error codes sit in `error`, `message` or `error_code`.
"""

from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# A value above this is certainly an absolute epoch, never a duration in seconds.
EPOCH_THRESHOLD = 10**9
ONE_HOUR = 3600


def parse_amount(value: Any) -> int:
    """Whole MNT from 15000, 15000.0 or "15000.00"; fractions of a tugrik are dropped."""
    if isinstance(value, bool):
        raise ValueError("amount must be a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return int(amount.quantize(Decimal(1), rounding=ROUND_DOWN))


Amount = Annotated[int, BeforeValidator(parse_amount)]


def _amount_or_none(value: Any) -> int | None:
    """No amount (null, or an empty string) where QPay has none to give."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_amount(value)


OptionalAmount = Annotated[int | None, BeforeValidator(_amount_or_none)]


def expiry_epoch(expires_in: float, now: float) -> float:
    """QPay's `expires_in` is observed both as an absolute epoch and as a duration in seconds.

    A value greater than now + 1 h (or > 10^9) is an epoch; otherwise a duration from now.
    """
    if expires_in > EPOCH_THRESHOLD or expires_in > now + ONE_HOUR:
        return float(expires_in)
    return now + float(expires_in)


class _QPayModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TokenGrant(_QPayModel):
    access_token: str = Field(min_length=1)
    refresh_token: str | None = None
    expires_in: float
    refresh_expires_in: float | None = None

    def access_expires_at(self, now: float) -> float:
        return expiry_epoch(self.expires_in, now)

    def refresh_expires_at(self, now: float) -> float | None:
        if self.refresh_token is None or self.refresh_expires_in is None:
            return None
        return expiry_epoch(self.refresh_expires_in, now)


class Deeplink(_QPayModel):
    name: str = ""
    description: str = ""
    logo: str = ""
    link: str


class Invoice(_QPayModel):
    invoice_id: str = Field(min_length=1)
    qr_text: str = ""
    qr_image: str = ""
    short_url: str | None = Field(
        default=None, validation_alias=AliasChoices("qPay_shortUrl", "qpay_short_url", "short_url")
    )
    urls: list[Deeplink] = Field(default_factory=list)


class InvoiceRequest(_QPayModel):
    """The simple invoice form: the majority form in public integrations."""

    invoice_code: str
    sender_invoice_no: str = Field(max_length=45)
    invoice_receiver_code: str = "terminal"
    invoice_description: str = Field(max_length=255)
    amount: int = Field(gt=0)
    callback_url: str = Field(max_length=255)


PAID = "PAID"


class PaymentRow(_QPayModel):
    payment_id: str = Field(min_length=1)
    payment_status: str
    payment_amount: Amount
    payment_currency: str = "MNT"
    payment_date: str | None = None

    @property
    def is_paid(self) -> bool:
        return self.payment_status.upper() == PAID


# Payment statuses that mean the money went back to the payer: REFUND as well as REFUNDED is seen,
# and a card payment voided before settlement is CANCELLED.
RETURNED_STATUSES = frozenset({"REFUNDED", "REFUND", "CANCELLED", "CANCELED"})
CARD = "CARD"


class PaymentDetails(PaymentRow):
    """GET /payment/{id}, and a row of /payment/list: one payment and the object it paid. The
    fee and the payment type go by different names per endpoint."""

    payment_fee: OptionalAmount = Field(default=None, validation_alias=AliasChoices("payment_fee", "trx_fee"))
    payment_type: str | None = Field(
        default=None, validation_alias=AliasChoices("payment_type", "transaction_type", "paid_by")
    )
    payment_wallet: str | None = Field(
        default=None, validation_alias=AliasChoices("payment_wallet", "payemnt_wallet")
    )
    object_type: str | None = None
    object_id: str | None = None

    @property
    def is_card(self) -> bool:
        return (self.payment_type or "").upper() == CARD

    @property
    def is_returned(self) -> bool:
        return self.payment_status.upper() in RETURNED_STATUSES


class PaymentCheck(_QPayModel):
    count: int = 0
    paid_amount: Amount = 0
    rows: list[PaymentRow] = Field(default_factory=list)

    @property
    def paid_rows(self) -> list[PaymentRow]:
        return [row for row in self.rows if row.is_paid]

    @property
    def total_paid(self) -> int:
        # Summed from PAID rows: the top-level paid_amount is not trusted to exclude refunds.
        return sum(row.payment_amount for row in self.paid_rows)


class InvoiceDetails(_QPayModel):
    """GET /invoice/{id}. Amounts arrive as numbers or strings; unset limits are null."""

    invoice_id: str = Field(min_length=1)
    invoice_status: str = Field(min_length=1)
    sender_invoice_no: str | None = None
    total_amount: Amount
    gross_amount: OptionalAmount = None
    tax_amount: OptionalAmount = None
    discount_amount: OptionalAmount = None
    surcharge_amount: OptionalAmount = None
    minimum_amount: OptionalAmount = None
    maximum_amount: OptionalAmount = None
    callback_url: str | None = None
    payments: list[PaymentRow] = Field(default_factory=list)


class EbarimtReceipt(_QPayModel):
    id: str | None = None
    ebarimt_receipt_id: str | None = None
    ebarimt_qr_data: str | None = None
    ebarimt_lottery: str | None = None
    barimt_status: str | None = None


def error_code_of(body: Any) -> str | None:
    """QPay puts its error code in `error`, `error_code` or `message`, depending on the endpoint."""
    if not isinstance(body, dict):
        return None
    for key in ("error", "error_code", "message"):
        value = body.get(key)
        if isinstance(value, str) and value and value.replace("_", "").isalnum() and value.isupper():
            return value
    return None


# The rest of the merchant API: what the payment flow does not call, and operators and merchants'
# own apps do (full-form invoices, payment lists, card refunds and cancels, receipt cancels).


class InvoiceReceiver(_QPayModel):
    # QPay's field is `register` (the receiver's register number), a name pydantic models reserve.
    register_no: str | None = Field(default=None, validation_alias="register", serialization_alias="register")
    name: str | None = None
    email: str | None = None
    phone: str | None = None


class InvoiceAdjustment(_QPayModel):
    """A discount, surcharge or tax of an invoice line."""

    description: str | None = Field(default=None, max_length=100)
    amount: int = Field(ge=0)
    discount_code: str | None = None
    surcharge_code: str | None = None
    tax_code: str | None = None
    note: str | None = None


class InvoiceLine(_QPayModel):
    line_description: str = Field(min_length=1, max_length=255)
    line_quantity: int | str = 1
    line_unit_price: int = Field(ge=0)
    sender_product_code: str | None = None
    tax_product_code: str | None = None
    # Ebarimt 3.0 invoices classify every line.
    classification_code: str | None = None
    note: str | None = None
    discounts: list[InvoiceAdjustment] | None = None
    surcharges: list[InvoiceAdjustment] | None = None
    taxes: list[InvoiceAdjustment] | None = None


class FullInvoiceRequest(_QPayModel):
    """The full invoice form: lines (their total is the amount when `amount` is absent), receiver
    data, expiry, partial and exceeding payments, tax type, and the Ebarimt 3.0 fields (an invoice
    code QPay issues for it, `district_code`, `lines[].classification_code`). Sent without its
    unset fields (`to_body`)."""

    invoice_code: str = Field(min_length=1)
    sender_invoice_no: str = Field(min_length=1, max_length=45)
    invoice_receiver_code: str = "terminal"
    invoice_description: str = Field(min_length=1, max_length=255)
    callback_url: str = Field(max_length=255)
    amount: int | None = Field(default=None, gt=0)
    sender_branch_code: str | None = None
    invoice_receiver_data: InvoiceReceiver | None = None
    enable_expiry: bool | None = None
    expiry_date: str | None = None
    allow_partial: bool | None = None
    minimum_amount: int | None = Field(default=None, gt=0)
    allow_exceed: bool | None = None
    maximum_amount: int | None = Field(default=None, gt=0)
    note: str | None = Field(default=None, max_length=1000)
    tax_type: Literal["1", "2", "3"] | None = None
    district_code: str | None = None
    lines: list[InvoiceLine] | None = None

    @model_validator(mode="after")
    def _amount_or_lines(self) -> "FullInvoiceRequest":
        if self.amount is None and not self.lines:
            raise ValueError("an invoice needs an amount or lines")
        return self

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, by_alias=True)


class PaymentList(_QPayModel):
    """POST /payment/list."""

    count: int = 0
    rows: list[PaymentDetails] = Field(default_factory=list)
