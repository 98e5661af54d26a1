"""The ports the use cases depend on, besides the session store (domain/store.SessionStore):
QPay, the event bus, the cache table, the reconcile queues and the webhook keys. The adapters
implement them (adapters/...), the unit tests' fakes too (tests/fakes.py); the composition root
chooses which."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    # Only for the annotations: a function that never calls QPay (the reconcile dispatcher, the
    # listing) does not load QPay's models for them.
    from qpay_common.adapters.qpay.models import (
        EbarimtReceipt,
        Invoice,
        InvoiceDetails,
        InvoiceRequest,
        PaymentCheck,
        PaymentDetails,
    )
    from qpay_common.domain.callback_token import WebhookKeys
    from qpay_common.domain.session import Order, PaymentSession, Refund

# The webhook keys as they are now: read per use (a rotation reaches warm environments).
WebhookKeySource = Callable[[], "WebhookKeys"]


class QPay(Protocol):
    """The QPay merchant API calls the use cases make (adapters/qpay/client.QPayClient). Failures
    are adapters/qpay/errors.QPayError and its kinds."""

    def create_invoice(self, request: InvoiceRequest) -> Invoice: ...

    def get_invoice(self, invoice_id: str) -> InvoiceDetails: ...

    def cancel_invoice(self, invoice_id: str) -> None: ...

    def get_payment(self, payment_id: str) -> PaymentDetails: ...

    def check_payment(self, invoice_id: str) -> PaymentCheck: ...

    def refund_payment(self, payment_id: str, note: str, callback_url: str | None = None) -> None: ...

    def create_ebarimt(self, payload: dict[str, Any]) -> EbarimtReceipt: ...

    def cancel_ebarimt(self, payment_id: str) -> EbarimtReceipt: ...


class EventPublisher(Protocol):
    """PaymentCompleted and PaymentRefunded on the bus (adapters/aws/events.EventBridgePublisher);
    a failure is domain.errors.EventPublishError."""

    def payment_completed(self, session: PaymentSession, order: Order) -> None: ...

    def payment_refunded(self, session: PaymentSession, refund: Refund) -> None: ...


class Cache(Protocol):
    """Short-lived keys with an expiry (adapters/dynamodb/cache.DynamoDBCache)."""

    def get(self, key: str) -> tuple[dict[str, Any], str | None] | None: ...

    def put(self, key: str, data: dict[str, Any], *, expires_at: float, tag: str | None = None) -> None: ...

    def put_if_absent(
        self, key: str, data: dict[str, Any], *, expires_at: float, tag: str | None = None
    ) -> bool: ...

    def delete(self, key: str, *, tag: str | None = None) -> bool: ...


class ReconcileTask(BaseModel):
    """The body of one reconcile message: check this session, if it still carries this lease."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    session_id: str = Field(min_length=1, max_length=64)
    lease: int

    def body(self) -> str:
        return json.dumps({"session_id": self.session_id, "lease": self.lease})


class TaskQueues(Protocol):
    """The reconcile queues (adapters/aws/sqs.SQSReconcileQueues): the priority queue carries PAID
    sessions, the other every check."""

    def depth(self, *, priority: bool) -> int: ...

    def send(self, tasks: list[ReconcileTask], *, priority: bool) -> int: ...
