"""The simulator's bank app page and the invoice listing behind it, over HTTP. (Its buttons are
clicked in a real browser in tests/e2e/test_checkout_page.py.)"""

from collections.abc import Iterator

import pytest
import requests

from local.qpay_simulator import SimulatorHandle, start_simulator

pytestmark = pytest.mark.integration

CREDENTIALS = ("TEST_MERCHANT", "local-sim-secret")


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    with start_simulator(port=0) as handle:
        yield handle


def create_invoice(base_url: str, number: int, amount: int) -> str:
    token = requests.post(f"{base_url}/v2/auth/token", auth=CREDENTIALS, timeout=10).json()["access_token"]
    response = requests.post(
        f"{base_url}/v2/invoice",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "invoice_code": "TEST_INVOICE",
            "sender_invoice_no": f"ps_{number}",
            "invoice_receiver_code": "terminal",
            "invoice_description": f"Order #{number}",
            "amount": amount,
            "callback_url": f"https://merchant.example/webhooks/qpay?session_id=ps_{number}",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["invoice_id"]


def test_invoices_are_listed_newest_first_with_what_was_paid(simulator):
    first = create_invoice(simulator.base_url, 1, 15000)
    second = create_invoice(simulator.base_url, 2, 8000)
    requests.post(
        f"{simulator.base_url}/_sim/pay",
        json={"invoice_id": second, "amount": 3000, "callback": False},
        timeout=10,
    ).raise_for_status()

    listing = requests.get(f"{simulator.base_url}/_sim/invoices", timeout=10).json()["invoices"]

    assert [invoice["invoice_id"] for invoice in listing] == [second, first]
    assert listing[0] | {"created_at": None} == {
        "invoice_id": second,
        "status": "OPEN",
        "sender_invoice_no": "ps_2",
        "invoice_description": "Order #2",
        "amount": 8000,
        "paid_amount": 3000,
        "created_at": None,
    }


def test_a_paid_invoice_is_listed_closed(simulator):
    invoice_id = create_invoice(simulator.base_url, 3, 500)
    requests.post(
        f"{simulator.base_url}/_sim/pay", json={"invoice_id": invoice_id, "callback": False}, timeout=10
    ).raise_for_status()

    (listed,) = requests.get(f"{simulator.base_url}/_sim/invoices", timeout=10).json()["invoices"]

    assert (listed["status"], listed["paid_amount"]) == ("CLOSED", 500)


def test_the_page_and_its_files_are_served_with_a_csp_and_do_not_count_as_qpay_calls(simulator):
    base = simulator.base_url
    before = requests.get(f"{base}/_sim/stats", timeout=10).json()["calls"]

    page = requests.get(f"{base}/_sim/bank", timeout=10)
    script = requests.get(f"{base}/_sim/bank.js", timeout=10)
    style = requests.get(f"{base}/_sim/bank.css", timeout=10)

    assert page.status_code == script.status_code == style.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert style.headers["Content-Type"] == "text/css; charset=utf-8"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert requests.get(f"{base}/_sim/stats", timeout=10).json()["calls"] == before
    assert requests.post(f"{base}/_sim/bank", timeout=10).status_code == 404
