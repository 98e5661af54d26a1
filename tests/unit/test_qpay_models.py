"""QPay's responses are read in every observed form (shared/qpay/QPAY_API.md)."""

import pytest
from pydantic import ValidationError

from qpay_common.qpay_models import (
    EbarimtReceipt,
    Invoice,
    PaymentCheck,
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


def test_payment_row_requires_id_status_and_amount():
    with pytest.raises(ValidationError):
        PaymentCheck.model_validate({"rows": [{"payment_status": "PAID", "payment_amount": "1"}]})


@pytest.mark.parametrize(
    "body",
    [
        {"error": "INVOICE_PAID", "message": "Invoice already paid"},
        {"message": "INVOICE_PAID"},
        {"error_code": "INVOICE_PAID", "message": "The invoice has been paid"},
    ],
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
