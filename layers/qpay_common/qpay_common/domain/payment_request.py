"""A request for a new payment, as the use case takes it (ARCHITECTURE.md section 3, `POST
/payments`): an amount in whole MNT, optional lines that must sum to it, per-session Ebarimt
overrides and the merchant's metadata. The rules here are the contract's; the HTTP layer validates
bodies with this model, so the OpenAPI document states them."""

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

MAX_PAYMENT_AMOUNT = 100_000_000
METADATA_MAX_BYTES = 4096
# Levels of objects and arrays, metadata itself included: enough for {"cart": {"lines": [{...}]}}.
METADATA_MAX_DEPTH = 4
# Numbers any consumer of the PaymentCompleted event (JavaScript included) holds exactly.
METADATA_MAX_NUMBER = 2**53 - 1

# Error types of rules that span fields, which no JSON Schema can state; clients (and the
# contract tests) tell them apart by `details[].type`.
ITEMS_TOTAL_MISMATCH = "items_total_mismatch"
METADATA_TOO_LARGE = "metadata_too_large"


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
