"""The local API destination's delivery rules, on a scripted endpoint and an in-memory queue:
2xx delivers, 429/5xx/timeouts retry with backoff until the target's retry policy (attempts or
age) runs out, other 4xx dead-letter at once; and the template's rule wiring it reads."""

import json
import time

import pytest
import requests

from local.event_delivery import ApiDestinationDelivery, EventDeliverySettings, backoff_seconds
from local.template import RuleTarget, load_template
from tests.support import TEMPLATE

pytestmark = pytest.mark.unit

EVENT = json.dumps({"id": "e-1", "source": "qpay.payments", "detail-type": "PaymentCompleted", "detail": {}})


class FakeSqs:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.visibility: list[int] = []
        self.dead: list[dict] = []

    def delete_message(self, QueueUrl, ReceiptHandle):
        self.deleted.append(ReceiptHandle)

    def change_message_visibility(self, QueueUrl, ReceiptHandle, VisibilityTimeout):
        self.visibility.append(VisibilityTimeout)

    def send_message(self, QueueUrl, MessageBody, MessageAttributes):
        self.dead.append({"body": MessageBody, "attributes": MessageAttributes})

    def get_queue_url(self, QueueName):
        return {"QueueUrl": f"http://sqs/{QueueName}"}


class Endpoint:
    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict] = []

    def request(self, method, url, data, headers, timeout):
        self.calls.append(
            {"method": method, "url": url, "body": data, "headers": headers, "timeout": timeout}
        )
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        response = requests.Response()
        response.status_code = outcome
        return response


TARGET = RuleTarget(
    target_id="MerchantEndpoint",
    kind="api-destination",
    arn="arn:aws:events:us-east-1:123456789012:apidestination/MerchantApiDestination",
    endpoint="http://merchant.test/events",
    headers={"content-type": "application/json"},
    api_key_header="x-api-key",
    maximum_retry_attempts=3,
    maximum_event_age_s=3600,
    dead_letter_queue_name="MerchantEndpointDeadLetterQueue",
)


def delivery(endpoint: Endpoint, target: RuleTarget = TARGET) -> tuple[ApiDestinationDelivery, FakeSqs]:
    sqs = FakeSqs()
    settings = EventDeliverySettings(url=target.endpoint, api_key="k-1", backoff_s=1, max_backoff_s=8)
    runner = ApiDestinationDelivery(target, "http://sqs/delivery", lambda: sqs, settings, session=endpoint)
    runner._sqs = sqs
    runner._dead_letter_url = "http://sqs/MerchantEndpointDeadLetterQueue"
    return runner, sqs


def message(attempt: int, sent_seconds_ago: float = 1) -> dict:
    sent = int((time.time() - sent_seconds_ago) * 1000)
    return {
        "Body": EVENT,
        "ReceiptHandle": f"r-{attempt}",
        "Attributes": {"ApproximateReceiveCount": str(attempt), "SentTimestamp": str(sent)},
    }


def test_a_2xx_delivers_the_event_json_with_the_api_key_and_removes_it():
    endpoint = Endpoint(202)
    runner, sqs = delivery(endpoint)

    assert runner.handle(message(1)) == "delivered"

    [call] = endpoint.calls
    assert (call["method"], call["url"], call["body"]) == (
        "POST",
        "http://merchant.test/events",
        EVENT.encode(),
    )
    assert call["headers"]["x-api-key"] == "k-1"
    assert call["headers"]["content-type"] == "application/json"
    assert call["timeout"] == 5.0
    assert sqs.deleted == ["r-1"]


@pytest.mark.parametrize(
    "failure", [500, 503, 429, 409, requests.ConnectionError(), requests.Timeout()], ids=str
)
def test_what_a_later_attempt_can_fix_is_retried_after_a_backoff(failure):
    runner, sqs = delivery(Endpoint(failure))

    assert runner.handle(message(1)) == "retried"

    assert sqs.deleted == []
    assert sqs.dead == []
    assert len(sqs.visibility) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 413, 422])
def test_a_refusal_goes_to_the_dead_letter_queue_at_once(status):
    runner, sqs = delivery(Endpoint(status))

    assert runner.handle(message(1)) == "dead_lettered"

    [dead] = sqs.dead
    assert dead["body"] == EVENT
    assert dead["attributes"]["ERROR_CODE"]["StringValue"] == f"HTTP {status}"
    assert sqs.deleted == ["r-1"]


def test_retries_stop_at_the_targets_attempts_or_age():
    # MaximumRetryAttempts 3: the first attempt and three retries, then the dead-letter queue
    runner, sqs = delivery(Endpoint(503, 503, 503, 503))
    outcomes = [runner.handle(message(attempt)) for attempt in (1, 2, 3, 4)]
    assert outcomes == ["retried", "retried", "retried", "dead_lettered"]
    assert len(sqs.dead) == 1
    # MaximumEventAgeInSeconds: an event older than an hour is not retried again
    runner, sqs = delivery(Endpoint(503))
    assert runner.handle(message(1, sent_seconds_ago=3601)) == "dead_lettered"
    assert len(sqs.dead) == 1


def test_backoff_grows_exponentially_up_to_its_cap():
    settings = EventDeliverySettings(backoff_s=1, max_backoff_s=8)
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (4, 8), (9, 8)):
        for _ in range(20):
            assert ceiling / 2 <= backoff_seconds(attempt, settings) <= ceiling


def test_the_template_rule_sends_to_the_merchant_queue_and_with_a_url_to_the_endpoint_too():
    [rule] = load_template(TEMPLATE).event_rules
    assert [(t.kind, t.queue_name) for t in rule.targets] == [("sqs", "MerchantEventsQueue")]
    settings = EventDeliverySettings.from_env({"LOCAL_EVENT_DELIVERY_URL": "http://127.0.0.1:9/events"})
    [rule] = load_template(TEMPLATE, settings.parameter_overrides()).event_rules
    [queue, endpoint] = rule.targets
    assert queue.queue_name == "MerchantEventsQueue"
    assert (endpoint.kind, endpoint.endpoint, endpoint.http_method) == (
        "api-destination",
        "http://127.0.0.1:9/events",
        "POST",
    )
    assert endpoint.api_key_header == "x-api-key"
    assert endpoint.dead_letter_queue_name == "MerchantEndpointDeadLetterQueue"
    assert endpoint.maximum_retry_attempts == 185
    assert rule.event_pattern == {
        "source": ["qpay.payments"],
        "detail-type": ["PaymentCompleted", "PaymentRefunded"],
    }
