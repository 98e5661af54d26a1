"""Reading `POST /v2/invoice` bodies: the simple form, the full form and the Ebarimt 3.0 form.

Field names and limits follow the `CreateInvoiceRequest` schema of the OpenAPI spec captured from
the sandbox (Amraa1/qpay_client `specs/openapi.json`), the full-form models of `qpay-client`
(`InvoiceCreateRequest`, `Line`, `Discount`, `Surcharge`, `Tax`) and of techpartners-asia/qpay-go
(`QPaySimpleInvoiceRequest`, `QpayLineRequest`, `QPayEbarimtInvoiceRequest`).

Totals: an invoice with `lines` and no `amount` is accepted and its total comes from the lines
(`shared/qpay/QPAY_API.md`). No public capture shows a line total with adjustments, so the rule is
the simulator's reading of the field names: gross = sum of quantity x unit price, and
total = gross - discounts + surcharges + taxes. When `amount` is given it is the total to pay and
the lines only explain it, as in the full-form examples that send both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as day_time
from decimal import Decimal, InvalidOperation
from typing import Any

from qpay_common.adapters.qpay.codes import QPayErrorCode

from .errors import invalid_amount, object_data_error, qpay_error
from .records import InvoiceTerms, cents

MAX_INVOICE_AMOUNT = Decimal(1_000_000_000)
LINE_DESCRIPTION_MAX = 255
ADJUSTMENT_DESCRIPTION_MAX = 100
NOTE_MAX = 1000
TAX_TYPES = ("1", "2", "3")  # VAT, no VAT, VAT exempt (techpartners-asia/qpay-go `QPayTaxType`)

# Full-form fields that GET /invoice/{id} shows back as sent (qpay-client `InvoiceGetResponse`).
SHOWN_BACK_FIELDS = (
    "sender_branch_data",
    "sender_staff_code",
    "sender_staff_data",
    "sender_terminal_code",
    "sender_terminal_data",
    "invoice_due_date",
    "note",
)
_OPTIONAL_LINE_TEXT = ("sender_product_code", "tax_product_code", "note", "classification_code", "barcode")


def whole_amount(value: Any, name: str = "amount") -> Decimal:
    """A positive whole number of MNT, given as a number or a numeric string ("15000", "15000.00")."""
    number = _decimal(value, name, invalid_amount)
    # MNT requests carry whole numbers; refusing fractions keeps clients from relying on them.
    if number <= 0 or number != number.to_integral_value():
        raise invalid_amount(f"{name} must be a positive whole number")
    return number


def _decimal(value: Any, name: str, error: Any = object_data_error) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise error(f"{name} must be a number")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise error(f"{name} must be a number") from None
    if not number.is_finite():
        raise error(f"{name} must be a number")
    return number


def _non_negative(value: Any, name: str) -> Decimal:
    number = _decimal(value, name)
    if number < 0:
        raise object_data_error(f"{name} must not be negative")
    return number


def _text(
    body: dict[str, Any], name: str, max_length: int | None = None, required: bool = False
) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise object_data_error(f"{name} is required" if required else f"{name} must be a string")
    if max_length is not None and len(value) > max_length:
        raise object_data_error(f"{name} must be at most {max_length} characters")
    return value


def flag(body: dict[str, Any], name: str) -> bool | None:
    """Booleans as sent: JSON booleans, or the strings "true"/"false" one doc page shows for enable_expiry."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise object_data_error(f"{name} must be a boolean")


def parse_moment(value: Any, name: str, end_of_day: bool) -> datetime | None:
    """Dates as QPay clients send them: "2026-11-22", "2026-11-22 10:00:00" or ISO 8601; naive is UTC."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise object_data_error(f"{name} must be a date string")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise object_data_error(f"{name} is not a date") from None
    if len(text) == 10 and end_of_day:
        moment = datetime.combine(moment.date(), day_time.max)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _adjustments(
    line: dict[str, Any], name: str, where: str, description_required: bool
) -> tuple[list, Decimal]:
    entries = line.get(name)
    if entries is None:
        return [], Decimal(0)
    if not isinstance(entries, list):
        raise object_data_error(f"{where}.{name} must be a list")
    total = Decimal(0)
    for index, entry in enumerate(entries):
        label = f"{where}.{name}[{index}]"
        if not isinstance(entry, dict):
            raise object_data_error(f"{label} must be an object")
        # The captured spec requires a description on discounts, surcharges and taxes; qpay-client
        # types a tax's description as optional: taxes are read leniently where sources disagree.
        _text(entry, "description", ADJUSTMENT_DESCRIPTION_MAX, required=description_required)
        total += _non_negative(entry.get("amount"), f"{label}.amount")
    return list(entries), total


def _line(raw: Any, index: int) -> tuple[dict[str, Any], Decimal, Decimal, Decimal, Decimal]:
    where = f"lines[{index}]"
    if not isinstance(raw, dict):
        raise object_data_error(f"{where} must be an object")
    _text(raw, "line_description", LINE_DESCRIPTION_MAX, required=True)
    for name in _OPTIONAL_LINE_TEXT:
        _text(raw, name)
    quantity = _decimal(raw.get("line_quantity"), f"{where}.line_quantity")
    if quantity <= 0:
        raise object_data_error(f"{where}.line_quantity must be positive")
    unit_price = _non_negative(raw.get("line_unit_price"), f"{where}.line_unit_price")
    discounts, discount = _adjustments(raw, "discounts", where, description_required=True)
    surcharges, surcharge = _adjustments(raw, "surcharges", where, description_required=True)
    taxes, tax = _adjustments(raw, "taxes", where, description_required=False)
    shown = {
        **raw,
        # Recorded GET answers carry line quantities and prices as strings ("1.00").
        "line_quantity": f"{cents(quantity):.2f}",
        "line_unit_price": f"{cents(unit_price):.2f}",
        "discounts": discounts,
        "surcharges": surcharges,
        "taxes": taxes,
    }
    return shown, quantity * unit_price, discount, surcharge, tax


def _transactions(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("transactions")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise object_data_error("transactions must be a list")
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise object_data_error(f"transactions[{index}] must be an object")
        _text(entry, "description", ADJUSTMENT_DESCRIPTION_MAX, required=True)
        _non_negative(entry.get("amount"), f"transactions[{index}].amount")
        if entry.get("accounts") is not None and not isinstance(entry["accounts"], list):
            raise object_data_error(f"transactions[{index}].accounts must be a list")
    return list(raw)


def _limit(body: dict[str, Any], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None:
        return None
    number = _decimal(value, name)
    if number <= 0:
        raise object_data_error(f"{name} must be positive")
    return number


def parse_terms(body: dict[str, Any], lines_required: bool) -> InvoiceTerms:
    raw_lines = body.get("lines")
    if raw_lines is not None and not isinstance(raw_lines, list):
        raise object_data_error("lines must be a list")
    raw_lines = raw_lines or []
    has_amount = body.get("amount") is not None
    if not raw_lines and (lines_required or not has_amount):
        # Ebarimt 3.0 invoices need lines; other invoices need lines or an amount.
        raise qpay_error(400, QPayErrorCode.INVOICE_LINE_REQUIRED, "Invoice lines are required")

    lines: list[dict[str, Any]] = []
    gross = discount = surcharge = tax = Decimal(0)
    for index, raw in enumerate(raw_lines):
        shown, line_gross, line_discount, line_surcharge, line_tax = _line(raw, index)
        lines.append(shown)
        gross += line_gross
        discount += line_discount
        surcharge += line_surcharge
        tax += line_tax

    if has_amount:
        total = whole_amount(body["amount"])
        if not lines:
            gross = total
    else:
        total = cents(gross - discount + surcharge + tax)
        if total <= 0:
            raise invalid_amount("The lines add up to nothing to pay")
    if total > MAX_INVOICE_AMOUNT:
        raise qpay_error(400, QPayErrorCode.MAX_AMOUNT_ERR, f"Amount exceeds {MAX_INVOICE_AMOUNT}")

    allow_partial = flag(body, "allow_partial")
    allow_exceed = flag(body, "allow_exceed")
    minimum_amount = _limit(body, "minimum_amount")
    maximum_amount = _limit(body, "maximum_amount")
    if allow_partial and minimum_amount is not None and minimum_amount > total:
        raise object_data_error("minimum_amount must not exceed the invoice total")
    if allow_exceed and maximum_amount is not None and maximum_amount < total:
        raise object_data_error("maximum_amount must not be below the invoice total")

    enable_expiry = flag(body, "enable_expiry") or False
    expiry_date = _text(body, "expiry_date")
    expires_at = parse_moment(expiry_date, "expiry_date", end_of_day=True)
    if enable_expiry and expires_at is None:
        raise object_data_error("expiry_date is required when enable_expiry is true")

    return InvoiceTerms(
        total=cents(total),
        gross=cents(gross),
        discount=cents(discount),
        surcharge=cents(surcharge),
        tax=cents(tax),
        lines=lines,
        transactions=_transactions(body),
        allow_partial=bool(allow_partial),
        minimum_amount=minimum_amount,
        allow_exceed=bool(allow_exceed),
        maximum_amount=maximum_amount,
        partial_stated=allow_partial is not None,
        exceed_stated=allow_exceed is not None,
        enable_expiry=enable_expiry,
        expiry_date=expiry_date,
        expires_at=expires_at if enable_expiry else None,
    )


def parse_tax_type(body: dict[str, Any]) -> str:
    value = body.get("tax_type")
    if value is None:
        return "1"
    if str(value) not in TAX_TYPES:
        raise object_data_error("tax_type must be 1 (VAT), 2 (no VAT) or 3 (VAT exempt)")
    return str(value)


def shown_back(body: dict[str, Any]) -> dict[str, Any]:
    note = _text(body, "note", NOTE_MAX)
    for name in ("sender_staff_code", "sender_terminal_code", "invoice_due_date"):
        _text(body, name)
    for name in ("sender_branch_data", "sender_staff_data", "sender_terminal_data"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise object_data_error(f"{name} must be an object")
    return {name: body.get(name) for name in SHOWN_BACK_FIELDS} | {"note": note}
