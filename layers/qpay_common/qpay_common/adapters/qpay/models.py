"""QPay's request and response shapes, read tolerantly (see shared/qpay/QPAY_API.md).

Rule from the API notes: accept every observed form when reading, send the majority form when
writing. Amounts arrive as numbers, strings like "50000.00" or null where there is none; ids as
strings or numbers; row field names vary and extra fields come and go; the short URL is camelCase;
error codes sit in `error`, `code`, `error_code` or `message`. A model refuses only what makes an
answer meaningless (no invoice id, a PAID payment without its amount, a check without rows); the
client turns that into a typed error instead of believing half an answer.
"""

from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Self

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


def _amount_or_none(value: Any) -> int | None:
    """No amount (null, or an empty string) where QPay has none to give: attempt rows, unpaid checks."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_amount(value)


def _identifier(value: Any) -> Any:
    """Ids are strings, and from some endpoints JSON numbers (15-digit P2P payment ids)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _identifier_or_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _identifier(value)


def _empty_text_if_null(value: Any) -> Any:
    return "" if value is None else value


def _empty_if_null(value: Any) -> Any:
    return [] if value is None else value


def _zero_if_null(value: Any) -> Any:
    return 0 if value is None else value


Amount = Annotated[int, BeforeValidator(parse_amount)]
OptionalAmount = Annotated[int | None, BeforeValidator(_amount_or_none)]
Identifier = Annotated[str, BeforeValidator(_identifier), Field(min_length=1)]
OptionalIdentifier = Annotated[str | None, BeforeValidator(_identifier_or_none)]
Text = Annotated[str, BeforeValidator(_empty_text_if_null)]


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
    name: Text = ""
    description: Text = ""
    logo: Text = ""
    link: str = Field(min_length=1)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _usable_deeplinks(value: Any) -> list[Any]:
    """A bank entry without a link cannot be tapped: it is dropped, never a reason to lose the invoice."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict) and _is_text(entry.get("link"))]


class Invoice(_QPayModel):
    """POST /invoice. The invoice exists at QPay once it answers: only its id is indispensable."""

    invoice_id: Identifier
    qr_text: Text = ""
    qr_image: Text = ""
    short_url: str | None = Field(
        default=None, validation_alias=AliasChoices("qPay_shortUrl", "qpay_short_url", "short_url")
    )
    urls: Annotated[list[Deeplink], BeforeValidator(_usable_deeplinks)] = Field(default_factory=list)


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
    """One payment of an invoice (payment/check rows, the invoice's payments). Attempt rows (NEW,
    FAILED) may carry no amount; a PAID row is money in, and meaningless without its amount."""

    payment_id: Identifier
    payment_status: str = Field(min_length=1)
    payment_amount: OptionalAmount = None
    payment_currency: str | None = None
    payment_date: str | None = None

    @property
    def is_paid(self) -> bool:
        return self.payment_status.upper() == PAID

    @model_validator(mode="after")
    def _money_in_states_its_amount(self) -> Self:
        if self.is_paid and self.payment_amount is None:
            raise ValueError("a PAID payment must state its payment_amount")
        return self


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
    object_id: OptionalIdentifier = None

    @property
    def is_card(self) -> bool:
        return (self.payment_type or "").upper() == CARD

    @property
    def is_returned(self) -> bool:
        return self.payment_status.upper() in RETURNED_STATUSES


class PaymentCheck(_QPayModel):
    """POST /payment/check. `rows` is required: every source answers "nothing paid yet" with an
    empty list, so an answer without it says nothing about the invoice."""

    count: Annotated[int, BeforeValidator(_zero_if_null)] = 0
    # null when nothing is paid; never used for money (the PAID rows are summed instead).
    paid_amount: OptionalAmount = None
    rows: list[PaymentRow]

    @property
    def paid_rows(self) -> list[PaymentRow]:
        return [row for row in self.rows if row.is_paid]

    @property
    def total_paid(self) -> int:
        # Summed from PAID rows: the top-level paid_amount is not trusted to exclude refunds.
        return sum(row.payment_amount for row in self.paid_rows if row.payment_amount is not None)


class InvoiceDetails(_QPayModel):
    """GET /invoice/{id}. Amounts arrive as numbers or strings; unset limits are null."""

    invoice_id: Identifier
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
    payments: Annotated[list[PaymentRow], BeforeValidator(_empty_if_null)] = Field(default_factory=list)


REGISTERED = "REGISTERED"
# Our own reasons (not QPay error codes) for an Ebarimt answer that is not a registered receipt.
NO_BARIMT_STATUS = "BARIMT_STATUS_MISSING"
NO_RECEIPT_ID = "EBARIMT_RECEIPT_ID_MISSING"


def _tax_amount(value: Any) -> str | None:
    """VAT and city tax as QPay states them, as decimal text ("909.09"): VAT is a fraction of the
    amount, so, unlike every amount we charge, it is not whole MNT."""
    if value is None or (isinstance(value, str) and not value.strip()) or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None  # a receipt stands without its tax breakdown; never refuse it for that
    return f"{amount:.2f}" if amount.is_finite() else None


TaxAmount = Annotated[str | None, BeforeValidator(_tax_amount)]

# Fields of an Ebarimt answer that identify the receiver (a phone number, a register number, an
# e-mail, a wallet customer): personal data, never stored with the answer nor logged.
EBARIMT_RECEIVER_FIELDS = frozenset(
    {
        "ebarimt_receiver",
        "ebarimt_receiver_phone",
        "ebarimt_register_no",
        "ebarimt_sent_email",
        "g_wallet_customer_id",
    }
)


def without_receiver(value: Any) -> Any:
    """`value` with every receiver field removed, at any depth (the histories repeat them)."""
    if isinstance(value, dict):
        return {
            key: without_receiver(item) for key, item in value.items() if key not in EBARIMT_RECEIVER_FIELDS
        }
    if isinstance(value, list):
        return [without_receiver(item) for item in value]
    return value


class EbarimtReceipt(_QPayModel):
    id: OptionalIdentifier = None
    ebarimt_receipt_id: OptionalIdentifier = None
    ebarimt_qr_data: str | None = None
    ebarimt_lottery: str | None = None
    vat_amount: TaxAmount = None
    city_tax_amount: TaxAmount = None
    # QPay's whole answer without the receiver (without_receiver), kept with the session.
    answer: dict[str, Any] = Field(default_factory=dict, exclude=True)
    # The legacy /ebarimt/create answers with the older name as well (qpay-client reads only it).
    barimt_status: str | None = Field(
        default=None, validation_alias=AliasChoices("barimt_status", "ebarimt_status")
    )

    def not_registered_reason(self) -> str | None:
        """None when this answer is a registered receipt, else why not. A 200 is not a receipt:
        only `barimt_status` REGISTERED with a receipt id is one (`{}`, CREATED, ... are not)."""
        if not self.barimt_status:
            return NO_BARIMT_STATUS
        status = self.barimt_status.strip().upper()
        if status != REGISTERED:
            return f"BARIMT_STATUS_{status}"
        if not self.ebarimt_receipt_id:
            return NO_RECEIPT_ID
        return None


QPAY_ERROR_FIELDS = ("error", "code", "error_code", "message")


def error_code_of(body: Any) -> str | None:
    """QPay puts its error code in `error`, `code`, `error_code` or `message`, depending on the
    endpoint and the source; a human sentence in any of them is not a code."""
    if not isinstance(body, dict):
        return None
    for key in QPAY_ERROR_FIELDS:
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
