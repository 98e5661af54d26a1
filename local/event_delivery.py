"""The template's EventBridge rules, run locally: their SQS targets as moto rules, and their API
destination targets (the merchant's HTTP endpoint) delivered the way EventBridge would.

In AWS, MerchantEventsRule sends PaymentCompleted and PaymentRefunded to MerchantEventsQueue and, when
MerchantEndpointUrl is set, POSTs the event JSON to that endpoint through an API destination:
retried with exponential backoff for up to MaximumRetryAttempts / MaximumEventAgeInSeconds, then
moved to the target's dead-letter queue. moto can put events on SQS targets but its API
destination call has no body and no retries (and blocks PutEvents), so here the rule's API
destination target is an SQS queue in moto, drained by `ApiDestinationDelivery`, which POSTs
each event with the same retry rules and dead-letters what it cannot deliver.

`LOCAL_EVENT_DELIVERY_URL=http://127.0.0.1:8080/qpay make run` sets the template's
MerchantEndpointUrl (plain HTTP is allowed locally), so the template's own wiring is what runs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from local.template import RuleTarget, Template

logger = logging.getLogger(__name__)

# The whole event, `account` included (moto's default delivery leaves it out).
FULL_EVENT_TEMPLATE = "<aws.events.event.json>"
# API destinations give the endpoint 5 seconds to answer.
ENDPOINT_TIMEOUT_S = 5.0
RECEIVE_WAIT_S = 1
# Answers a later attempt can fix; any other 4xx goes to the dead-letter queue at once.
RETRIED_STATUSES = frozenset({401, 407, 408, 409, 429})


@dataclass(frozen=True)
class EventDeliverySettings:
    url: str | None = None
    api_key: str = "local-merchant-key"
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EventDeliverySettings:
        return cls(
            url=env.get("LOCAL_EVENT_DELIVERY_URL") or None,
            api_key=env.get("LOCAL_EVENT_DELIVERY_API_KEY") or cls.api_key,
            backoff_s=float(env.get("LOCAL_EVENT_DELIVERY_BACKOFF_S") or cls.backoff_s),
            max_backoff_s=float(env.get("LOCAL_EVENT_DELIVERY_MAX_BACKOFF_S") or cls.max_backoff_s),
        )

    def parameter_overrides(self) -> dict[str, str]:
        """The template parameters that turn the API destination on (its secret is not read locally)."""
        if not self.url:
            return {}
        return {"MerchantEndpointUrl": self.url, "MerchantEndpointApiKeySecretArn": "local"}


def delivery_queue_name(rule_id: str, target: RuleTarget) -> str:
    return f"local-{rule_id}-{target.target_id}"[:80]


def setup_event_rules(
    events_client: Any, sqs_client: Any, template: Template
) -> list[tuple[RuleTarget, str]]:
    """Put the template's rules on moto's buses. SQS targets point at the template's queues; an
    API destination target at a local delivery queue. Returns (API destination target, its
    delivery queue URL) pairs, for ApiDestinationDelivery."""
    api_destinations: list[tuple[RuleTarget, str]] = []
    for rule in template.event_rules:
        events_client.put_rule(
            Name=rule.logical_id,
            EventBusName=rule.bus_name,
            EventPattern=json.dumps(rule.event_pattern),
            State="ENABLED" if rule.enabled else "DISABLED",
        )
        targets = []
        for target in rule.targets:
            if target.kind == "sqs" and target.queue_name:
                queue_url = sqs_client.get_queue_url(QueueName=target.queue_name)["QueueUrl"]
            elif target.kind == "api-destination":
                queue_url = sqs_client.create_queue(QueueName=delivery_queue_name(rule.logical_id, target))[
                    "QueueUrl"
                ]
                api_destinations.append((target, queue_url))
            else:
                logger.info("rule %s: target %s is not run locally", rule.logical_id, target.target_id)
                continue
            arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            targets.append(
                {
                    "Id": target.target_id,
                    "Arn": arn,
                    "InputTransformer": {"InputTemplate": FULL_EVENT_TEMPLATE},
                }
            )
        if targets:
            events_client.put_targets(Rule=rule.logical_id, EventBusName=rule.bus_name, Targets=targets)
        logger.info("rule %s on %s -> %s", rule.logical_id, rule.bus_name, [t["Id"] for t in targets])
    return api_destinations


def backoff_seconds(attempt: int, settings: EventDeliverySettings) -> float:
    """Exponential with jitter, as EventBridge backs off a target (scaled down locally:
    LOCAL_EVENT_DELIVERY_BACKOFF_S, capped at LOCAL_EVENT_DELIVERY_MAX_BACKOFF_S)."""
    ceiling = min(settings.max_backoff_s, settings.backoff_s * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class ApiDestinationDelivery:
    """Drains one API destination's delivery queue: POST each event, retry what may succeed
    later, dead-letter the rest. The attempt number and the event's age come from SQS (receive
    count, first sent): like EventBridge's retry policy, both bound the retries."""

    def __init__(
        self,
        target: RuleTarget,
        queue_url: str,
        sqs_client: Callable[[], Any],
        settings: EventDeliverySettings,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self.target = target
        self.queue_url = queue_url
        self._sqs_factory = sqs_client
        self.settings = settings
        self._session = session or requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"delivered": 0, "retried": 0, "dead_lettered": 0}

    def describe(self) -> str:
        return f"{self.target.target_id} -> {self.target.http_method} {self.target.endpoint}"

    def start(self) -> None:
        self._sqs = self._sqs_factory()
        self._dead_letter_url = (
            self._sqs.get_queue_url(QueueName=self.target.dead_letter_queue_name)["QueueUrl"]
            if self.target.dead_letter_queue_name
            else None
        )
        self._thread = threading.Thread(
            target=self._poll, name=f"api-destination-{self.target.target_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = RECEIVE_WAIT_S + ENDPOINT_TIMEOUT_S + 1) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=RECEIVE_WAIT_S,
                    AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                ).get("Messages", [])
            except Exception:
                if not self._stop.wait(1.0):
                    logger.exception("api destination %s: could not receive", self.target.target_id)
                continue
            for message in messages:
                if self._stop.is_set():
                    return
                self.handle(message)

    def handle(self, message: dict[str, Any]) -> str:
        """One delivery attempt of one queued event; what became of it."""
        attributes = message.get("Attributes") or {}
        attempt = int(attributes.get("ApproximateReceiveCount", "1"))
        age_s = time.time() - int(attributes.get("SentTimestamp", "0")) / 1000
        outcome, detail = self._post(message["Body"])
        if outcome == "delivered":
            self._delete(message)
            self.stats["delivered"] += 1
            logger.info("api destination %s: delivered (attempt %d)", self.target.target_id, attempt)
            return outcome
        retries_left = attempt <= self.target.maximum_retry_attempts
        if outcome == "retry" and retries_left and age_s < self.target.maximum_event_age_s:
            delay = backoff_seconds(attempt, self.settings)
            self._sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=max(0, round(delay)),
            )
            self.stats["retried"] += 1
            logger.warning(
                "api destination %s: %s, retry %d in %.1fs", self.target.target_id, detail, attempt, delay
            )
            return "retried"
        self._dead_letter(message, detail)
        return "dead_lettered"

    def _post(self, body: str) -> tuple[str, str]:
        headers = {"content-type": "application/json", **self.target.headers}
        if self.target.api_key_header:
            headers[self.target.api_key_header] = self.settings.api_key
        try:
            response = self._session.request(
                self.target.http_method,
                self.target.endpoint or "",
                data=body.encode(),
                headers=headers,
                timeout=ENDPOINT_TIMEOUT_S,
            )
        except requests.RequestException as exc:
            return "retry", type(exc).__name__
        if 200 <= response.status_code < 300:
            return "delivered", str(response.status_code)
        if response.status_code in RETRIED_STATUSES or response.status_code >= 500:
            return "retry", f"HTTP {response.status_code}"
        return "refused", f"HTTP {response.status_code}"

    def _dead_letter(self, message: dict[str, Any], reason: str) -> None:
        if self._dead_letter_url is not None:
            self._sqs.send_message(
                QueueUrl=self._dead_letter_url,
                MessageBody=message["Body"],
                MessageAttributes={
                    "ERROR_CODE": {"DataType": "String", "StringValue": reason},
                    "RULE_TARGET": {"DataType": "String", "StringValue": self.target.target_id},
                },
            )
        self._delete(message)
        self.stats["dead_lettered"] += 1
        logger.error(
            "api destination %s: gave up (%s); event in %s",
            self.target.target_id,
            reason,
            self.target.dead_letter_queue_name or "nowhere (no dead-letter queue)",
        )

    def _delete(self, message: dict[str, Any]) -> None:
        self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
