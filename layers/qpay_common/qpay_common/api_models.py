"""The HTTP contract's bodies (ARCHITECTURE.md section 3), validated by the handlers and used to
generate the OpenAPI document."""

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from qpay_common.domain import PaymentSession, PaymentStatus
from qpay_common.errors import InvalidCursor
from qpay_common.settings import MAX_PAYMENT_AMOUNT

METADATA_MAX_BYTES = 4096
# Levels of objects and arrays, metadata itself included: enough for {"cart": {"lines": [{...}]}}.
METADATA_MAX_DEPTH = 4
# Numbers any consumer of the PaymentCompleted event (JavaScript included) holds exactly.
METADATA_MAX_NUMBER = 2**53 - 1

# Error types of rules that span fields, which no JSON Schema can state; clients (and the
# contract tests) tell them apart by `details[].type`.
ITEMS_TOTAL_MISMATCH = "items_total_mismatch"
METADATA_TOO_LARGE = "metadata_too_large"
CURSOR_NOT_ISSUED = InvalidCursor.detail_type
CROSS_FIELD_RULES = frozenset({ITEMS_TOTAL_MISMATCH, METADATA_TOO_LARGE, CURSOR_NOT_ISSUED})


def _metadata_value_schema(levels: int) -> dict[str, Any]:
    scalar = {
        "anyOf": [
            {"type": "string"},
            {"type": "number", "minimum": -METADATA_MAX_NUMBER, "maximum": METADATA_MAX_NUMBER},
            {"type": "boolean"},
            {"type": "null"},
        ]
    }
    if levels == 0:
        return scalar
    inner = _metadata_value_schema(levels - 1)
    return {
        "anyOf": [
            *scalar["anyOf"],
            {"type": "array", "items": inner},
            {"type": "object", "additionalProperties": inner},
        ]
    }


METADATA_SCHEMA = {
    "type": "object",
    "additionalProperties": _metadata_value_schema(METADATA_MAX_DEPTH - 1),
    "description": (
        f"Returned on the order and the PaymentCompleted event. At most {METADATA_MAX_BYTES} bytes as "
        f"UTF-8 JSON (a rule across all of its fields: 400 `{METADATA_TOO_LARGE}`), "
        f"{METADATA_MAX_DEPTH} levels of objects and arrays, numbers within ±(2^53 - 1)."
    ),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _whole_float_as_int(value: Any) -> Any:
    # JSON Schema's "integer" includes 765.0 (JSON has one number type): accept it as 765, while
    # 765.5, "765" and true stay refused by StrictInt.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema means it: no strings, no booleans, no fractions. Placed after the
# bounds in Annotated[...], so they stay on the integer (and in the schema as minimum/maximum).
WHOLE_NUMBER = BeforeValidator(_whole_float_as_int)


class LineItemIn(_Strict):
    # Not blank; kept as given (no stripping), so what the schema allows is exactly what is accepted.
    name: Annotated[str, StringConstraints(max_length=255, pattern=r"[^ \t\n\r\f\v]")]
    quantity: Annotated[StrictInt, Field(ge=1, le=100_000), WHOLE_NUMBER]
    unit_price: Annotated[StrictInt, Field(ge=0, le=MAX_PAYMENT_AMOUNT), WHOLE_NUMBER]


class EbarimtOverrides(_Strict):
    receiver_type: Literal["CITIZEN", "COMPANY"] | None = None
    # A phone number (CITIZEN) or company register number (COMPANY): personal data, never logged.
    receiver: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z\u0400-\u04FF]{1,20}$")] | None = None
    district_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] | None = None
    classification_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{7}$")] | None = None


class CreatePaymentRequest(_Strict):
    amount: Annotated[StrictInt, Field(ge=1, le=MAX_PAYMENT_AMOUNT, description="Whole MNT"), WHOLE_NUMBER]
    description: Annotated[str, StringConstraints(max_length=255)] | None = None
    items: (
        Annotated[
            list[LineItemIn],
            Field(
                # Empty could never sum to an amount of at least 1: say so in the schema.
                min_length=1,
                max_length=100,
                description=(
                    "quantity x unit_price must sum to amount (a rule across fields: "
                    f"400 `{ITEMS_TOTAL_MISMATCH}`)"
                ),
            ),
        ]
        | None
    ) = None
    ebarimt: EbarimtOverrides | None = None
    metadata: Annotated[dict[str, Any], WithJsonSchema(METADATA_SCHEMA)] | None = None

    @field_validator("metadata")
    @classmethod
    def _check_metadata_shape(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if metadata is not None:
            _check_metadata_value(metadata, METADATA_MAX_DEPTH)
        return metadata

    @model_validator(mode="after")
    def _check_totals(self) -> "CreatePaymentRequest":
        if self.items is not None:
            total = sum(item.quantity * item.unit_price for item in self.items)
            if total != self.amount:
                raise PydanticCustomError(
                    ITEMS_TOTAL_MISMATCH,
                    "items sum to {total}, not to amount {amount}",
                    {"total": total, "amount": self.amount},
                )
        if self.metadata is not None:
            size = len(json.dumps(self.metadata, ensure_ascii=False).encode())
            if size > METADATA_MAX_BYTES:
                raise PydanticCustomError(
                    METADATA_TOO_LARGE,
                    "metadata is {size} bytes of JSON; at most {limit}",
                    {"size": size, "limit": METADATA_MAX_BYTES},
                )
        return self


def _check_metadata_value(value: Any, levels_left: int) -> None:
    """What METADATA_SCHEMA says, enforced: the schema and the server must agree exactly."""
    if isinstance(value, (dict, list)):
        if levels_left == 0:
            raise PydanticCustomError(
                "metadata_too_deep",
                "metadata nests more than {levels} levels",
                {"levels": METADATA_MAX_DEPTH},
            )
        for item in value.values() if isinstance(value, dict) else value:
            _check_metadata_value(item, levels_left - 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > METADATA_MAX_NUMBER:
        raise PydanticCustomError(
            "metadata_number_out_of_range", "metadata numbers must be within ±(2^53 - 1)", {}
        )


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
        403: "The token lacks the scope this route needs",
        404: "Unknown, or not the caller's",
        409: "Conflicts with the session's state or an earlier request",
        413: "Body over 64 KB",
        415: "Body is not JSON",
        500: "Internal error",
        502: "QPay unavailable",
        503: "The event bus did not take the event; repeating the request publishes it",
    }
    return {
        status: {
            "description": descriptions[status],
            "content": {"application/json": {"model": ErrorResponse}},
        }
        for status in statuses
    }
