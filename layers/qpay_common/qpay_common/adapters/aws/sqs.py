"""The reconcile work queues on SQS: the only module that speaks to SQS.

Two queues: the priority queue carries PAID sessions (they need their order, not a QPay check),
the other one everything else, so a backlog of checks never delays an order. A message names a
session and the lease the dispatcher took on it (usecases/reconcile.py).
"""

from typing import Any

from qpay_common.domain.errors import ConfigurationError
from qpay_common.settings import Settings
from qpay_common.usecases.ports import ReconcileTask

SEND_BATCH = 10  # SQS's most per SendMessageBatch
DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


class SQSReconcileQueues:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None

    def _sqs(self) -> Any:
        if self._client is None:
            # Imported on first use: only the dispatcher sends.
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "sqs",
                region_name=self._settings.aws_region,
                endpoint_url=self._settings.sqs_endpoint_url,
                config=Config(
                    connect_timeout=2,
                    read_timeout=5,
                    retries={"max_attempts": 3, "mode": "standard"},
                    max_pool_connections=16,
                ),
            )
        return self._client

    def _url(self, priority: bool) -> str:
        url = self._settings.reconcile_priority_queue_url if priority else self._settings.reconcile_queue_url
        if not url:
            name = "RECONCILE_PRIORITY_QUEUE_URL" if priority else "RECONCILE_QUEUE_URL"
            raise ConfigurationError(f"{name} is not set")
        return url

    def depth(self, *, priority: bool) -> int:
        """Messages waiting, in flight or delayed."""
        attributes = self._sqs().get_queue_attributes(
            QueueUrl=self._url(priority), AttributeNames=list(DEPTH_ATTRIBUTES)
        )["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in DEPTH_ATTRIBUTES)

    def send(self, tasks: list[ReconcileTask], *, priority: bool) -> int:
        """Send every task; the number SQS did not take (those sessions are due again once their
        lease ends, so nothing is lost)."""
        url = self._url(priority)
        not_sent = 0
        for start in range(0, len(tasks), SEND_BATCH):
            batch = tasks[start : start + SEND_BATCH]
            entries = [{"Id": str(number), "MessageBody": task.body()} for number, task in enumerate(batch)]
            try:
                response = self._sqs().send_message_batch(QueueUrl=url, Entries=entries)
            except Exception:  # noqa: BLE001 - counted; the leases make them due again
                not_sent += len(batch)
                continue
            not_sent += len(response.get("Failed", []))
        return not_sent
