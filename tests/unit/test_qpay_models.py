"""QPay's responses are read in every observed form (shared/qpay/QPAY_API.md)."""

import pytest
from pydantic import ValidationError

from qpay_common.adapters.qpay.models import (
    EbarimtReceipt,
    Invoice,
    InvoiceDetails,
    PaymentCheck,
    PaymentDetails,
    TokenGrant,
    error_code_of,
    expiry_epoch,
    parse_amount,
)

pytestmark = pytest.mark.unit

NOW = 1_790_000_000.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(15000, 15000), ("15000.00", 15000), (" 50000.00 ", 50000), (15000.0, 15000), ("15000.99", 15000)],
)
def test_amounts_arrive_as_numbers_or_strings(raw, expected):
    assert parse_amount(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", True, None, "NaN", "inf"])
def test_non_amounts_are_rejected(raw):
    with pytest.raises(ValueError):  # noqa: PT011
        parse_amount(raw)


def test_expires_in_as_absolute_epoch_is_kept():
    # Given the captured sandbox form: an epoch about 24 h ahead
    assert expiry_epoch(NOW + 86_400, now=NOW) == NOW + 86_400


def test_expires_in_as_duration_is_added_to_now():
    assert expiry_epoch(3600, now=NOW) == NOW + 3600
    assert expiry_epoch(600, now=NOW) == NOW + 600


def test_an_epoch_in_the_past_is_an_epoch_not_a_duration():
    # Greater than 10^9: certainly an epoch, so the token counts as expired, not as 50 years valid.
    assert expiry_epoch(1_500_000_000, now=NOW) == 1_500_000_000


def test_token_grant_works_out_both_expiries():
    grant = TokenGrant.model_validate(
        {
            "token_type": "bearer",
            "access_token": "a.b.c",
            "expires_in": NOW + 86_400,
            "refresh_token": "r.s.t",
            "refresh_expires_in": 3600,
            "not-before-policy": "0",
        }
    )
    assert grant.access_expires_at(NOW) == NOW + 86_400
    assert grant.refresh_expires_at(NOW) == NOW + 3600


def test_invoice_reads_the_camel_case_short_url_and_deeplinks():
    invoice = Invoice.model_validate(
        {
            "invoice_id": "inv-1",
            "qr_text": "000201",
            "qr_image": "iVBOR",
            "qPay_shortUrl": "https://s.qpay.mn/abc",
            "urls": [{"name": "Khan bank", "description": "Хаан банк", "logo": "l", "link": "khanbank://q"}],
        }
    )
    assert invoice.short_url == "https://s.qpay.mn/abc"
    assert invoice.urls[0].link == "khanbank://q"


def test_payment_check_sums_only_paid_rows_whatever_the_field_spelling():
    check = PaymentCheck.model_validate(
        {
            "count": 3,
            "paid_amount": 99999,
            "rows": [
                {"payment_id": "p1", "payment_status": "PAID", "payment_amount": "10000.00", "trx_fee": "0"},
                {"payment_id": "p2", "payment_status": "paid", "payment_amount": 5000, "payemnt_wallet": "x"},
                {"payment_id": "p3", "payment_status": "REFUNDED", "payment_amount": "7000.00"},
            ],
        }
    )
    assert [row.payment_id for row in check.paid_rows] == ["p1", "p2"]
    # The top-level paid_amount is not trusted over the rows.
    assert check.total_paid == 15000


@pytest.mark.parametrize(
    "row",
    [
        {"payment_status": "PAID", "payment_amount": "1"},
        {"payment_id": "", "payment_status": "PAID", "payment_amount": "1"},
        {"payment_id": "p1", "payment_amount": "1"},
        {"payment_id": "p1", "payment_status": "PAID"},
        {"payment_id": "p1", "payment_status": "PAID", "payment_amount": None},
        {"payment_id": "p1", "payment_status": "PAID", "payment_amount": "lots"},
    ],
    ids=["no id", "empty id", "no status", "PAID without amount", "PAID with null amount", "not an amount"],
)
def test_a_row_that_cannot_prove_money_makes_the_check_unreadable(row):
    # A PAID row without its amount cannot say how much arrived: refusing beats guessing 0 or all.
    with pytest.raises(ValidationError):
        PaymentCheck.model_validate({"count": 1, "rows": [row]})


def test_paid_amount_null_with_a_paid_row_is_still_confirmed():
    # Given the sandbox-built SDK's nullable paid_amount (qpay-client PaymentCheckResponse)
    check = PaymentCheck.model_validate(
        {
            "count": 1,
            "paid_amount": None,
            "rows": [{"payment_id": "p1", "payment_status": "PAID", "payment_amount": "15000.00"}],
        }
    )

    assert (check.paid_amount, check.total_paid, [r.payment_id for r in check.paid_rows]) == (
        None,
        15000,
        ["p1"],
    )


def test_attempt_rows_without_amount_never_block_the_paid_row_beside_them():
    check = PaymentCheck.model_validate(
        {
            "count": 3,
            "paid_amount": "15000.00",
            "rows": [
                {"payment_id": "a1", "payment_status": "NEW", "payment_amount": None},
                {"payment_id": "a2", "payment_status": "FAILED"},
                {"payment_id": 493622150113497, "payment_status": "PAID", "payment_amount": 15000},
            ],
        }
    )

    assert [row.payment_id for row in check.paid_rows] == ["493622150113497"]
    assert check.total_paid == 15000
    assert check.paid_amount == 15000


@pytest.mark.parametrize(
    "body",
    [
        {"count": 0, "paid_amount": 0, "rows": []},
        {"count": 0, "paid_amount": None, "rows": []},
        {"count": None, "rows": []},
        {"rows": [], "surprise": {"nested": True}},
    ],
)
def test_nothing_paid_yet_in_every_form(body):
    check = PaymentCheck.model_validate(body)

    assert (check.count, check.total_paid, check.paid_rows) == (0, 0, [])


@pytest.mark.parametrize("body", [{}, {"count": 1, "paid_amount": 15000}, {"rows": None}, [], "SUCCESS"])
def test_a_check_without_rows_says_nothing_and_is_refused(body):
    with pytest.raises(ValidationError):
        PaymentCheck.model_validate(body)


def test_refund_and_refunded_and_cancelled_rows_are_not_money_in():
    rows = [
        {"payment_id": f"p{n}", "payment_status": status, "payment_amount": "100.00"}
        for n, status in enumerate(["REFUND", "REFUNDED", "CANCELLED", "PARTIAL", "NEW", "FAILED"])
    ]

    assert PaymentCheck.model_validate({"count": 6, "rows": rows}).total_paid == 0


def test_invoice_tolerates_missing_qr_null_links_and_links_without_a_target():
    invoice = Invoice.model_validate(
        {
            "invoice_id": "inv-1",
            "qr_text": None,
            "urls": [{"name": "No link"}, {"name": None, "link": "khanbank://q", "logo": None}, "junk"],
            "subscription": None,
        }
    )

    assert (invoice.qr_text, invoice.qr_image, invoice.short_url) == ("", "", None)
    assert [(link.name, link.link) for link in invoice.urls] == [("", "khanbank://q")]
    assert Invoice.model_validate({"invoice_id": "inv-2", "urls": None}).urls == []


@pytest.mark.parametrize("body", [{}, {"invoice_id": ""}, {"invoice_id": None, "qr_text": "q"}])
def test_an_invoice_answer_without_its_id_is_refused(body):
    with pytest.raises(ValidationError):
        Invoice.model_validate(body)


def test_invoice_details_keep_the_money_fields_in_numbers_strings_and_nulls():
    details = InvoiceDetails.model_validate(
        {
            "invoice_id": "inv-1",
            "invoice_status": "CLOSED",
            "total_amount": "2090.91",
            "gross_amount": 2000,
            "tax_amount": "90.91",
            "discount_amount": "0.00",
            "minimum_amount": None,
            "maximum_amount": "",
            "lines": [{"line_quantity": "2.00", "line_unit_price": "1000.00"}],
            "payments": [{"payment_id": "p1", "payment_status": "PAID", "payment_amount": "2090.91"}],
        }
    )

    assert (details.total_amount, details.gross_amount, details.tax_amount) == (2090, 2000, 90)
    assert (details.minimum_amount, details.maximum_amount, details.surcharge_amount) == (None, None, None)
    assert [(p.payment_id, p.payment_amount) for p in details.payments] == [("p1", 2090)]


@pytest.mark.parametrize(
    "body",
    [
        {"invoice_status": "OPEN", "total_amount": "100.00"},
        {"invoice_id": "inv-1", "total_amount": "100.00"},
        {"invoice_id": "inv-1", "invoice_status": "OPEN"},
        {"invoice_id": "inv-1", "invoice_status": "OPEN", "total_amount": None},
    ],
    ids=["no id", "no status", "no total", "null total"],
)
def test_invoice_details_without_id_status_or_total_are_refused(body):
    with pytest.raises(ValidationError):
        InvoiceDetails.model_validate(body)


def test_payment_details_accept_numeric_ids_and_attempts_without_amount():
    paid = PaymentDetails.model_validate(
        {
            "payment_id": 493622150113497,
            "payment_status": "PAID",
            "payment_fee": "1.00",
            "payment_amount": "100.00",
            "object_type": "INVOICE",
            "object_id": "d50f49f2-9032-4a74-8929-530531f28f63",
            "transaction_type": "P2P",
        }
    )
    failed = PaymentDetails.model_validate(
        {"payment_id": "p2", "payment_status": "FAILED", "payment_amount": None}
    )

    assert (paid.payment_id, paid.payment_amount, paid.object_id) == (
        "493622150113497",
        100,
        "d50f49f2-9032-4a74-8929-530531f28f63",
    )
    assert (failed.is_paid, failed.payment_amount) == (False, None)


@pytest.mark.parametrize(
    "body",
    [
        {"error": "INVOICE_PAID", "message": "Invoice already paid"},
        {"code": "INVOICE_PAID", "message": "Invoice already paid"},
        {"error_code": "INVOICE_PAID", "message": "The invoice has been paid"},
        {"message": "INVOICE_PAID"},
        {"error": "Bad Request", "message": "INVOICE_PAID"},
        {"code": "INVOICE_PAID", "message": "Invoice already paid", "details": {}},
    ],
    ids=["error", "code", "error_code", "message", "sentence in error", "ApiError with details"],
)
def test_error_code_is_found_wherever_qpay_puts_it(body):
    assert error_code_of(body) == "INVOICE_PAID"


def test_a_human_message_is_not_mistaken_for_a_code():
    assert error_code_of({"message": "Something went wrong"}) is None
    assert error_code_of("not json") is None


# The simulator's answers before and after issue 13 (full QPay shapes): both must keep parsing.
OLD_CHECK_ROW = {
    "payment_id": "100000000000001",
    "payment_status": "PAID",
    "payment_amount": "15000.00",
    "trx_fee": "0.00",
    "payment_currency": "MNT",
    "payment_wallet": "Khan bank",
    "payment_type": "P2P",
    "payment_date": "2026-11-22T10:00:00.000Z",
    "card_transactions": [],
    "p2p_transactions": [{"id": "100000000000001", "amount": "15000.00", "currency": "MNT"}],
}
FULL_CHECK_ROW = {
    "payment_id": "8e25b4d5-fe5a-4d0f-b050-def68a82aaad",
    "payment_status": "PAID",
    "payment_amount": "15000.00",
    "trx_fee": "150.00",
    "payment_currency": "MNT",
    "payment_wallet": "qPay wallet",
    "payment_type": "CARD",
    "next_payment_date": None,
    "next_payment_datetime": None,
    "card_transactions": [{"card_type": "VISA", "amount": "15000.00", "settlement_status": "PENDING"}],
    "p2p_transactions": [],
}


@pytest.mark.parametrize("row", [OLD_CHECK_ROW, FULL_CHECK_ROW], ids=["before", "full shape"])
def test_payment_check_rows_parse_before_and_after_the_full_shapes(row):
    check = PaymentCheck.model_validate({"count": 1, "paid_amount": 15000, "rows": [row]})

    assert check.total_paid == 15000
    assert check.paid_rows[0].payment_id == row["payment_id"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "r1", "ebarimt_receipt_id": "0" * 33, "barimt_status": "REGISTERED", "created_date": "2026"},
        {
            "id": "r1",
            "ebarimt_receipt_id": "0" * 33,
            "barimt_status": "REGISTERED",
            "ebarimt_qr_data": "123",
            "ebarimt_lottery": "HV 83198235",
            "barimt_items": [{"name": "Tea", "amount": "15000.00"}],
            "barimt_histories": [{"barimt_status": "REGISTERED"}],
            "ebarimt_status": "REGISTERED",
            "g_payment_id": "100000000000001",
        },
    ],
    ids=["before", "full shape"],
)
def test_ebarimt_receipts_parse_before_and_after_the_full_shapes(body):
    receipt = EbarimtReceipt.model_validate(body)

    assert (receipt.id, receipt.ebarimt_receipt_id, receipt.barimt_status) == ("r1", "0" * 33, "REGISTERED")
    assert receipt.not_registered_reason() is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "BARIMT_STATUS_MISSING"),
        ({"id": "r1", "barimt_status": None, "ebarimt_receipt_id": "0" * 33}, "BARIMT_STATUS_MISSING"),
        ({"id": "r1", "barimt_status": "CREATED", "ebarimt_lottery": "AB12345678"}, "BARIMT_STATUS_CREATED"),
        ({"id": "r1", "barimt_status": "CANCELED", "ebarimt_receipt_id": "0" * 33}, "BARIMT_STATUS_CANCELED"),
        ({"id": "r1", "barimt_status": "ERROR"}, "BARIMT_STATUS_ERROR"),
        ({"id": "r1", "barimt_status": "REGISTERED"}, "EBARIMT_RECEIPT_ID_MISSING"),
        ({"id": "r1", "barimt_status": "REGISTERED", "ebarimt_receipt_id": ""}, "EBARIMT_RECEIPT_ID_MISSING"),
        ({"ebarimt_status": "CREATED", "ebarimt_receipt_id": "0" * 33}, "BARIMT_STATUS_CREATED"),
    ],
    ids=["empty", "null status", "CREATED", "CANCELED", "ERROR", "no receipt id", "empty id", "legacy name"],
)
def test_only_registered_with_a_receipt_id_is_a_receipt(body, reason):
    assert EbarimtReceipt.model_validate(body).not_registered_reason() == reason


def test_a_registered_receipt_id_sent_as_a_number_still_counts():
    receipt = EbarimtReceipt.model_validate(
        {"barimt_status": "registered", "ebarimt_receipt_id": 30101065006}
    )

    assert (receipt.not_registered_reason(), receipt.ebarimt_receipt_id) == (None, "30101065006")
