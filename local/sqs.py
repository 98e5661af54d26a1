"""SQS in the local stack: the template's queues in moto, and Lambda's event source mappings.

`create_queues` creates every AWS::SQS::Queue of template.yaml in moto, with its attributes and
redrive policy (dead-letter queues first), under the names the handlers' `!Ref` URLs carry.

`EventSourceMappings` runs each SQS event of the template as Lambda's event source mapping does:
pollers receive batches (long polling), invoke the function through the local runtime (worker
processes, local/functions.py) with an SQS event, delete the messages that succeeded and leave
the rest, which come back after the queue's visibility timeout (and after maxReceiveCount
receives go to the dead-letter queue, as moto applies the redrive policy). With
`ReportBatchItemFailures`, only the messages the function names are left; a failed or timed-out
invocation leaves the whole batch. At most `ScalingConfig.MaximumConcurrency` invocations run at
once per mapping (default 5 locally).

- LOCAL_SQS_VISIBILITY_TIMEOUT: caps every queue's visibility timeout (seconds), so a retry after
  a crash comes in seconds rather than the template's minutes.
- LOCAL_EVENT_SOURCES=off: no mapping polls (messages stay in the queues).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from local.functions import FunctionRuntime
from local.template import LOCAL_REGION, FunctionSpec, QueueSpec, SqsEventSource, Template

logger = logging.getLogger(__name__)

DEFAULT_MAXIMUM_CONCURRENCY = 5
RECEIVE_WAIT_S = 1
SQS_MAX_BATCH = 10
_OFF_VALUES = {"off", "false", "0", "no", "disabled"}
_IDLE_PAUSE_S = 0.2
# What an SQS event source mapping does with the function's role (AWS Lambda's "Execution role
# permissions" for SQS: ReceiveMessage, DeleteMessage, GetQueueAttributes).
POLLER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


class EventSourceMappingRefused(Exception):
    """Lambda would not create this event source mapping (the stack would not deploy)."""


_ERROR_PAUSE_S = 1.0


@dataclass(frozen=True)
class SqsSettings:
    enabled: bool = True
    visibility_timeout_cap_s: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SqsSettings:
        env = os.environ if env is None else env
        enabled = env.get("LOCAL_EVENT_SOURCES", "on").strip().lower() not in _OFF_VALUES
        raw = env.get("LOCAL_SQS_VISIBILITY_TIMEOUT", "").strip()
        cap = None
        if raw:
            try:
                cap = int(raw)
            except ValueError as error:
                raise ValueError(
                    f"LOCAL_SQS_VISIBILITY_TIMEOUT must be whole seconds, got {raw!r}"
                ) from error
            if cap < 0:
                raise ValueError(f"LOCAL_SQS_VISIBILITY_TIMEOUT must not be negative, got {raw!r}")
        return cls(enabled=enabled, visibility_timeout_cap_s=cap)


def queue_attributes(queue: QueueSpec, visibility_timeout_cap_s: int | None = None) -> dict[str, str]:
    attributes = dict(queue.attributes)
    if visibility_timeout_cap_s is not None:
        attributes["VisibilityTimeout"] = str(min(queue.visibility_timeout_s, visibility_timeout_cap_s))
    return attributes


def create_queues(
    sqs_client: Any, template: Template, *, visibility_timeout_cap_s: int | None = None
) -> list[str]:
    """Create (or update) the template's queues; the names. Dead-letter queues come first."""
    queues = sorted(template.queues.values(), key=lambda queue: queue.dead_letter_queue_name is not None)
    names = []
    for queue in queues:
        attributes = queue_attributes(queue, visibility_timeout_cap_s)
        existing = _queue_url(sqs_client, queue.name)
        if existing is None:
            sqs_client.create_queue(QueueName=queue.name, Attributes=attributes)
        elif attributes:
            sqs_client.set_queue_attributes(QueueUrl=existing, Attributes=attributes)
        names.append(queue.name)
    return names


def recreate_queues(sqs_client: Any, template: Template) -> list[str]:
    """Empty queues with the template's attributes, in-flight messages gone too (tests that share
    one moto; PurgeQueue is allowed once a minute and leaves in-flight messages)."""
    for queue in template.queues.values():
        url = _queue_url(sqs_client, queue.name)
        if url is not None:
            sqs_client.delete_queue(QueueUrl=url)
    return create_queues(sqs_client, template)


def _queue_url(sqs_client: Any, name: str) -> str | None:
    try:
        return str(sqs_client.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs_client.exceptions.QueueDoesNotExist:
        return None


def sqs_event(messages: list[dict[str, Any]], queue: QueueSpec) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping passes to a function."""
    records = []
    for message in messages:
        body = message["Body"]
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": body,
                "attributes": dict(message.get("Attributes") or {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value.get("DataType"),
                    }
                    for name, value in (message.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue.arn,
                "awsRegion": LOCAL_REGION,
            }
        )
    return {"Records": records}


def failed_message_ids(response: Any, batch_ids: set[str]) -> set[str] | None:
    """The messages a partial batch response names; None when the response is invalid (Lambda
    then treats the whole batch as failed)."""
    if response is None or response == "":
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    named = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in batch_ids:
            return None
        named.add(identifier)
    return named


class EventSourceMapping:
    """One SQS event of a function: pollers that receive, invoke and delete."""

    def __init__(
        self,
        source: SqsEventSource,
        queue: QueueSpec,
        runtime: FunctionRuntime,
        sqs_client: Any,
    ):
        self.source = source
        self.queue = queue
        self.runtime = runtime
        self.sqs = sqs_client
        self.concurrency = source.maximum_concurrency or DEFAULT_MAXIMUM_CONCURRENCY
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._url: str | None = None

    @property
    def name(self) -> str:
        return f"{self.queue.name} -> {self.source.function_id}"

    def describe(self) -> str:
        return (
            f"{self.name} (batch {self.source.batch_size}, at most {self.concurrency} at once"
            f"{', partial batch responses' if self.source.report_batch_item_failures else ''})"
        )

    def start(self) -> None:
        self._url = _queue_url(self.sqs, self.queue.name)
        if self._url is None:
            raise ValueError(f"queue {self.queue.name} does not exist in moto")
        for number in range(self.concurrency):
            thread = threading.Thread(
                target=self._poll,
                name=f"esm-{self.source.function_id}-{self.source.event_id}-{number}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float = RECEIVE_WAIT_S + 2.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def _count(self, **numbers: int) -> None:
        with self._stats_lock:
            self.stats.update(numbers)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive_batch()
                if not messages:
                    self._stop.wait(_IDLE_PAUSE_S)
                    continue
                self._deliver(messages)
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("event source mapping %s failed a poll; retrying", self.name)
                self._stop.wait(_ERROR_PAUSE_S)

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages: one receive, or several within the batching window."""
        window_ends = time.monotonic() + self.source.maximum_batching_window_s
        messages: list[dict[str, Any]] = []
        while len(messages) < self.source.batch_size and not self._stop.is_set():
            response = self.sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(SQS_MAX_BATCH, self.source.batch_size - len(messages)),
                WaitTimeSeconds=RECEIVE_WAIT_S if not messages else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            messages += received
            if not received or time.monotonic() >= window_ends:
                break
        return messages

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        self._count(invocations=1, received=len(messages))
        result = self.runtime.invoke_event(self.source.function_id, sqs_event(messages, self.queue))
        batch_ids = {message["MessageId"] for message in messages}
        if result.failed:
            error = result.error_payload()
            logger.warning(
                "%s: invocation failed (%s); its %d messages return after the visibility timeout",
                self.name,
                error.get("errorType"),
                len(messages),
            )
            self._count(failed_invocations=1, left=len(messages))
            return
        failed = (
            set()
            if not self.source.report_batch_item_failures
            else failed_message_ids(result.value, batch_ids)
        )
        if failed is None:
            logger.warning("%s: invalid partial batch response; the whole batch is retried", self.name)
            self._count(left=len(messages))
            return
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), SQS_MAX_BATCH):
            chunk = done[start : start + SQS_MAX_BATCH]
            self.sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)],
            )
        self._count(deleted=len(done), left=len(failed))


class EventSourceMappings:
    def __init__(
        self,
        runtime: FunctionRuntime,
        template: Template,
        sqs_client_factory: Callable[[], Any],
        settings: SqsSettings | None = None,
    ):
        self.settings = settings or SqsSettings()
        queues_by_name = {queue.name: queue for queue in template.queues.values()}
        self.mappings: list[EventSourceMapping] = []
        for source in template.sqs_event_sources:
            where = f"{source.function_id}/{source.event_id}"
            if not source.enabled:
                logger.info("event source %s is disabled in the template; not polling", where)
                continue
            queue = queues_by_name.get(source.queue_name)
            if queue is None:
                logger.warning(
                    "event source %s reads queue %s, not in the template", where, source.queue_name
                )
                continue
            if source.function_id not in template.functions:
                logger.warning("event source %s targets a function not served locally", where)
                continue
            if runtime.settings.iam:
                self._check_role(runtime, template.functions[source.function_id], queue)
            self.mappings.append(EventSourceMapping(source, queue, runtime, sqs_client_factory()))

    @staticmethod
    def _check_role(runtime: FunctionRuntime, function: FunctionSpec, queue: QueueSpec) -> None:
        """Lambda polls with the function's role, and refuses to create the mapping when the
        role cannot: CloudFormation's `Invalid request provided: The provided execution role does
        not have permissions to call ReceiveMessage on SQS`."""
        if function.policy is None:
            return
        for action in POLLER_ACTIONS:
            if not function.policy.decide(action, queue.arn).allowed:
                raise EventSourceMappingRefused(
                    f"{function.logical_id} (SQS {queue.name}): The provided execution role does not "
                    f"have permissions to call {action.split(':', 1)[1]} on SQS"
                )
        runtime.record_service_calls(function.logical_id, [(action, queue.arn) for action in POLLER_ACTIONS])

    def describe(self) -> list[str]:
        if not self.settings.enabled:
            return ["event sources are off (LOCAL_EVENT_SOURCES=off)"]
        return [mapping.describe() for mapping in self.mappings]

    def start(self) -> None:
        if not self.settings.enabled:
            logger.info("event sources are off (LOCAL_EVENT_SOURCES=off)")
            return
        for mapping in self.mappings:
            mapping.start()
            logger.info("event source mapping %s polling", mapping.describe())

    def stop(self) -> None:
        for mapping in self.mappings:
            mapping._stop.set()
        for mapping in self.mappings:
            mapping.stop()

    def stats(self) -> dict[str, dict[str, int]]:
        return {mapping.name: dict(mapping.stats) for mapping in self.mappings}
