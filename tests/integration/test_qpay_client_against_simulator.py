"""Our own QPay client reads every answer the simulator now sends in QPay's full shapes.

The client (qpay_common.adapters.qpay.client and qpay_models) is tolerant on purpose: these tests pin what it
extracts from each full answer, in each state, so tolerance never turns into misreading.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.qpay_simulator import SimulatorHandle, start_simulator
from qpay_common.adapters.qpay.client import QPayAuthClient, QPayClient, QPayTransport
from qpay_common.adapters.qpay.errors import QPayNoReceipt, QPayRejected
from qpay_common.adapters.qpay.models import InvoiceRequest

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "TEST_MERCHANT", "client-test-secret"


class FreshTokens:
    """The token source our client needs, without the DynamoDB cache: one token, kept until invalid."""

    def __init__(self, auth: QPayAuthClient) -> None:
        self._auth = auth
        self._token: str | None = None

    def get_token(self) -> str:
        if self._token is None:
            self._token = self._auth.fetch_token().access_token
        return self._token

    def invalidate(self, access_token: str) -> None:
        if self._token == access_token:
            self._token = None


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorHandle]:
    handle = start_simulator(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    yield handle
    handle.stop()


def _transport(base_url: str) -> QPayTransport:
    session = requests.Session()
    session.trust_env = False
    return QPayTransport(
        f"{base_url}/v2",
        connect_timeout=2,
        read_timeout=10,
        max_attempts=2,
        budget_seconds=20,
        session=session,
    )


@pytest.fixture
def client(simulator: SimulatorHandle) -> QPayClient:
    requests.post(f"{simulator.base_url}/_sim/reset", timeout=10).raise_for_status()
    transport = _transport(simulator.base_url)
    return QPayClient(transport, FreshTokens(QPayAuthClient(transport, CLIENT_ID, CLIENT_SECRET)))


@pytest.fixture
def pay(simulator: SimulatorHandle) -> Any:
    def pay(invoice_id: str, **fields: Any) -> str:
        response = requests.post(
            f"{simulator.base_url}/_sim/pay",
            json={"invoice_id": invoice_id, "callback": False, **fields},
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["payment_id"])

    return pay


@pytest.fixture
def refund(simulator: SimulatorHandle) -> Any:
    """The merchant's back office refunding a card payment, with a token of its own."""

    def refund(payment_id: str) -> None:
        base = f"{simulator.base_url}/v2"
        token = requests.post(f"{base}/auth/token", auth=(CLIENT_ID, CLIENT_SECRET), timeout=10).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        requests.delete(
            f"{base}/payment/refund/{payment_id}", json={}, headers=headers, timeout=10
        ).raise_for_status()

    return refund


def _invoice(client: QPayClient, number: str, amount: int = 15000) -> str:
    request = InvoiceRequest(
        invoice_code="TEST_INVOICE",
        sender_invoice_no=number,
        invoice_description=f"Order {number}",
        amount=amount,
        callback_url=f"https://merchant.example/webhooks/qpay?session_id={number}&token=t",
    )
    return client.create_invoice(request).invoice_id


def test_token_grant_reads_the_epoch_expiries(simulator: SimulatorHandle) -> None:
    """Given the full token answer, when our auth client reads it, then both expiries are epochs."""
    grant = QPayAuthClient(_transport(simulator.base_url), CLIENT_ID, CLIENT_SECRET).fetch_token()
    refreshed = QPayAuthClient(_transport(simulator.base_url), CLIENT_ID, CLIENT_SECRET).refresh_token(
        grant.refresh_token or ""
    )
    now = time.time()
    assert grant.access_expires_at(now) > now + 23 * 3600
    assert (grant.refresh_expires_at(now) or 0) > grant.access_expires_at(now)
    assert refreshed.access_token != grant.access_token


def test_invoice_answer_gives_the_qr_short_url_and_deeplinks(client: QPayClient) -> None:
    request = InvoiceRequest(
        invoice_code="TEST_INVOICE",
        sender_invoice_no="own-1",
        invoice_description="Order own-1",
        amount=15000,
        callback_url="https://merchant.example/webhooks/qpay?session_id=own-1&token=t",
    )

    invoice = client.create_invoice(request)

    assert invoice.short_url is not None
    assert invoice.short_url.startswith("https://s.qpay.mn/")
    assert invoice.qr_image.startswith("iVBOR")
    assert [link.name for link in invoice.urls][:1] == ["Khan bank"]


def test_payment_check_is_read_in_every_state(client: QPayClient, pay: Any, refund: Any) -> None:
    # Given invoices unpaid, partly paid, paid by transfer, paid by card, and paid then refunded
    unpaid = _invoice(client, "own-2")
    partial = _invoice(client, "own-3")
    pay(partial, amount=5000)
    p2p = _invoice(client, "own-4")
    p2p_payment = pay(p2p)
    card = _invoice(client, "own-5")
    pay(card, payment_type="CARD")
    refunded = _invoice(client, "own-6")
    refund(pay(refunded, payment_type="CARD"))

    # When our client checks each, then only PAID rows count, net-of-fee transfer amounts are ignored
    assert (client.check_payment(unpaid).count, client.check_payment(unpaid).total_paid) == (0, 0)
    assert client.check_payment(partial).total_paid == 5000
    paid = client.check_payment(p2p)
    assert (paid.total_paid, [row.payment_id for row in paid.paid_rows]) == (15000, [p2p_payment])
    assert client.check_payment(card).total_paid == 15000
    after_refund = client.check_payment(refunded)
    assert (after_refund.count, after_refund.total_paid, after_refund.rows[0].payment_status) == (
        1,
        0,
        "REFUNDED",
    )


def test_ebarimt_answer_gives_the_receipt(client: QPayClient, pay: Any) -> None:
    """Given a paid payment, when our client registers a receipt, then it reads its id, QR data, lottery."""
    payment_id = pay(_invoice(client, "own-7"))

    receipt = client.create_ebarimt(
        {"payment_id": payment_id, "ebarimt_receiver_type": "CITIZEN", "district_code": "3505"}
    )

    assert receipt.barimt_status == "REGISTERED"
    assert receipt.ebarimt_receipt_id is not None
    assert len(receipt.ebarimt_receipt_id) == 33
    assert receipt.ebarimt_qr_data
    assert receipt.ebarimt_lottery


@pytest.mark.parametrize(
    ("state", "code"),
    [("paid", "INVOICE_PAID"), ("cancelled", "INVOICE_ALREADY_CANCELED"), ("unknown", "INVOICE_NOTFOUND")],
)
def test_cancel_refusals_carry_the_codes_the_payments_service_acts_on(
    client: QPayClient, pay: Any, state: str, code: str
) -> None:
    """Given a paid, cancelled or unknown invoice, when it is cancelled, then the refusal's code is read."""
    invoice_id = _invoice(client, f"own-cancel-{state}")
    if state == "paid":
        pay(invoice_id)
    elif state == "cancelled":
        client.cancel_invoice(invoice_id)
    else:
        invoice_id = "4f1c0e0e-0000-4000-8000-000000000000"

    with pytest.raises(QPayRejected) as refused:
        client.cancel_invoice(invoice_id)

    assert refused.value.code == code


def _faults(simulator: SimulatorHandle, *rules: dict[str, Any]) -> None:
    requests.post(
        f"{simulator.base_url}/_sim/faults", json={"rules": list(rules)}, timeout=10
    ).raise_for_status()


@pytest.mark.parametrize("form", ["error", "code", "error_code", "message"])
def test_a_refusal_is_read_in_each_of_qpays_error_forms(
    client: QPayClient, pay: Any, simulator: SimulatorHandle, form: str
) -> None:
    """Given a paid invoice and QPay wording errors in one form, when it is cancelled, the code is read."""
    invoice_id = _invoice(client, f"own-form-{form}")
    pay(invoice_id)
    _faults(simulator, {"path": "/v2/invoice/*", "method": "DELETE", "error_form": form})

    with pytest.raises(QPayRejected) as refused:
        client.cancel_invoice(invoice_id)

    assert (refused.value.status, refused.value.code) == (400, "INVOICE_PAID")


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"body": {}}, "BARIMT_STATUS_MISSING"),
        ({"barimt_status": "CREATED"}, "BARIMT_STATUS_CREATED"),
        ({"body": {"error": "EBARIMT_NOT_REGISTERED", "message": "Not enabled"}}, "EBARIMT_NOT_REGISTERED"),
    ],
    ids=["empty 200", "another status", "QPay code in a 200"],
)
def test_an_ebarimt_200_that_is_no_receipt_raises_with_the_reason(
    client: QPayClient, pay: Any, simulator: SimulatorHandle, rule: dict[str, Any], code: str
) -> None:
    payment_id = pay(_invoice(client, f"own-eb-{code}"))
    _faults(simulator, {"path": "/v2/ebarimt_v3/create", "times": 1, **rule})
    request = {"payment_id": payment_id, "ebarimt_receiver_type": "CITIZEN", "district_code": "3505"}

    with pytest.raises(QPayNoReceipt) as refused:
        client.create_ebarimt(request)
    registered = client.create_ebarimt(request)

    assert refused.value.code == code
    assert (registered.barimt_status, len(registered.ebarimt_receipt_id or "")) == ("REGISTERED", 33)


def test_invoice_and_payment_details_keep_their_money_fields_in_every_state(
    client: QPayClient, pay: Any
) -> None:
    # Given an open invoice, a paid one and a cancelled one
    open_id = _invoice(client, "own-get-open", amount=12000)
    paid_id = _invoice(client, "own-get-paid")
    payment_id = pay(paid_id)
    cancelled_id = _invoice(client, "own-get-cancelled")
    client.cancel_invoice(cancelled_id)

    # When our client reads each invoice and the payment
    open_invoice = client.get_invoice(open_id)
    paid_invoice = client.get_invoice(paid_id)
    cancelled = client.get_invoice(cancelled_id)
    payment = client.get_payment(payment_id)

    # Then the totals are whole MNT from QPay's strings, and the payment points at its invoice
    assert (open_invoice.invoice_status, open_invoice.total_amount, open_invoice.payments) == (
        "OPEN",
        12000,
        [],
    )
    assert (open_invoice.minimum_amount, open_invoice.maximum_amount) == (None, None)
    assert (paid_invoice.invoice_status, paid_invoice.total_amount) == ("CLOSED", 15000)
    assert [(p.payment_id, p.payment_amount) for p in paid_invoice.payments] == [(payment_id, 15000)]
    assert cancelled.invoice_status == "CANCELLED"
    assert (payment.payment_id, payment.is_paid, payment.payment_amount, payment.object_id) == (
        payment_id,
        True,
        15000,
        paid_id,
    )
