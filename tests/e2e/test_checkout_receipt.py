"""The shopper's Ebarimt e-receipt on the checkout page, in headless Chromium against a local stack
with Ebarimt on: after the payment the page waits (bounded) for the receipt, then shows its QR code
(drawn in the page) and lottery number, in Mongolian and English, or says it will follow.

Each test leaves a screenshot of every page it opened in test-output/browser/.
"""

# The page speaks Mongolian Cyrillic on purpose.

import io
import json

import pytest
import requests
import zxingcpp
from PIL import Image

from tests.e2e.browser import PHONE
from tests.e2e.conftest import start_stack, stop_stack
from tests.e2e.test_checkout_page import assert_clean, checkout_url, create, text

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    running = start_stack({"EBARIMT_ENABLED": "true"})
    yield running
    stop_stack(running)


def run_ebarimt_job(stack):
    result = stack.lambda_client().invoke(FunctionName="EbarimtFunction", Payload=b"{}")
    assert "FunctionError" not in result
    return json.loads(result["Payload"].read())


def shopper_view(stack, session_id):
    response = requests.get(f"{stack.api}/payments/{session_id}", headers=stack.headers(), timeout=30)
    assert response.status_code == 200
    return response.json()


def paid_page(stack, open_page, *, query="", viewport=None):
    created = create(stack)
    page = open_page(
        checkout_url(stack, created["session_id"], query=query),
        **({"viewport": viewport} if viewport else {}),
    )
    page.wait_for_status("PENDING")
    stack.pay(created["invoice_id"])
    page.wait_for_event("qpay:paid", timeout_s=10)
    return created, page


def scanned(locator):
    return [code.text for code in zxingcpp.read_barcodes(Image.open(io.BytesIO(locator.screenshot())))]


def test_the_receipt_follows_the_payment_with_its_qr_code_and_lottery_number(stack, open_page):
    created, page = paid_page(stack, open_page)
    session_id = created["session_id"]

    # Paid, the receipt not yet registered: the page says it is being prepared and keeps asking.
    assert "Төлбөр амжилттай төлөгдлөө" in text(page, ".result")
    assert text(page, ".receipt").startswith("И-баримт")
    assert "И-баримтыг бэлтгэж байна" in text(page, ".receipt-note")
    asked_before = len(page.status_requests(session_id))
    page.pause(7)
    assert len(page.status_requests(session_id)) > asked_before

    # The Ebarimt job registers it; the page shows it on its next ask and stops.
    assert run_ebarimt_job(stack)["outcomes"] == {"registered": 1}
    page.wait_for_event("qpay:receipt", timeout_s=15)
    receipt = shopper_view(stack, session_id)["ebarimt"]
    [payment] = stack.sim_invoice(created["invoice_id"])["payments"]
    assert receipt["status"] == "REGISTERED"
    assert receipt["lottery"] == payment["ebarimt_lottery"]
    assert text(page, ".lottery") == receipt["lottery"]
    assert "Сугалааны дугаар" in text(page, ".lottery-row")
    assert "И-баримт аппликейшнээр" in text(page, ".receipt-hint")
    qr = page.page.locator("qpay-checkout svg.receipt-qr")
    assert qr.get_attribute("aria-label") == "И-баримтын QR код"
    assert scanned(qr) == [receipt["qr_data"]] == [payment["ebarimt_qr_data"]]
    assert not page.page.locator("qpay-checkout .receipt-note").is_visible()
    asked = len(page.status_requests(session_id))
    page.pause(7)
    assert len(page.status_requests(session_id)) == asked
    assert_clean(page, stack)


def test_in_english_on_a_phone(stack, open_page):
    created, page = paid_page(stack, open_page, query="?lang=en", viewport=PHONE)
    assert "Preparing your e-receipt" in text(page, ".receipt-note")

    run_ebarimt_job(stack)
    page.wait_for_event("qpay:receipt", timeout_s=15)

    receipt = shopper_view(stack, created["session_id"])["ebarimt"]
    assert "E-receipt" in text(page, ".receipt h3")
    assert "Lottery number" in text(page, ".lottery-row")
    assert text(page, ".lottery") == receipt["lottery"]
    qr = page.page.locator("qpay-checkout svg.receipt-qr")
    assert qr.get_attribute("aria-label") == "E-receipt QR code"
    assert scanned(qr) == [receipt["qr_data"]]
    box = qr.bounding_box()
    assert box is not None
    assert 0 <= box["x"] <= box["x"] + box["width"] <= PHONE["width"]
    assert page.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert_clean(page, stack)


def test_a_receipt_that_does_not_come_in_time_is_promised_and_the_page_stops_asking(stack, open_page):
    created = create(stack)
    session_id = created["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")
    page.page.evaluate("document.querySelector('qpay-checkout').setAttribute('receipt-wait', '8000')")

    stack.pay(created["invoice_id"])
    page.wait_for_event("qpay:paid", timeout_s=10)
    page.page.wait_for_function(
        "() => document.querySelector('qpay-checkout').shadowRoot"
        ".querySelector('.receipt').dataset.state === 'later'",
        timeout=15000,
    )

    assert "И-баримт дараа ирнэ" in text(page, ".receipt-note")
    assert not page.page.locator("qpay-checkout svg.receipt-qr").count()
    asked = len(page.status_requests(session_id))
    page.pause(7)
    assert len(page.status_requests(session_id)) == asked
    assert page.events("qpay:receipt") == []
    assert shopper_view(stack, session_id)["ebarimt"]["status"] == "PENDING"
    assert_clean(page, stack)
