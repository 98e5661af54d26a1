"""The QPay client's merchant API beyond the payment flow, against the simulator over HTTP, built
the way a merchant's own Django or FastAPI app builds it (qpay_standalone, tokens in process):
full-form invoices, invoice and payment reads, payment lists, card cancels and refunds with
QPay's refusals, Ebarimt cancels, and token refresh and revocation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from local.qpay_simulator import SimulatorHandle, start_simulator
from qpay_common.adapters.qpay.client import QPayClient
from qpay_common.adapters.qpay.errors import QPayAuthError, QPayRejected, QPayTransportError
from qpay_common.adapters.qpay.models import FullInvoiceRequest, InvoiceLine, InvoiceRequest
from qpay_common.adapters.qpay.standalone import standalone_client

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "TEST_MERCHANT", "merchant-api-secret"
CALLBACK = "https://shop.example/webhooks/qpay?session_id=s&token=t"


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorHandle]:
    handle = start_simulator(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    yield handle
    handle.stop()


@pytest.fixture
def control(simulator: SimulatorHandle) -> Any:
    def call(method: str, path: str, body: Any = None) -> Any:
        response = requests.request(method, f"{simulator.base_url}/_sim/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    call("POST", "reset")
    return call


@pytest.fixture
def client(simulator: SimulatorHandle, control: Any) -> QPayClient:
    return standalone_client(f"{simulator.base_url}/v2", CLIENT_ID, CLIENT_SECRET, max_attempts=2)


def simple_invoice(client: QPayClient, number: str, amount: int = 15000) -> str:
    return client.create_invoice(
        InvoiceRequest(
            invoice_code="TEST_INVOICE",
            sender_invoice_no=number,
            invoice_description=f"Order {number}",
            amount=amount,
            callback_url=CALLBACK,
        )
    ).invoice_id


def pay(control: Any, invoice_id: str, **options: Any) -> str:
    return str(control("POST", "pay", {"invoice_id": invoice_id, "callback": False, **options})["payment_id"])


class TestInvoices:
    def test_a_full_form_invoice_is_totalled_from_its_lines_and_read_back(self, client):
        request = FullInvoiceRequest(
            invoice_code="TEST_INVOICE",
            sender_invoice_no="full-1",
            invoice_description="Two teas and a cake",
            callback_url=CALLBACK,
            # A Mongolian register number starts with two Cyrillic letters.
            invoice_receiver_data={"register": "УБ12345678", "name": "Bat", "phone": "88112233"},  # noqa: RUF001
            tax_type="1",
            lines=[
                InvoiceLine(line_description="Tea", line_quantity=2, line_unit_price=5000),
                InvoiceLine(
                    line_description="Cake",
                    line_unit_price=8000,
                    discounts=[{"description": "Loyalty", "amount": 1000}],
                ),
            ],
            note="table 4",
        )

        invoice = client.create_full_invoice(request)
        details = client.get_invoice(invoice.invoice_id)

        assert invoice.qr_text
        assert (details.invoice_status, details.total_amount, details.gross_amount) == ("OPEN", 17000, 18000)
        assert details.discount_amount == 1000
        assert details.sender_invoice_no == "full-1"

    def test_partial_payments_and_expiry_are_sent_and_enforced(self, client, control, simulator):
        expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
        invoice = client.create_full_invoice(
            FullInvoiceRequest(
                invoice_code="TEST_INVOICE",
                sender_invoice_no="full-2",
                invoice_description="Deposit",
                callback_url=CALLBACK,
                amount=10000,
                allow_partial=True,
                minimum_amount=2000,
                allow_exceed=False,
                enable_expiry=True,
                expiry_date=expiry,
            )
        )

        details = client.get_invoice(invoice.invoice_id)
        too_little = requests.post(
            f"{simulator.base_url}/_sim/pay",
            json={"invoice_id": invoice.invoice_id, "amount": 1000, "callback": False},
            timeout=10,
        )
        pay(control, invoice.invoice_id, amount=3000)

        assert (details.minimum_amount, details.total_amount) == (2000, 10000)
        assert too_little.json()["error"] == "MIN_AMOUNT_ERR"
        assert client.check_payment(invoice.invoice_id).total_paid == 3000

    def test_an_ebarimt_3_invoice_carries_district_and_classification(self, client):
        invoice = client.create_full_invoice(
            FullInvoiceRequest(
                invoice_code="TEST_EB_INVOICE",
                sender_invoice_no="eb-1",
                invoice_description="Receipted",
                callback_url=CALLBACK,
                district_code="3505",
                lines=[
                    InvoiceLine(line_description="Tea", line_unit_price=5000, classification_code="0000010")
                ],
            )
        )

        assert client.get_invoice(invoice.invoice_id).total_amount == 5000

    def test_an_ebarimt_3_invoice_without_lines_is_refused_with_qpays_code(self, client):
        with pytest.raises(QPayRejected) as refused:
            client.create_full_invoice(
                FullInvoiceRequest(
                    invoice_code="TEST_EB_INVOICE",
                    sender_invoice_no="eb-2",
                    invoice_description="No lines",
                    callback_url=CALLBACK,
                    district_code="3505",
                    amount=5000,
                )
            )

        assert refused.value.code == "INVOICE_LINE_REQUIRED"

    def test_an_invoice_needs_an_amount_or_lines_before_anything_is_sent(self):
        with pytest.raises(ValueError, match="amount or lines"):
            FullInvoiceRequest(
                invoice_code="TEST_INVOICE",
                sender_invoice_no="x",
                invoice_description="x",
                callback_url=CALLBACK,
            )


class TestPayments:
    def test_one_payment_is_read_with_its_type_and_fee(self, client, control):
        invoice_id = simple_invoice(client, "pay-1")
        p2p = pay(control, invoice_id, amount=10000)
        card = pay(control, invoice_id, amount=5000, payment_type="CARD")

        transfer, by_card = client.get_payment(p2p), client.get_payment(card)

        assert (transfer.payment_status, transfer.payment_amount, transfer.payment_fee) == (
            "PAID",
            10000,
            100,
        )
        assert (transfer.payment_type, transfer.is_card, transfer.object_id) == ("P2P", False, invoice_id)
        assert (by_card.payment_type, by_card.is_card) == ("CARD", True)

    def test_payments_are_listed_by_invoice_code_invoice_and_merchant_window(self, client, control):
        first = simple_invoice(client, "list-1")
        second = simple_invoice(client, "list-2")
        paid = [pay(control, first), pay(control, second, payment_type="CARD")]
        now = datetime.now(UTC)

        by_code = client.list_payments("INVOICE", "TEST_INVOICE")
        by_invoice = client.list_payments("INVOICE", second)
        window = client.list_merchant_payments(now - timedelta(minutes=5), now + timedelta(minutes=5))
        before = client.list_merchant_payments(now - timedelta(days=2), now - timedelta(days=1))
        paged = client.list_payments("MERCHANT", page_number=2, page_limit=1)

        assert by_code.count == 2
        assert {row.payment_id for row in by_code.rows} == set(paid)
        assert [row.payment_id for row in by_invoice.rows] == [paid[1]]
        assert by_invoice.rows[0].payment_type == "CARD"  # `paid_by` in list rows
        assert sorted(row.payment_id for row in window) == sorted(paid)
        assert before == []
        assert (paged.count, len(paged.rows)) == (2, 1)

    def test_a_card_payment_is_refunded_once(self, client, control):
        invoice_id = simple_invoice(client, "refund-1")
        card = pay(control, invoice_id, payment_type="CARD")

        client.refund_payment(card, "returned", callback_url=CALLBACK)
        with pytest.raises(QPayRejected) as twice:
            client.refund_payment(card, "again")

        assert twice.value.code == "PAYMENT_ALREADY_CANCELED"
        refunded = client.get_payment(card)
        assert (refunded.payment_status, refunded.is_returned) == ("REFUNDED", True)
        assert client.check_payment(invoice_id).total_paid == 0

    def test_a_card_payment_is_cancelled(self, client, control):
        card = pay(control, simple_invoice(client, "cancel-1"), payment_type="CARD")

        client.cancel_payment(card, "voided at the till")

        assert client.get_payment(card).payment_status == "CANCELLED"
        assert client.get_payment(card).is_returned

    @pytest.mark.parametrize("action", ["refund_payment", "cancel_payment"])
    def test_a_qr_payment_cannot_be_refunded_or_cancelled_by_api(self, client, control, action):
        transfer = pay(control, simple_invoice(client, f"qr-{action}"))

        with pytest.raises(QPayRejected) as refused:
            getattr(client, action)(transfer, "no")

        assert refused.value.code == "PAYMENT_NOT_CARD"
        assert client.get_payment(transfer).payment_status == "PAID"

    def test_an_unknown_payment_is_not_found(self, client):
        for call in (client.get_payment, lambda payment_id: client.refund_payment(payment_id, "x")):
            with pytest.raises(QPayRejected) as refused:
                call("123456789012345")
            assert (refused.value.code, refused.value.status) == ("PAYMENT_NOTFOUND", 404)

    def test_a_refund_is_not_retried_on_a_server_error(self, client, control):
        card = pay(control, simple_invoice(client, "refund-503"), payment_type="CARD")
        control("POST", "faults", {"rules": [{"path": "/v2/payment/refund/*", "status": 503}]})

        with pytest.raises(QPayTransportError, match="503"):
            client.refund_payment(card, "returned")

        assert control("GET", "stats")["calls"]["DELETE /v2/payment/refund/{id}"] == 1


class TestEbarimt:
    def test_a_receipt_is_cancelled_and_cancelling_again_is_harmless(self, client, control):
        payment_id = pay(control, simple_invoice(client, "eb-cancel"))
        client.create_ebarimt({"payment_id": payment_id, "ebarimt_receiver_type": "CITIZEN"})

        first = client.cancel_ebarimt(payment_id)
        again = client.cancel_ebarimt(payment_id)

        assert first.barimt_status == again.barimt_status == "CANCELED"
        assert first.ebarimt_receipt_id == again.ebarimt_receipt_id

    def test_a_payment_without_a_receipt_has_none_to_cancel(self, client, control):
        payment_id = pay(control, simple_invoice(client, "eb-none"))

        with pytest.raises(QPayRejected) as refused:
            client.cancel_ebarimt(payment_id)

        assert refused.value.code == "EBARIMT_NOT_REGISTERED"


class TestTokens:
    def test_one_token_serves_many_calls_and_a_revoked_one_is_replaced(self, client, control):
        for number in range(3):
            simple_invoice(client, f"tok-{number}")
        assert control("GET", "stats")["tokens_issued"] == 1

        control("POST", "tokens/expire", {})
        simple_invoice(client, "tok-after")

        assert control("GET", "stats")["tokens_issued"] == 2

    def test_a_token_about_to_expire_is_refreshed_with_the_refresh_token(self, client, control):
        control("POST", "faults", {"rules": [{"path": "/v2/auth/token", "expires_in": 30, "times": 1}]})
        simple_invoice(client, "ref-1")

        simple_invoice(client, "ref-2")  # 30 s left: inside the refresh margin

        calls = control("GET", "stats")["calls"]
        assert (calls["POST /v2/auth/token"], calls["POST /v2/auth/refresh"]) == (1, 1)

    def test_wrong_credentials_are_an_auth_error(self, simulator):
        wrong = standalone_client(f"{simulator.base_url}/v2", CLIENT_ID, "wrong", max_attempts=1)

        with pytest.raises(QPayAuthError):
            wrong.get_payment("1")
