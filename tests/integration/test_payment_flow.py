"""One payment end to end with the handlers in process: create -> customer pays at the simulator ->
QPay's callback -> verified with QPay -> one order and one PaymentCompleted event."""

import base64
import io

import pytest
import zxingcpp
from PIL import Image

from tests.support import create_payment, get_event, invoke, webhook_event

pytestmark = pytest.mark.integration


def test_create_answers_201_with_a_decodable_qr_and_a_pending_session(aws, sim):
    body = create_payment(
        description="Order #123", items=[{"name": "Tea", "quantity": 2, "unit_price": 7500}]
    )

    assert body["status"] == "PENDING"
    assert body["amount"] == 15000
    assert body["currency"] == "MNT"
    assert body["session_id"].startswith("ps_")
    assert body["short_url"].startswith("https://")
    assert body["deeplinks"]
    assert all(link["link"] for link in body["deeplinks"])
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(base64.b64decode(body["qr_image"]))))
    assert [barcode.text for barcode in decoded] == [body["qr_text"]]
    stored = aws.session(body["session_id"])
    assert stored["status"]["S"] == "PENDING"
    assert stored["invoice_id"]["S"] == body["invoice_id"]
    # The invoice QPay got calls back to our webhook, for this session.
    assert sim.callback_url(body["invoice_id"]).startswith(
        f"http://127.0.0.1:3000/webhooks/qpay?session_id={body['session_id']}&token="
    )


def test_paid_callback_ends_processed_with_one_order_and_one_event(aws, sim):
    created = create_payment()
    payment = sim.pay(created["invoice_id"])

    status, answer = invoke(
        "qpay_webhook",
        webhook_event(sim.callback_url(created["invoice_id"]), qpay_payment_id=payment["payment_id"]),
    )

    assert (status, answer) == (200, "SUCCESS")
    status, view = invoke("get_payment", get_event(created["session_id"]))
    assert status == 200
    assert view["status"] == "PROCESSED"
    assert view["paid_amount"] == 15000
    assert view["order_id"] == "ord_" + created["session_id"][3:]
    assert len(aws.orders()) == 1
    events = aws.events()
    assert len(events) == 1
    assert events[0]["detail-type"] == "PaymentCompleted"
    assert events[0]["source"] == "qpay.payments"
    assert events[0]["detail"]["order_id"] == view["order_id"]
    assert events[0]["detail"]["payment_id"] == payment["payment_id"]
    assert events[0]["detail"]["user_id"] == "alice"


def test_the_tenth_duplicate_callback_changes_nothing_and_asks_qpay_nothing(aws, sim):
    created = create_payment()
    payment = sim.pay(created["invoice_id"])
    event = webhook_event(sim.callback_url(created["invoice_id"]), qpay_payment_id=payment["payment_id"])
    invoke("qpay_webhook", event)
    checks_after_first = sim.calls("POST /v2/payment/check")

    answers = [invoke("qpay_webhook", event) for _ in range(9)]

    assert answers == [(200, "SUCCESS")] * 9
    assert len(aws.orders()) == 1
    assert len(aws.events()) == 1
    assert sim.calls("POST /v2/payment/check") == checks_after_first


def test_post_callbacks_with_a_json_body_are_accepted_too(aws, sim):
    created = create_payment()
    payment = sim.pay(created["invoice_id"])

    status, answer = invoke(
        "qpay_webhook",
        webhook_event(
            sim.callback_url(created["invoice_id"]), method="POST", body={"payment_id": payment["payment_id"]}
        ),
    )

    assert (status, answer) == (200, "SUCCESS")
    assert aws.session(created["session_id"])["status"]["S"] == "PROCESSED"


def test_a_callback_before_payment_changes_nothing(aws, sim):
    # The webhook body is a hint: QPay's payment check says nothing is paid yet.
    created = create_payment()

    status, answer = invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))

    assert (status, answer) == (200, "SUCCESS")
    assert aws.session(created["session_id"])["status"]["S"] == "PENDING"
    assert aws.orders() == []


def test_wrong_or_missing_token_is_401_and_asks_qpay_nothing(aws, sim):
    created = create_payment()
    url = sim.callback_url(created["invoice_id"])
    sim.pay(created["invoice_id"])
    forged = url.split("&token=")[0] + "&token=forged"

    for event in (
        webhook_event(forged),
        webhook_event(url.split("&token=")[0]),
        webhook_event("http://x/webhooks/qpay"),
    ):
        status, body = invoke("qpay_webhook", event)
        assert status == 401
        assert body["error"]["code"] == "UNAUTHORIZED"
    assert sim.calls("POST /v2/payment/check") == 0
    assert aws.session(created["session_id"])["status"]["S"] == "PENDING"


def test_unknown_session_with_a_valid_token_is_404(aws, sim):
    from qpay_common.domain.callback_token import callback_url

    from .conftest import WEBHOOK_SECRET

    status, body = invoke(
        "qpay_webhook", webhook_event(callback_url("http://x", WEBHOOK_SECRET, "ps_unknown"))
    )

    assert status == 404
    assert body["error"]["code"] == "NOT_FOUND"


def test_under_payment_fails_with_amount_mismatch_and_no_order(aws, sim):
    created = create_payment(amount=15000)
    sim.pay(created["invoice_id"], amount=10000)

    status, _ = invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))

    assert status == 200
    stored = aws.session(created["session_id"])
    assert stored["status"]["S"] == "FAILED"
    assert stored["failure_reason"]["S"] == "AMOUNT_MISMATCH"
    assert aws.orders() == []
    assert aws.events() == []


def test_a_top_up_completing_the_amount_is_still_fulfilled(aws, sim):
    created = create_payment(amount=15000)
    sim.pay(created["invoice_id"], amount=10000)
    invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))
    sim.pay(created["invoice_id"], amount=5000)

    invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))

    stored = aws.session(created["session_id"])
    assert stored["status"]["S"] == "PROCESSED"
    assert stored["paid_amount"]["N"] == "15000"
    assert len(aws.orders()) == 1


def test_over_payment_is_accepted_and_recorded(aws, sim):
    created = create_payment(amount=15000)
    sim.pay(created["invoice_id"], amount=20000)

    invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))

    stored = aws.session(created["session_id"])
    assert stored["status"]["S"] == "PROCESSED"
    assert stored["paid_amount"]["N"] == "20000"


def test_another_users_session_reads_as_not_found(aws, sim):
    created = create_payment()

    status, body = invoke("get_payment", get_event(created["session_id"], user_id="bob"))

    assert status == 404
    assert body == {"error": {"code": "NOT_FOUND", "message": "payment session not found", "details": []}}


def test_an_event_bus_failure_leaves_the_session_paid_and_a_retry_finishes_it(aws, sim, monkeypatch):
    from qpay_common import composition

    created = create_payment()
    sim.pay(created["invoice_id"])
    callback = webhook_event(sim.callback_url(created["invoice_id"]))
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    composition.reset()

    status, answer = invoke("qpay_webhook", callback)

    # The payment is recorded (order written) and QPay is told so; only the event is owed.
    assert (status, answer) == (200, "SUCCESS")
    assert aws.session(created["session_id"])["status"]["S"] == "PAID"
    assert len(aws.orders()) == 1
    assert aws.events() == []

    monkeypatch.setenv("EVENT_BUS_NAME", aws.bus_name)
    composition.reset()
    status, answer = invoke("qpay_webhook", callback)

    assert (status, answer) == (200, "SUCCESS")
    assert aws.session(created["session_id"])["status"]["S"] == "PROCESSED"
    assert len(aws.orders()) == 1
    assert len(aws.events()) == 1
