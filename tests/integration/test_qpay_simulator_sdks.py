"""Third-party QPay SDKs, installed from PyPI, pointed at the simulator as a merchant would point them.

- `qpay-client` (Amraa1/qpay_client): strict pydantic schemas built from sandbox answers, so a
  missing or mistyped field fails its call. Before the simulator carried QPay's full shapes, 4 of
  its 11 calls worked (issue 13).
- `qpay-py` (qpay-sdk/qpay-py): lenient dataclasses; it is the SDK that calls the Ebarimt 3.0
  endpoints and reads the error code from `error`.
Each test asserts what the merchant's code would read through the SDK, not only that no call raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import requests
from qpay import QPayClient as QPaySdkClient
from qpay import QPayConfig
from qpay import QPayError as QPaySdkError
from qpay.types import (
    CreateEbarimtInvoiceRequest,
    CreateEbarimtRequest,
    CreateSimpleInvoiceRequest,
    EbarimtInvoiceLine,
    Offset,
    PaymentCancelRequest,
    PaymentCheckRequest,
    PaymentListRequest,
    PaymentRefundRequest,
    TaxEntry,
)
from qpay_client.v2 import QPayClient, QPayError, QPaySettings
from qpay_client.v2 import schemas as qpc
from qpay_client.v2.enums import ObjectType, PaymentStatus, TransactionType

from local.qpay_simulator import SimulatorHandle, start_simulator
from tests.support import SimulatorControl

pytestmark = pytest.mark.integration

USERNAME, PASSWORD = "TEST_MERCHANT", "local-sim-secret"
CALLBACK = "https://merchant.example/qpay/callback?order=1"


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorHandle]:
    handle = start_simulator(port=0, client_id=USERNAME, client_secret=PASSWORD)
    yield handle
    handle.stop()


class Customer:
    """The customer's bank app: the simulator's control API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.trust_env = False

    def pay(self, invoice_id: str, **fields: Any) -> str:
        return str(
            SimulatorControl(self.base_url, callback_by_default=False).pay(invoice_id, **fields)["payment_id"]
        )

    def revoke_tokens(self) -> None:
        self.http.post(f"{self.base_url}/_sim/tokens/expire", json={}, timeout=10).raise_for_status()

    def token_calls(self) -> tuple[int, int]:
        calls = self.http.get(f"{self.base_url}/_sim/stats", timeout=10).json()["calls"]
        return calls.get("POST /v2/auth/token", 0), calls.get("POST /v2/auth/refresh", 0)


@pytest.fixture
def customer(simulator: SimulatorHandle) -> Customer:
    customer = Customer(simulator.base_url)
    customer.http.post(f"{simulator.base_url}/_sim/reset", timeout=10).raise_for_status()
    return customer


# The SDK fixtures take `customer` so the simulator is reset before they log in.
@pytest.fixture
def strict_sdk(simulator: SimulatorHandle, customer: Customer) -> Iterator[QPayClient]:
    settings = QPaySettings(
        username=USERNAME,
        password=PASSWORD,
        invoice_code="TEST_INVOICE",
        base_url=f"{simulator.base_url}/v2",
        client_retries=0,
        payment_check_retries=0,
    )
    # No proxy from the environment between the SDK and loopback.
    http = httpx.Client(base_url=settings.base_url, timeout=10, trust_env=False)
    with QPayClient(settings, client=http) as client:
        yield client


@pytest.fixture
def lenient_sdk(simulator: SimulatorHandle, customer: Customer) -> Iterator[QPaySdkClient]:
    config = QPayConfig(
        base_url=simulator.base_url,
        username=USERNAME,
        password=PASSWORD,
        invoice_code="TEST_INVOICE",
        callback_url=CALLBACK,
    )
    client = QPaySdkClient(config, http_client=httpx.Client(timeout=10, trust_env=False))
    yield client
    client.close()


def _simple_invoice(number: str, amount: int = 15000) -> qpc.InvoiceCreateSimpleRequest:
    return qpc.InvoiceCreateSimpleRequest(
        sender_invoice_no=number,
        invoice_receiver_code="terminal",
        invoice_description=f"Order {number}",
        sender_branch_code="SALBAR1",
        amount=Decimal(amount),
        callback_url=CALLBACK,
    )


def _check(client: QPayClient, invoice_id: str) -> qpc.PaymentCheckResponse:
    return client.payment_check(
        qpc.PaymentCheckRequest(
            object_type=ObjectType.invoice,
            object_id=invoice_id,
            offset=qpc.Offset(page_number=1, page_limit=100),
        )
    )


# qpay-client: every call its typed schemas validate


def test_strict_sdk_creates_reads_and_checks_a_simple_invoice(
    strict_sdk: QPayClient, customer: Customer
) -> None:
    # Given an invoice created through the SDK
    created = strict_sdk.invoice_create(_simple_invoice("sdk-1"))
    assert created.qPay_shortUrl.startswith("https://")
    assert created.urls

    # When it is read, paid by bank transfer and checked
    open_invoice = strict_sdk.invoice_get(created.invoice_id)
    payment_id = customer.pay(created.invoice_id)
    check = _check(strict_sdk, created.invoice_id)
    closed = strict_sdk.invoice_get(created.invoice_id)

    # Then every typed field the SDK requires is there, with the values QPay would give
    assert (open_invoice.invoice_status.value, open_invoice.total_amount) == ("OPEN", Decimal("15000.00"))
    assert (open_invoice.surcharge_amount, open_invoice.inputs) == (Decimal("0.00"), [])
    assert (check.count, check.paid_amount) == (1, Decimal(15000))
    row = check.rows[0]
    assert (row.payment_id, row.payment_status, row.payment_type) == (
        payment_id,
        PaymentStatus.paid,
        TransactionType.p2p,
    )
    assert row.trx_fee == Decimal("150.00")
    assert row.p2p_transactions[0].amount == Decimal("14850.00")
    assert closed.invoice_status.value == "CLOSED"
    assert [p.payment_id for p in closed.payments or []] == [payment_id]


def test_strict_sdk_reads_p2p_and_card_payments(strict_sdk: QPayClient, customer: Customer) -> None:
    """Given a P2P and a card payment, when the SDK reads each, then both carry their transaction arrays."""
    p2p_id = customer.pay(strict_sdk.invoice_create(_simple_invoice("sdk-2")).invoice_id)
    card_id = customer.pay(
        strict_sdk.invoice_create(_simple_invoice("sdk-3")).invoice_id, payment_type="CARD"
    )

    p2p = strict_sdk.payment_get(p2p_id)
    card = strict_sdk.payment_get(card_id)

    assert (p2p.transaction_type, len(p2p.p2p_transactions), p2p.card_transactions) == (
        TransactionType.p2p,
        1,
        [],
    )
    assert (card.transaction_type, card.p2p_transactions, len(card.card_transactions)) == (
        TransactionType.card,
        [],
        1,
    )
    assert card.card_transactions[0].settlement_status == "PENDING"
    assert p2p.payment_fee == card.payment_fee == Decimal("150.00")


def test_strict_sdk_lists_payments_by_invoice_code(strict_sdk: QPayClient, customer: Customer) -> None:
    """Given two paid invoices, when the SDK lists by invoice code, then rows name and describe them."""
    for number in ("sdk-4", "sdk-5"):
        customer.pay(strict_sdk.invoice_create(_simple_invoice(number)).invoice_id)
    now = datetime.now(UTC)

    listed = strict_sdk.payment_list(
        qpc.PaymentListRequest(
            object_type=ObjectType.invoice,
            object_id="TEST_INVOICE",
            start_date=now - timedelta(days=1),
            end_date=now + timedelta(days=1),
            offset=qpc.Offset(page_number=1, page_limit=20),
        )
    )

    assert listed.count == 2
    assert sorted(row.payment_description for row in listed.rows) == ["Order sdk-4", "Order sdk-5"]
    assert all(row.payment_name and row.paid_by is TransactionType.p2p for row in listed.rows)


def test_strict_sdk_full_form_invoice_without_amount_is_totalled_from_its_lines(
    strict_sdk: QPayClient,
) -> None:
    # Given a full-form invoice with lines (discount, surcharge, tax) and no amount
    request = qpc.InvoiceCreateRequest(
        sender_invoice_no="sdk-6",
        invoice_receiver_code="terminal",
        invoice_description="Tea order",
        callback_url=CALLBACK,
        allow_partial=True,
        minimum_amount=Decimal(5000),
        lines=[
            qpc.Line(
                line_description="Green tea",
                line_quantity=Decimal(2),
                line_unit_price=Decimal(7500),
                discounts=[qpc.Discount(description="Loyalty", amount=Decimal(1000))],
                surcharges=[qpc.Surcharge(description="Delivery", amount=Decimal(2000))],
                taxes=[qpc.Tax(description="VAT", amount=Decimal(500))],
            )
        ],
    )

    # When it is created, read and cancelled
    created = strict_sdk.invoice_create(request)
    invoice = strict_sdk.invoice_get(created.invoice_id)
    status = strict_sdk.invoice_cancel(created.invoice_id)

    # Then QPay totalled the lines, and the cancel that follows finds the invoice
    assert (invoice.gross_amount, invoice.total_amount) == (Decimal("15000.00"), Decimal("16500.00"))
    assert (invoice.tax_amount, invoice.surcharge_amount) == (Decimal("500.00"), Decimal("2000.00"))
    assert invoice.allow_partial is True
    assert invoice.minimum_amount == Decimal("5000.00")
    assert invoice.lines
    assert invoice.lines[0].line_quantity == Decimal(2)
    assert status == 200


def test_strict_sdk_refunds_and_cancels_card_payments(strict_sdk: QPayClient, customer: Customer) -> None:
    """Given two card payments, when one is refunded and one cancelled, then both answer 200, once."""
    invoice_id = strict_sdk.invoice_create(_simple_invoice("sdk-7")).invoice_id
    refunded = customer.pay(invoice_id, payment_type="CARD")
    cancelled = customer.pay(
        strict_sdk.invoice_create(_simple_invoice("sdk-8")).invoice_id, payment_type="CARD"
    )

    assert strict_sdk.payment_refund(refunded, qpc.PaymentRefundRequest(note="returned")) == 200
    assert strict_sdk.payment_cancel(cancelled, qpc.PaymentCancelRequest(note="void")) == 200
    with pytest.raises(QPayError) as again:
        strict_sdk.payment_refund(refunded, qpc.PaymentRefundRequest(note="twice"))
    assert again.value.error_key == "PAYMENT_ALREADY_CANCELED"


def test_strict_sdk_registers_and_reads_a_legacy_ebarimt(strict_sdk: QPayClient, customer: Customer) -> None:
    """Given a paid P2P payment, when the SDK uses the legacy ebarimt/create and get, then both parse."""
    payment_id = customer.pay(strict_sdk.invoice_create(_simple_invoice("sdk-9")).invoice_id)

    receipt = strict_sdk.ebarimt_create(
        qpc.EbarimtCreateRequest(
            payment_id=payment_id, ebarimt_receiver_type="CITIZEN", ebarimt_receiver="88614450"
        )
    )
    again = strict_sdk.ebarimt_get(receipt.id)

    assert (receipt.ebarimt_status, receipt.g_payment_id) == ("REGISTERED", Decimal(payment_id))
    assert receipt.vat_amount == Decimal("1363.64")  # 15000 / 11: prices include VAT
    assert again.id == receipt.id
    assert again.ebarimt_lottery == receipt.ebarimt_lottery


def test_strict_sdk_sees_qpay_error_codes_and_recovers_from_a_revoked_token(
    strict_sdk: QPayClient, customer: Customer
) -> None:
    # Given a paid invoice, and then every access token revoked
    invoice_id = strict_sdk.invoice_create(_simple_invoice("sdk-10")).invoice_id
    customer.pay(invoice_id)
    customer.revoke_tokens()
    tokens_before, refreshes_before = customer.token_calls()

    # When the merchant tries to cancel the paid invoice
    with pytest.raises(QPayError) as refused:
        strict_sdk.invoice_cancel(invoice_id)

    # Then the SDK refreshed its token on the 401, and reads INVOICE_PAID from the error body
    assert refused.value.error_key == "INVOICE_PAID"
    assert customer.token_calls() == (tokens_before, refreshes_before + 1)


# qpay-py: the Ebarimt 3.0 calls and the error code in `error`


def test_lenient_sdk_runs_the_ebarimt_invoice_flow(lenient_sdk: QPaySdkClient, customer: Customer) -> None:
    # Given an Ebarimt 3.0 invoice (second invoice code, district, classified lines, no amount)
    invoice = lenient_sdk.create_ebarimt_invoice(
        CreateEbarimtInvoiceRequest(
            invoice_code="TEST_EB_INVOICE",
            sender_invoice_no="py-1",
            invoice_receiver_code="terminal",
            invoice_description="Seeds",
            tax_type="1",
            district_code="3505",
            callback_url=CALLBACK,
            lines=[
                EbarimtInvoiceLine(
                    line_description="Wheat seed",
                    line_quantity="2",
                    line_unit_price="1000",
                    classification_code="0111100",
                    taxes=[TaxEntry(tax_code="VAT", description="VAT", amount=90.91)],
                )
            ],
        )
    )

    # When the customer pays, and the merchant checks, reads and registers an e-receipt, then cancels it
    payment_id = customer.pay(invoice.invoice_id)
    check = lenient_sdk.check_payment(
        PaymentCheckRequest(object_type="INVOICE", object_id=invoice.invoice_id)
    )
    payment = lenient_sdk.get_payment(payment_id)
    receipt = lenient_sdk.create_ebarimt(
        CreateEbarimtRequest(
            payment_id=payment_id, ebarimt_receiver_type="CITIZEN", ebarimt_receiver="88614450"
        )
    )
    cancelled = lenient_sdk.cancel_ebarimt(payment_id)

    # Then each answer carries the values the SDK maps
    assert invoice.qpay_short_url.startswith("https://s.qpay.mn/")
    assert (check.count, check.paid_amount) == (1, 2090.91)  # 2 x 1000 + VAT 90.91, from the lines
    assert check.rows[0].p2p_transactions[0].amount == "2070.00"  # net of the 1% fee (20.91)
    assert (payment.transaction_type, payment.object_id) == ("P2P", invoice.invoice_id)
    assert (receipt.barimt_status, receipt.ebarimt_receiver_phone) == ("REGISTERED", "88*144*0")
    assert len(receipt.ebarimt_receipt_id) == 33
    assert receipt.barimt_items[0].name == "Wheat seed"
    assert (cancelled.barimt_status, len(cancelled.barimt_histories)) == ("CANCELED", 2)


def test_lenient_sdk_lists_refunds_and_reads_error_codes(
    lenient_sdk: QPaySdkClient, customer: Customer
) -> None:
    """Given a card payment, when it is listed, refunded, cancelled, its invoice cancelled, each answers."""
    invoice = lenient_sdk.create_simple_invoice(
        CreateSimpleInvoiceRequest(
            invoice_code="TEST_INVOICE",
            sender_invoice_no="py-2",
            invoice_receiver_code="terminal",
            invoice_description="Order py-2",
            amount=15000,
            callback_url=CALLBACK,
        )
    )
    payment_id = customer.pay(invoice.invoice_id, payment_type="CARD")
    today = datetime.now(UTC).strftime("%Y-%m-%d")

    listed = lenient_sdk.list_payments(
        PaymentListRequest(
            object_type="INVOICE",
            object_id="TEST_INVOICE",
            start_date=today,
            end_date=today,
            offset=Offset(page_number=1, page_limit=20),
        )
    )
    lenient_sdk.refund_payment(payment_id, PaymentRefundRequest(note="returned"))
    with pytest.raises(QPaySdkError) as cancel_refunded:
        lenient_sdk.cancel_payment(payment_id, PaymentCancelRequest(note="too late"))
    with pytest.raises(QPaySdkError) as cancel_paid_invoice:
        lenient_sdk.cancel_invoice(invoice.invoice_id)

    assert [(row.payment_id, row.paid_by, row.payment_description) for row in listed.rows] == [
        (payment_id, "CARD", "Order py-2")
    ]
    assert lenient_sdk.get_payment(payment_id).payment_status == "REFUNDED"
    assert (cancel_refunded.value.status_code, cancel_refunded.value.code) == (
        400,
        "PAYMENT_ALREADY_CANCELED",
    )
    assert (cancel_paid_invoice.value.status_code, cancel_paid_invoice.value.code) == (400, "INVOICE_PAID")
