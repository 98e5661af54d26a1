"""The simulator's full QPay shapes and full-form invoices (issue 13), driven over real HTTP.

The first four tests are the four gaps a strictly typed public SDK tripped on; the rest pin the
full form's totals, limits and expiry, the Ebarimt 3.0 invoice code and the legacy receipt path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_qpay_simulator import Merchant, invoice_body

pytestmark = pytest.mark.integration

TEA_LINE = {
    "sender_product_code": "TEA-1",
    "line_description": "Green tea",
    "line_quantity": 2,
    "line_unit_price": 7500,
    "discounts": [{"description": "Loyalty", "amount": 1000}],
    "surcharges": [{"description": "Delivery", "amount": 2000}],
    "taxes": [{"tax_code": "VAT", "description": "VAT", "amount": 500}],
}


def full_form(**overrides: Any) -> dict[str, Any]:
    body = invoice_body(lines=[TEA_LINE], **overrides)
    body.pop("amount")
    return {key: value for key, value in body.items() if value is not None}


# The four gaps


def test_get_invoice_carries_surcharge_amount_inputs_and_the_full_form_fields(merchant: Merchant) -> None:
    """Given a simple invoice, when it is read, then every field of QPay's invoice answer is there."""
    invoice_id = merchant.create_invoice(sender_branch_code="SALBAR1")["invoice_id"]

    invoice = merchant.qpay("GET", f"/invoice/{invoice_id}").json()

    assert (invoice["surcharge_amount"], invoice["discount_amount"], invoice["inputs"]) == (
        "0.00",
        "0.00",
        [],
    )
    assert (invoice["allow_partial"], invoice["allow_exceed"], invoice["enable_expiry"]) == (
        False,
        False,
        False,
    )
    assert (invoice["minimum_amount"], invoice["maximum_amount"], invoice["expiry_date"]) == (
        None,
        None,
        None,
    )
    assert (invoice["sender_branch_code"], invoice["transactions"]) == ("SALBAR1", [])


@pytest.mark.parametrize(
    ("payment_type", "filled", "empty"), [("P2P", "p2p", "card"), ("CARD", "card", "p2p")]
)
def test_get_payment_carries_both_transaction_arrays(
    merchant: Merchant, payment_type: str, filled: str, empty: str
) -> None:
    """Given a P2P or card payment, when it is read, then both top-level arrays are there, one filled."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"], payment_type=payment_type)[
        "payment_id"
    ]

    payment = merchant.qpay("GET", f"/payment/{payment_id}").json()

    assert len(payment[f"{filled}_transactions"]) == 1
    assert payment[f"{empty}_transactions"] == []
    assert (payment["next_payment_date"], payment["next_payment_datetime"]) == (None, None)
    id_form = (
        r"^\d{15}$"
        if payment_type == "P2P"
        else r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    assert re.match(id_form, payment_id)


def test_payment_list_rows_carry_payment_name_description_and_paid_by(merchant: Merchant) -> None:
    """Given two paid invoices, when payments are listed by invoice code, then rows name and describe each."""
    first = merchant.create_invoice(invoice_description="Order A")
    merchant.pay(first["invoice_id"])
    merchant.pay(merchant.create_invoice(invoice_description="Order B")["invoice_id"], payment_type="CARD")

    by_code = merchant.qpay(
        "POST", "/payment/list", {"object_type": "INVOICE", "object_id": "TEST_INVOICE"}
    ).json()
    by_qr = merchant.qpay(
        "POST", "/payment/list", {"object_type": "QR", "object_id": first["qr_text"]}
    ).json()

    rows = by_code["rows"]
    assert [(row["payment_description"], row["paid_by"]) for row in rows] == [
        ("Order A", "P2P"),
        ("Order B", "CARD"),
    ]
    assert all(row["payment_name"] and "transaction_type" not in row for row in rows)
    assert [row["qr_code"] for row in by_qr["rows"]] == [first["qr_text"]]


def test_full_form_invoice_without_amount_is_totalled_from_its_lines_and_can_be_cancelled(
    merchant: Merchant,
) -> None:
    # Given a full-form invoice with a line (2 x 7500, -1000 discount, +2000 surcharge, +500 tax), no amount
    response = merchant.qpay("POST", "/invoice", full_form(note="Ring twice"))
    assert response.status_code == 200, response.text
    invoice_id = response.json()["invoice_id"]

    # When it is read back and then cancelled
    invoice = merchant.qpay("GET", f"/invoice/{invoice_id}").json()
    cancelled = merchant.qpay("DELETE", f"/invoice/{invoice_id}")

    # Then QPay's totals come from the line, quantities and prices are strings, and the cancel finds it
    assert (invoice["gross_amount"], invoice["discount_amount"]) == ("15000.00", "1000.00")
    assert (invoice["surcharge_amount"], invoice["tax_amount"], invoice["total_amount"]) == (
        "2000.00",
        "500.00",
        "16500.00",
    )
    line = invoice["lines"][0]
    assert (line["line_quantity"], line["line_unit_price"], line["sender_product_code"]) == (
        "2.00",
        "7500.00",
        "TEA-1",
    )
    assert invoice["note"] == "Ring twice"
    assert (cancelled.status_code, cancelled.json()) == (200, {})
    # And the customer is asked for the total of the lines
    assert merchant.sim("GET", f"/invoices/{invoice_id}").json()["amount"] == 16500


def test_an_amount_given_with_lines_is_the_total_to_pay(merchant: Merchant) -> None:
    """Given a full form with an amount and lines, then the amount is charged and the lines explain it."""
    invoice_id = merchant.create_invoice(lines=[TEA_LINE], amount=15000)["invoice_id"]

    invoice = merchant.qpay("GET", f"/invoice/{invoice_id}").json()

    assert (invoice["total_amount"], invoice["gross_amount"]) == ("15000.00", "15000.00")
    assert merchant.check(invoice_id)["count"] == 0


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"lines": []}, "INVOICE_LINE_REQUIRED"),
        ({"lines": [{**TEA_LINE, "line_description": ""}]}, "OBJECT_DATA_ERROR"),
        ({"lines": [{**TEA_LINE, "line_quantity": 0}]}, "OBJECT_DATA_ERROR"),
        ({"lines": [{**TEA_LINE, "line_unit_price": "abc"}]}, "OBJECT_DATA_ERROR"),
        ({"lines": [{**TEA_LINE, "discounts": [{"description": "x", "amount": -1}]}]}, "OBJECT_DATA_ERROR"),
        ({"lines": [{**TEA_LINE, "surcharges": [{"amount": 5}]}]}, "OBJECT_DATA_ERROR"),
        ({"lines": [{**TEA_LINE, "discounts": [{"description": "all", "amount": 17500}]}]}, "INVALID_AMOUNT"),
        ({"lines": "tea"}, "OBJECT_DATA_ERROR"),
        ({"tax_type": "4"}, "OBJECT_DATA_ERROR"),
        ({"enable_expiry": True}, "OBJECT_DATA_ERROR"),
        ({"enable_expiry": "maybe", "expiry_date": "2030-01-01"}, "OBJECT_DATA_ERROR"),
        ({"allow_partial": True, "minimum_amount": 20000}, "OBJECT_DATA_ERROR"),
        ({"allow_exceed": True, "maximum_amount": 100}, "OBJECT_DATA_ERROR"),
        ({"note": "n" * 1001}, "OBJECT_DATA_ERROR"),
        ({"invoice_code": "TEST_EB_INVOICE"}, "OBJECT_DATA_ERROR"),  # no district_code
        ({"invoice_code": "TEST_EB_INVOICE", "district_code": "3505", "lines": []}, "INVOICE_LINE_REQUIRED"),
    ],
)
def test_invalid_full_form_invoices_are_refused(
    merchant: Merchant, overrides: dict[str, Any], code: str
) -> None:
    """Given one invalid full-form field, when the invoice is created, then 400 with QPay's code."""
    response = merchant.qpay("POST", "/invoice", {**full_form(), **overrides})

    assert (response.status_code, response.json()["error"]) == (400, code)
    assert merchant.stats()["invoices"] == 0


# Payment limits and expiry, as the customer's bank app enforces them


def test_allow_partial_takes_payments_of_at_least_the_minimum_until_the_total(merchant: Merchant) -> None:
    # Given an invoice of 15000 that allows partial payments of at least 5000
    invoice_id = merchant.create_invoice(allow_partial=True, minimum_amount=5000)["invoice_id"]

    # When the customer tries 1000, then pays 5000 and 10000
    too_little = merchant.sim("POST", "/pay", {"invoice_id": invoice_id, "amount": 1000, "callback": False})
    merchant.pay(invoice_id, amount=5000)
    still_open = merchant.qpay("GET", f"/invoice/{invoice_id}").json()
    merchant.pay(invoice_id, amount=10000)

    # Then the bank refuses the 1000 and the invoice closes when the payments reach the total
    assert (too_little.status_code, too_little.json()["error"]) == (400, "MIN_AMOUNT_ERR")
    assert (still_open["invoice_status"], still_open["allow_partial"], still_open["minimum_amount"]) == (
        "OPEN",
        True,
        "5000.00",
    )
    assert merchant.qpay("GET", f"/invoice/{invoice_id}").json()["invoice_status"] == "CLOSED"
    assert merchant.check(invoice_id)["paid_amount"] == 15000


def test_a_last_partial_payment_may_be_below_the_minimum_when_that_is_all_that_is_left(
    merchant: Merchant,
) -> None:
    """Given 12000 of 15000 paid on a minimum of 5000, when 3000 arrive, then they close the invoice."""
    invoice_id = merchant.create_invoice(allow_partial=True, minimum_amount=5000)["invoice_id"]
    merchant.pay(invoice_id, amount=12000)

    merchant.pay(invoice_id, amount=3000)

    assert merchant.qpay("GET", f"/invoice/{invoice_id}").json()["invoice_status"] == "CLOSED"


def test_an_explicit_no_to_partial_or_exceeding_payments_is_enforced(merchant: Merchant) -> None:
    """Given allow_partial and allow_exceed sent as false, then less or more than the amount is refused."""
    invoice_id = merchant.create_invoice(allow_partial=False, allow_exceed=False)["invoice_id"]

    less = merchant.sim("POST", "/pay", {"invoice_id": invoice_id, "amount": 14999, "callback": False})
    more = merchant.sim("POST", "/pay", {"invoice_id": invoice_id, "amount": 15001, "callback": False})
    exact = merchant.sim("POST", "/pay", {"invoice_id": invoice_id, "amount": 15000, "callback": False})

    assert (less.status_code, less.json()["error"]) == (400, "MIN_AMOUNT_ERR")
    assert (more.status_code, more.json()["error"]) == (400, "MAX_AMOUNT_ERR")
    assert exact.status_code == 200
    assert merchant.check(invoice_id)["count"] == 1


def test_allow_exceed_takes_more_up_to_the_maximum(merchant: Merchant) -> None:
    """Given an invoice of 15000 that may be exceeded up to 20000, then 20000 is taken and 20001 refused."""
    invoice_id = merchant.create_invoice(allow_exceed=True, maximum_amount=20000)["invoice_id"]
    other_id = merchant.create_invoice(allow_exceed=True, maximum_amount=20000)["invoice_id"]

    over = merchant.sim("POST", "/pay", {"invoice_id": other_id, "amount": 20001, "callback": False})
    merchant.pay(invoice_id, amount=20000)

    assert (over.status_code, over.json()["error"]) == (400, "MAX_AMOUNT_ERR")
    assert merchant.check(invoice_id)["paid_amount"] == 20000
    assert merchant.qpay("GET", f"/invoice/{invoice_id}").json()["maximum_amount"] == "20000.00"


def test_a_simple_invoice_lets_the_control_api_pay_any_amount(merchant: Merchant) -> None:
    """Given a simple invoice (no limits stated), then under- and over-payments are recorded for testing."""
    invoice_id = merchant.create_invoice()["invoice_id"]

    merchant.pay(invoice_id, amount=100)
    merchant.pay(invoice_id, amount=30000)

    assert merchant.check(invoice_id)["paid_amount"] == 30100


def test_an_expired_invoice_cannot_be_paid(merchant: Merchant) -> None:
    # Given one invoice that expired yesterday and one that expires tomorrow (enable_expiry as a string)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    expired = merchant.create_invoice(enable_expiry=True, expiry_date=yesterday)["invoice_id"]
    valid = merchant.create_invoice(enable_expiry="true", expiry_date=tomorrow)["invoice_id"]

    # When the customer pays each
    refused = merchant.sim("POST", "/pay", {"invoice_id": expired, "callback": False})
    merchant.pay(valid)

    # Then only the valid one takes the money, and both show their expiry
    assert (refused.status_code, refused.json()["error"]) == (400, "INVOICE_EXPIRED")
    assert merchant.check(expired)["count"] == 0
    shown = merchant.qpay("GET", f"/invoice/{valid}").json()
    assert (shown["enable_expiry"], shown["expiry_date"], shown["invoice_status"]) == (
        True,
        tomorrow,
        "CLOSED",
    )


# Ebarimt 3.0 invoices and receipts


def ebarimt_invoice(merchant: Merchant, tax_type: str) -> str:
    lines = [
        {
            "line_description": "Wheat seed",
            "line_quantity": "1.00",
            "line_unit_price": "1100.00",
            "classification_code": "0111100",
        }
    ]
    body = {
        **invoice_body(invoice_code="TEST_EB_INVOICE", tax_type=tax_type, district_code="3505", lines=lines)
    }
    body.pop("amount")
    response = merchant.qpay("POST", "/invoice", body)
    assert response.status_code == 200, response.text
    return str(response.json()["invoice_id"])


@pytest.mark.parametrize(("tax_type", "vat"), [("1", "100.00"), ("2", "0.00"), ("3", "0.00")])
def test_ebarimt_receipts_follow_the_invoices_tax_type_and_lines(
    merchant: Merchant, tax_type: str, vat: str
) -> None:
    """Given a paid Ebarimt 3.0 invoice of one line, when it is receipted, then VAT follows its tax type."""
    payment_id = merchant.pay(ebarimt_invoice(merchant, tax_type))["payment_id"]

    receipt = merchant.qpay(
        "POST", "/ebarimt_v3/create", {"payment_id": payment_id, "ebarimt_receiver_type": "CITIZEN"}
    ).json()

    assert (receipt["tax_type"], receipt["vat_amount"], receipt["amount"]) == (tax_type, vat, "1100.00")
    assert (receipt["ebarimt_district_code"], receipt["paid_by"]) == ("3505", "P2P")
    assert [(item["name"], item["quantity"], item["unit_price"]) for item in receipt["barimt_items"]] == [
        ("Wheat seed", "1.00", "1100.00")
    ]


def test_the_legacy_ebarimt_path_answers_with_both_spellings_and_can_be_read_back(merchant: Merchant) -> None:
    """Given a paid payment, when the legacy ebarimt/create is used, then old and 3.0 names are there."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]
    body = {"payment_id": payment_id, "ebarimt_receiver_type": "COMPANY", "ebarimt_receiver": "5395305"}

    created = merchant.qpay("POST", "/ebarimt/create", body).json()
    by_receipt = merchant.qpay("GET", f"/ebarimt/{created['id']}").json()
    by_payment = merchant.qpay("GET", f"/ebarimt/{payment_id}").json()
    unknown = merchant.qpay("GET", "/ebarimt/nope")
    v3 = merchant.qpay("POST", "/ebarimt_v3/create", {**body, "district_code": "3505"}).json()

    assert (created["ebarimt_status"], created["barimt_status"]) == ("REGISTERED", "REGISTERED")
    assert (created["ebarim_receiver_type"], created["ebarimt_receiver_type"]) == ("COMPANY", "COMPANY")
    assert by_receipt == by_payment == created
    assert (unknown.status_code, unknown.json()["error"]) == (404, "EBARIMT_NOTFOUND")
    assert v3["id"] == created["id"]  # one receipt per payment, whichever path asked
    assert "ebarimt_status" not in v3


def test_cancelling_a_receipt_adds_its_history_and_a_missing_one_is_refused(merchant: Merchant) -> None:
    """Given a registered receipt, when it is cancelled, then it is CANCELED with two history entries."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]
    other = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]
    merchant.qpay(
        "POST", "/ebarimt_v3/create", {"payment_id": payment_id, "ebarimt_receiver_type": "CITIZEN"}
    )

    cancelled = merchant.qpay("DELETE", f"/ebarimt_v3/{payment_id}").json()
    missing = merchant.qpay("DELETE", f"/ebarimt_v3/{other}")

    assert cancelled["barimt_status"] == "CANCELED"
    assert [entry["barimt_status"] for entry in cancelled["barimt_histories"]] == ["REGISTERED", "CANCELED"]
    assert (missing.status_code, missing.json()["error"]) == (400, "EBARIMT_NOT_REGISTERED")


def test_a_reversed_card_payment_cannot_be_reversed_again(merchant: Merchant) -> None:
    """Given a refunded card payment, when it is reversed again, then PAYMENT_ALREADY_CANCELED."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"], payment_type="CARD")["payment_id"]
    merchant.qpay("DELETE", f"/payment/refund/{payment_id}", {"note": "returned"})

    again = [merchant.qpay("DELETE", f"/payment/{verb}/{payment_id}", {}) for verb in ("refund", "cancel")]

    assert [(r.status_code, r.json()["error"]) for r in again] == [(400, "PAYMENT_ALREADY_CANCELED")] * 2
