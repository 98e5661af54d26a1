"""PaymentCompleted delivered to the merchant's own HTTP endpoint by the local stack, the way the
template's API destination would: `LOCAL_EVENT_DELIVERY_URL=... make run` turns on the
template's MerchantEndpointUrl wiring; the event is POSTed as EventBridge's JSON with the API key
header, retried while the endpoint fails, and dead-lettered when it refuses. A local HTTP server
plays the merchant's order system."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from local.endpoints import free_port, local_client
from tests.e2e.conftest import Stack, start_stack, stop_stack
from tests.support import ROOT

pytestmark = pytest.mark.e2e

API_KEY = "merchant-key-e2e"


class MerchantEndpoint:
    """Records every request; answers from a script per order id (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                order_id = body.get("detail", {}).get("order_id", "")
                with endpoint.lock:
                    endpoint.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                    answers = endpoint.script.get(order_id) or []
                    status = answers.pop(0) if answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/qpay/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_order(self, order_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["body"].get("detail", {}).get("order_id") == order_id]

    def wait_for(self, order_id: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            received = self.for_order(order_id)
            if len(received) >= count:
                return received
            time.sleep(0.2)
        raise AssertionError(f"{len(self.for_order(order_id))} of {count} deliveries for {order_id}")


@pytest.fixture(scope="module")
def merchant() -> Iterator[MerchantEndpoint]:
    endpoint = MerchantEndpoint()
    yield endpoint
    endpoint.server.shutdown()


@pytest.fixture(scope="module")
def delivering_stack(merchant: MerchantEndpoint) -> Iterator[Stack]:
    running = start_stack(
        {
            "LOCAL_EVENT_DELIVERY_URL": merchant.url,
            "LOCAL_EVENT_DELIVERY_API_KEY": API_KEY,
            "LOCAL_EVENT_DELIVERY_BACKOFF_S": "1",
            "LOCAL_EVENT_DELIVERY_MAX_BACKOFF_S": "1",
        }
    )
    yield running
    stop_stack(running)


def paid_order(stack: Stack, amount: int) -> tuple[str, str]:
    created = stack.create({"amount": amount, "metadata": {"cart": "e2e"}})
    assert created.status_code == 201, created.text
    body = created.json()
    # The order id is known before the payment: ord_ + the session id's hex
    order_id = "ord_" + body["session_id"].removeprefix("ps_")
    return body, order_id


def test_payment_completed_reaches_the_merchant_endpoint_after_its_failures(delivering_stack, merchant):
    stack = delivering_stack
    body, order_id = paid_order(stack, 15000)
    # Given an order system that is down for two attempts (a 503, then a 429)
    merchant.script[order_id] = [503, 429]

    paid = stack.pay(body["invoice_id"])
    assert paid["callback"]["status"] == 200

    # Then PaymentCompleted arrives three times, the last one taken; the same event each time
    received = merchant.wait_for(order_id, 3)
    time.sleep(3)
    assert len(merchant.for_order(order_id)) == 3  # nothing after the 200
    events = [r["body"] for r in received]
    assert len({event["id"] for event in events}) == 1
    event = events[0]
    assert (event["source"], event["detail-type"]) == ("qpay.payments", "PaymentCompleted")
    assert event["detail"]["amount"] == 15000
    assert event["detail"]["metadata"] == {"cart": "e2e"}
    # As the API destination sends it: POST, JSON, the connection's API key header
    headers = {k.lower(): v for k, v in received[0]["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-api-key"] == API_KEY
    assert received[0]["path"] == "/qpay/events"
    # And it is the event the schema in docs/events describes
    schema = json.loads((ROOT / "docs/events/PaymentCompleted.schema.json").read_text())
    assert list(Draft202012Validator(schema).iter_errors(event)) == []


def test_an_event_the_endpoint_refuses_goes_to_the_dead_letter_queue_not_retried(delivering_stack, merchant):
    stack = delivering_stack
    body, order_id = paid_order(stack, 700)
    merchant.script[order_id] = [400]

    stack.pay(body["invoice_id"])

    merchant.wait_for(order_id, 1)
    sqs = local_client("sqs", stack.moto)
    url = sqs.get_queue_url(QueueName="MerchantEndpointDeadLetterQueue")["QueueUrl"]
    deadline, dead = time.monotonic() + 30, []
    while not dead and time.monotonic() < deadline:
        dead = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"]).get(
            "Messages", []
        )
    [message] = dead
    assert json.loads(message["Body"])["detail"]["order_id"] == order_id
    assert message["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "HTTP 400"
    time.sleep(2)
    assert len(merchant.for_order(order_id)) == 1  # a 400 is not retried


def test_the_merchant_queue_gets_payment_completed_too(delivering_stack, merchant):
    stack = delivering_stack
    body, order_id = paid_order(stack, 900)

    stack.pay(body["invoice_id"])

    merchant.wait_for(order_id, 1)
    sqs = local_client("sqs", stack.moto)
    url = sqs.get_queue_url(QueueName="MerchantEventsQueue")["QueueUrl"]
    deadline, found = time.monotonic() + 30, []
    while not found and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            event = json.loads(message["Body"])
            if event["detail"]["order_id"] == order_id:
                found.append(event)
    [event] = found
    assert event["detail-type"] == "PaymentCompleted"
    banner = "\n".join(stack.output)
    assert f"API destination       MerchantEndpoint -> POST {merchant.url}" in banner
