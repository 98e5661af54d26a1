"""The merchant API's models read every form QPay answers in and send only what was set."""

import pytest
from pydantic import ValidationError

from qpay_common.adapters.qpay.models import FullInvoiceRequest, InvoiceLine, PaymentDetails, PaymentList

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("answer", "kind", "fee"),
    [
        # GET /payment/{id}: payment_fee and transaction_type
        ({"payment_fee": "1.00", "transaction_type": "CARD"}, "CARD", 1),
        # payment/check rows: trx_fee and payment_type
        ({"trx_fee": "150.00", "payment_type": "P2P"}, "P2P", 150),
        # payment/list rows: paid_by
        ({"payment_fee": 0, "paid_by": "CARD"}, "CARD", 0),
        ({}, None, None),
    ],
)
def test_the_type_and_fee_are_read_under_each_name(answer, kind, fee):
    payment = PaymentDetails.model_validate(
        {"payment_id": "p-1", "payment_status": "PAID", "payment_amount": "100.00", **answer}
    )

    assert (payment.payment_type, payment.payment_fee, payment.payment_amount) == (kind, fee, 100)
    assert payment.is_card is (kind == "CARD")


@pytest.mark.parametrize(
    ("status", "returned"),
    [("REFUNDED", True), ("REFUND", True), ("CANCELLED", True), ("PAID", False), ("NEW", False)],
)
def test_refunded_refund_and_cancelled_all_mean_the_money_went_back(status, returned):
    payment = PaymentDetails(payment_id="p", payment_status=status, payment_amount=1)

    assert payment.is_returned is returned


def test_a_payment_list_reads_its_rows():
    listed = PaymentList.model_validate(
        {
            "count": 3,
            "rows": [
                {"payment_id": "1", "payment_status": "PAID", "payment_amount": "5.00", "paid_by": "P2P"}
            ],
        }
    )

    assert (listed.count, listed.rows[0].payment_type) == (3, "P2P")


def test_a_full_invoice_sends_only_what_was_set_in_qpays_names():
    body = FullInvoiceRequest(
        invoice_code="TEST_INVOICE",
        sender_invoice_no="n-1",
        invoice_description="d",
        callback_url="https://shop.example/cb",
        invoice_receiver_data={"register": "AA00112233", "email": "a@shop.example"},
        lines=[InvoiceLine(line_description="Tea", line_unit_price=500, taxes=[{"amount": 50}])],
    ).to_body()

    assert body == {
        "invoice_code": "TEST_INVOICE",
        "sender_invoice_no": "n-1",
        "invoice_receiver_code": "terminal",
        "invoice_description": "d",
        "callback_url": "https://shop.example/cb",
        "invoice_receiver_data": {"register": "AA00112233", "email": "a@shop.example"},
        "lines": [
            {"line_description": "Tea", "line_quantity": 1, "line_unit_price": 500, "taxes": [{"amount": 50}]}
        ],
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"sender_invoice_no": "x" * 46, "amount": 1},
        {"amount": 0},
        {"amount": 1, "tax_type": "4"},
        {"amount": 1, "note": "x" * 1001},
        {},
    ],
)
def test_a_full_invoice_qpay_would_refuse_is_refused_before_sending(fields):
    values = {"invoice_code": "C", "sender_invoice_no": "n", "invoice_description": "d", "callback_url": "u"}

    with pytest.raises(ValidationError):
        FullInvoiceRequest.model_validate({**values, **fields})
