"""The bodies QPay answers with, field for field as public sources show them.

Sources, cited by short name below (all public; read, not copied):
- [spec]   the OpenAPI spec captured from the sandbox on 2026-01-29, Amraa1/qpay_client
           `specs/openapi.json` (token example; request schemas; `ApiError`).
- [qpc]    `qpay-client` 2.0.5 on PyPI (Amraa1/qpay_client `v2/schemas.py`): strict pydantic
           models built from sandbox answers and tested weekly against it.
- [tpa]    techpartners-asia/qpay-go `qpay_v2/structs.go` and `response_shape_test.go`, which
           quote QPay's published examples (the "Excel" P2P payment, card check row, invoice).
- [qsdk]   the qpay-sdk family (`qpay-py` 1.0.0 on PyPI, its Go/PHP/Ruby/Swift siblings and the
           qpay-sdk/qpay-docs pages).
- [fleet]  a recorded Ebarimt 3.0 receipt: [tpa] `qpay_v2/ebarimt_test.go`, and the same receipt
           with its full field set in the Fleetbase Storefront extension (PHP class
           `Fleetbase\\Storefront\\Support\\QPay`, `mockEbarimtResponse`).
- [tsetsee] tsetsee/qpay-php-api DTOs.
- [notes]  `shared/qpay/QPAY_API.md`.
Where they disagree, the majority form is sent and the minority is named in a comment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .records import WALLET_ID, Invoice, Payment, Receipt, cents

MERCHANT_NAME = "QPAY SIMULATOR"
MERCHANT_REGISTER_NO = "5395305"
MERCHANT_TIN = "30101065006"
MERCHANT_BRANCH_CODE = "BRANCH1"


def money(value: Decimal) -> str:
    """Amounts in answers are strings with two decimals ("15000.00") [tpa][qsdk][fleet]."""
    return f"{cents(value):.2f}"


def number(value: Decimal) -> int | float:
    """`paid_amount` of payment/check is a JSON number [tpa: 100][qsdk: 50000.00]."""
    return int(value) if value == value.to_integral_value() else float(cents(value))


def iso(moment: datetime) -> str:
    """`2022-03-11T05:57:47.336Z`, as the recorded answers write times [tpa]."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _optional_money(value: Decimal | None) -> str | None:
    # Unset limits are null in the recorded invoice [tpa: "minimum_amount": null].
    return None if value is None else money(value)


def invoice_created(invoice: Invoice, qr_image: str, urls: list[dict[str, str]]) -> dict[str, Any]:
    """POST /invoice: the five fields every source agrees on [spec][qpc][tpa][qsdk]; camelCase short URL."""
    return {
        "invoice_id": invoice.invoice_id,
        "qr_text": invoice.qr_text,
        "qr_image": qr_image,
        "qPay_shortUrl": invoice.short_url,
        "urls": urls,
    }


def invoice_details(invoice: Invoice, payments: list[Payment]) -> dict[str, Any]:
    """GET /invoice/{id}: the union of [qpc] `InvoiceGetResponse`, [tpa] `QpayInvoiceGetResponse`
    and [tsetsee] `GetInvoiceResponse`; amounts as strings as in [tpa]'s recorded invoice.
    Status is OPEN, CLOSED or CANCELLED [tpa][notes] ([qpc]'s enum lacks CANCELLED)."""
    terms = invoice.terms
    return {
        "invoice_id": invoice.invoice_id,
        "invoice_status": invoice.status,
        "sender_invoice_no": invoice.sender_invoice_no,
        "sender_branch_code": invoice.sender_branch_code,
        "sender_branch_data": invoice.shown_back.get("sender_branch_data"),
        "sender_staff_code": invoice.shown_back.get("sender_staff_code"),
        "sender_staff_data": invoice.shown_back.get("sender_staff_data"),
        "sender_terminal_code": invoice.shown_back.get("sender_terminal_code"),
        "sender_terminal_data": invoice.shown_back.get("sender_terminal_data"),
        "invoice_description": invoice.invoice_description,
        "invoice_due_date": invoice.shown_back.get("invoice_due_date"),
        "enable_expiry": terms.enable_expiry,
        "expiry_date": terms.expiry_date,
        "allow_partial": terms.allow_partial,
        "minimum_amount": _optional_money(terms.minimum_amount),
        "allow_exceed": terms.allow_exceed,
        "maximum_amount": _optional_money(terms.maximum_amount),
        "total_amount": money(terms.total),
        "gross_amount": money(terms.gross),
        "tax_amount": money(terms.tax),
        "surcharge_amount": money(terms.surcharge),
        "discount_amount": money(terms.discount),
        "callback_url": invoice.callback_url,
        "note": invoice.shown_back.get("note"),
        "lines": terms.lines,
        "transactions": terms.transactions,
        "inputs": [],
        "payments": [check_row(payment) for payment in payments],
    }


def _card_transactions(payment: Payment) -> list[dict[str, Any]]:
    """A card payment's transaction: the recorded card row of [tpa] (a new card payment settles
    later: PENDING), plus the card/terminal/transaction fields [tpa] and [qsdk] type."""
    if payment.payment_type != "CARD":
        return []
    date = iso(payment.paid_at)
    return [
        {
            "card_merchant_code": "SIM00001",
            "card_terminal_code": "SIMT0001",
            "card_number": "4111********1111",
            "card_type": "VISA",
            "is_cross_border": False,
            "amount": money(payment.amount),
            "transaction_amount": money(payment.amount),
            "currency": "MNT",
            "transaction_currency": "MNT",
            "date": date,
            "transaction_date": date,
            "status": "SUCCESS",
            "transaction_status": "APPROVED",
            "settlement_status": "PENDING",
            "settlement_status_date": date,
        }
    ]


def _p2p_transactions(payment: Payment) -> list[dict[str, Any]]:
    """A bank transfer as [tpa]'s recorded P2P payment shows it: the amount is net of the fee."""
    if payment.payment_type != "P2P":
        return []
    return [
        {
            "transaction_bank_code": "050000",
            "account_bank_code": "050000",
            "account_bank_name": "Хаан банк",  # Mongolian, as QPay sends it
            "account_number": "50*******",
            "status": "SUCCESS",
            "amount": money(payment.amount - payment.fee),
            "currency": "MNT",
            "settlement_status": "SETTLED",
        }
    ]


def check_row(payment: Payment) -> dict[str, Any]:
    """A payment/check row: [qpc] `Payment`, [qsdk] `PaymentCheckRow` and [tpa]'s recorded row.
    The fee is `trx_fee` here; recorded rows carry no `payment_date` ([notes]; [tpa]'s union
    struct and one [notes] example have one)."""
    return {
        "payment_id": payment.payment_id,
        "payment_status": payment.status,
        "payment_amount": money(payment.amount),
        "trx_fee": money(payment.fee),
        "payment_currency": "MNT",
        "payment_wallet": payment.wallet,
        "payment_type": payment.payment_type,
        "next_payment_date": None,
        "next_payment_datetime": None,
        "card_transactions": _card_transactions(payment),
        "p2p_transactions": _p2p_transactions(payment),
    }


def payment_details(payment: Payment) -> dict[str, Any]:
    """GET /payment/{id}: [tpa]'s recorded P2P payment, [qpc] `PaymentGetResponse`, [qsdk]
    `PaymentDetail`. The fee is `payment_fee` here, and the type is `transaction_type`."""
    return {
        "payment_id": payment.payment_id,
        "payment_status": payment.status,
        "payment_fee": money(payment.fee),
        "payment_amount": money(payment.amount),
        "payment_currency": "MNT",
        "payment_date": iso(payment.paid_at),
        "payment_wallet": payment.wallet,
        "object_type": "INVOICE",
        "object_id": payment.invoice_id,
        "next_payment_date": None,
        "next_payment_datetime": None,
        "transaction_type": payment.payment_type,
        "card_transactions": _card_transactions(payment),
        "p2p_transactions": _p2p_transactions(payment),
    }


def list_row(payment: Payment, invoice: Invoice) -> dict[str, Any]:
    """A payment/list row: [qpc] `PaymentList`, [qsdk] `PaymentListItem`, [tpa] `QpayPaymentRow`
    and the [qsdk] docs. The type is `paid_by` here (not `transaction_type`)."""
    return {
        "payment_id": payment.payment_id,
        "payment_date": iso(payment.paid_at),
        "payment_status": payment.status,
        "payment_fee": money(payment.fee),
        "payment_amount": money(payment.amount),
        "payment_currency": "MNT",
        "payment_wallet": payment.wallet,
        "payment_name": MERCHANT_NAME,
        "payment_description": invoice.invoice_description,
        "qr_code": invoice.qr_text,
        "paid_by": payment.payment_type,
        "object_type": "INVOICE",
        "object_id": payment.invoice_id,
        "next_payment_date": None,
        "next_payment_datetime": None,
    }


def _masked_phone(receiver: str | None) -> str | None:
    # The recorded receipts mask the citizen's phone: "88614450" -> "88*144*0" [fleet].
    if not receiver or len(receiver) < 8:
        return None
    return f"{receiver[:2]}*{receiver[3:6]}*{receiver[7:]}"


def receipt_v3(receipt: Receipt, client_id: str) -> dict[str, Any]:
    """Ebarimt 3.0 create/cancel: every field of the recorded [fleet] receipt, plus the item,
    transaction and history lists [qsdk] and [tpa] type. `barimt_status` is REGISTERED or
    CANCELED, as recorded ([qsdk] docs write CREATED/CANCELLED)."""
    updated = receipt.status_at or receipt.created_at
    return {
        "id": receipt.id,
        "ebarimt_by": "QPAY",
        "g_wallet_id": WALLET_ID,
        "g_wallet_customer_id": "b8361d3d-2a22-4942-9682-336daf87c025",
        "ebarimt_receiver_type": receipt.receiver_type,
        "ebarimt_receiver": receipt.receiver,
        "ebarimt_district_code": receipt.district_code,
        # PosAPI bill types: 1 for a citizen's receipt, 3 for a company's invoice.
        "ebarimt_bill_type": "1" if receipt.receiver_type == "CITIZEN" else "3",
        "g_merchant_id": client_id,
        "merchant_branch_code": MERCHANT_BRANCH_CODE,
        "merchant_terminal_code": None,
        "merchant_staff_code": "online",
        "merchant_register_no": MERCHANT_REGISTER_NO,
        "g_payment_id": receipt.payment_id,
        "paid_by": receipt.paid_by,
        "object_type": "INVOICE",
        "object_id": receipt.invoice_id,
        "amount": money(receipt.amount),
        "vat_amount": money(receipt.vat_amount),
        "city_tax_amount": money(receipt.city_tax_amount),
        "ebarimt_qr_data": receipt.qr_data,
        "ebarimt_lottery": receipt.lottery,
        "note": None,
        "barimt_status": receipt.status,
        "barimt_status_date": iso(updated),
        "ebarimt_sent_email": None,
        "ebarimt_receiver_phone": _masked_phone(receipt.receiver)
        if receipt.receiver_type == "CITIZEN"
        else None,
        "tax_type": receipt.tax_type,
        "merchant_tin": MERCHANT_TIN,
        "ebarimt_receipt_id": receipt.receipt_id,
        "created_by": "1",
        "created_date": iso(receipt.created_at),
        "updated_by": "1",
        "updated_date": iso(updated),
        "status": True,
        "barimt_items": receipt.items,
        "barimt_transactions": [],
        "barimt_histories": receipt.histories,
    }


def receipt_legacy(receipt: Receipt, client_id: str) -> dict[str, Any]:
    """Legacy POST /ebarimt/create and GET /ebarimt/{id}: the 3.0 fields, plus the older names
    [qpc] `Ebarimt` reads there (`ebarim_receiver_type` sic, `ebarimt_status`,
    `ebarimt_status_date`); [tpa] `QPayEbarimtResponse` carries both spellings of the status."""
    body = receipt_v3(receipt, client_id)
    return {
        **body,
        "ebarim_receiver_type": body["ebarimt_receiver_type"],
        "ebarimt_status": body["barimt_status"],
        "ebarimt_status_date": body["barimt_status_date"],
        "merchant_register": body["merchant_register_no"],
    }
