"""QPay's request and response shapes, read tolerantly (see shared/qpay/QPAY_API.md).

Rule from the API notes: accept every observed form when reading, send the majority form when
writing. Amounts arrive as numbers or strings like "50000.00"; row field names vary; the short URL
is camelCase; error codes sit in `error`, `message` or `error_code`.
"""

from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

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
