"""The README walkthrough, driven over HTTP the way a client and QPay would."""

import base64
import io
import json
from datetime import datetime

import pytest
import requests
import zxingcpp
from PIL import Image

from local.dev_token import mint_token
from qpay_common.domain.callback_token import callback_token
from tests.support import get_event

pytestmark = pytest.mark.e2e


def test_stack_prints_the_urls_and_a_walkthrough(stack):
    banner = "\n".join(stack.output)
    assert stack.api in banner
    assert stack.sim in banner
    assert "_sim/pay" in banner
    assert "token" in banner


def test_a_payment_created_paid_and_read_back_is_processed_with_one_order_and_one_event(stack):
    created = stack.create({"amount": 15000, "description": "Order #123", "metadata": {"cart_id": "c-1"}})
    assert created.status_code == 201, created.text
    body = created.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["qr_image"])))
    assert image.format == "PNG"
    assert [code.text for code in zxingcpp.read_barcodes(image)] == [body["qr_text"]]

    paid = stack.pay(body["invoice_id"])

    # The simulator called our webhook the way QPay does, and got QPay's expected answer.
    assert paid["callback"]["status"] == 200
    assert paid["callback"]["body"] == "SUCCESS"
    view = requests.get(
        f"{stack.api}/payments/{body['session_id']}", headers=stack.headers(), timeout=30
    ).json()
    assert view["status"] == "PROCESSED"
    assert view["paid_amount"] == 15000
    assert len(stack.orders(body["session_id"])) == 1
    events = stack.events(body["session_id"])
    assert len(events) == 1
    assert events[0]["detail-type"] == "PaymentCompleted"
    assert events[0]["detail"]["order_id"] == view["order_id"]
    assert events[0]["detail"]["metadata"] == {"cart_id": "c-1"}


def test_settings_in_the_environment_of_make_run_reach_the_handlers(stack):
    # The suite's stack was started with SESSION_EXPIRY_MINUTES=7.
    body = stack.create({"amount": 100}).json()
    created_at = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert round((expires_at - created_at).total_seconds()) == 7 * 60


def test_the_tenth_duplicate_callback_leaves_one_order_and_one_event(stack):
    body = stack.create({"amount": 5000}).json()
    payment = stack.pay(body["invoice_id"])
    callback = stack.sim_invoice(body["invoice_id"])["callback_url"]

    answers = [
        requests.get(callback, params={"qpay_payment_id": payment["payment_id"]}, timeout=30)
        for _ in range(10)
    ]

    assert [(answer.status_code, answer.text) for answer in answers] == [(200, "SUCCESS")] * 10
    assert len(stack.orders(body["session_id"])) == 1
    assert len(stack.events(body["session_id"])) == 1
    # The callback's HMAC token is a secret: it appears nowhere in the stack's logs.
    token = callback.split("token=")[1].split("&")[0]
    assert all(token not in line for line in stack.output)


def test_webhook_wrong_token_is_401_and_unknown_session_is_404(stack):
    body = stack.create({"amount": 5000}).json()
    callback = stack.sim_invoice(body["invoice_id"])["callback_url"]
    base = callback.split("?")[0]

    forged = requests.get(base, params={"session_id": body["session_id"], "token": "forged"}, timeout=30)
    missing = requests.post(base, json={"invoice_id": body["invoice_id"]}, timeout=30)

    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "UNAUTHORIZED"
    assert missing.status_code == 401
    unknown = requests.get(
        base,
        params={"session_id": "ps_unknown", "token": callback_token("local-webhook-secret", "ps_unknown")},
        timeout=30,
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"


def test_the_front_door_refuses_missing_expired_or_foreign_tokens_before_any_handler(stack):
    invoices_before = stack.sim_calls("POST /v2/invoice")
    expired = mint_token("alice", minutes=-5)
    foreign = mint_token("alice", extra_claims={"aud": "someone-else"})

    answers = [
        requests.post(f"{stack.api}/payments", json={"amount": 100}, timeout=30),
        requests.post(
            f"{stack.api}/payments",
            json={"amount": 100},
            headers={"Authorization": f"Bearer {expired}"},
            timeout=30,
        ),
        requests.post(
            f"{stack.api}/payments",
            json={"amount": 100},
            headers={"Authorization": f"Bearer {foreign}"},
            timeout=30,
        ),
    ]

    assert [answer.status_code for answer in answers] == [401, 401, 401]
    assert stack.sim_calls("POST /v2/invoice") == invoices_before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"amount": 0},
        {"amount": -1},
        {"amount": "15000"},
        {"amount": 100_000_001},
        {"amount": 15000, "items": [{"name": "Tea", "quantity": 1, "unit_price": 1}]},
        {"amount": 100, "unknown": True},
    ],
)
def test_bad_input_over_http_is_400_in_the_error_shape(stack, body):
    answer = stack.create(body)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "VALIDATION_ERROR"


def test_invalid_json_and_oversized_bodies_over_http(stack):
    invalid = requests.post(
        f"{stack.api}/payments",
        data="{not json",
        headers={**stack.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    oversized = requests.post(
        f"{stack.api}/payments",
        data='{"amount": 1, "description": "' + "x" * 70_000 + '"}',
        headers={**stack.headers(), "Content-Type": "application/json"},
        timeout=30,
    )

    assert (invalid.status_code, invalid.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    assert (oversized.status_code, oversized.json()["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_another_user_reads_someone_elses_session_as_404(stack):
    body = stack.create({"amount": 100}).json()

    answer = requests.get(
        f"{stack.api}/payments/{body['session_id']}", headers=stack.headers("bob"), timeout=30
    )

    assert answer.status_code == 404


def test_the_lambda_invoke_api_runs_a_function_from_the_template(stack):
    client = stack.lambda_client()
    event = get_event("ps_does_not_exist")

    result = client.invoke(FunctionName="GetPaymentFunction", Payload=json.dumps(event))

    assert result["StatusCode"] == 200
    assert "FunctionError" not in result
    payload = json.loads(result["Payload"].read())
    assert payload["statusCode"] == 404
