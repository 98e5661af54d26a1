"""PaymentCompleted and PaymentRefunded on the app's EventBridge bus. At least once: consumers
dedupe on order_id (and, for refunds, on the detail type)."""

import json
from typing import Any

from qpay_common.adapters.aws import clients as aws_clients
from qpay_common.domain.errors import EventPublishError
from qpay_common.domain.session import Order, PaymentSession, Refund
from qpay_common.settings import Settings

SOURCE = "qpay.payments"
PAYMENT_COMPLETED = "PaymentCompleted"
PAYMENT_REFUNDED = "PaymentRefunded"


class EventBridgePublisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None

    def _events(self) -> Any:
        if self._client is None:
            # Built on first use, by the session the DynamoDB client came from (its service
            # files already parsed); boto3 is never imported.
            self._client = aws_clients.events_client(self._settings)
        return self._client

    def payment_completed(self, session: PaymentSession, order: Order) -> None:
        detail = {
            "session_id": session.session_id,
            "order_id": order.order_id,
            "user_id": session.user_id,
            "amount": session.amount,
            "paid_amount": session.paid_amount,
            "currency": session.currency,
            "payment_id": session.payment_ids[0] if session.payment_ids else None,
            "payment_ids": session.payment_ids,
            "paid_at": session.paid_at,
            "items": [item.model_dump() for item in session.items],
            "metadata": session.metadata,
        }
        self._put(PAYMENT_COMPLETED, detail)

    def payment_refunded(self, session: PaymentSession, refund: Refund) -> None:
        detail = {
            "session_id": session.session_id,
            "order_id": session.order_id,
            "user_id": session.user_id,
            "amount": session.amount,
            "refunded_amount": refund.amount,
            "currency": session.currency,
            "payment_ids": refund.payment_ids,
            "refunded_at": refund.refunded_at,
            "refunded_by": refund.requested_by,
            "note": refund.note,
            "metadata": session.metadata,
        }
        self._put(PAYMENT_REFUNDED, detail)

    def _put(self, detail_type: str, detail: dict[str, Any]) -> None:
        try:
            response = self._events().put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": detail_type,
                        "Detail": json.dumps(detail),
                        "EventBusName": self._settings.event_bus_name,
                        "Resources": [],
                    }
                ]
            )
        except Exception as exc:
            raise EventPublishError(f"PutEvents failed: {type(exc).__name__}") from exc
        if response.get("FailedEntryCount", 0):
            codes = [
                entry.get("ErrorCode") for entry in response.get("Entries", []) if entry.get("ErrorCode")
            ]
            raise EventPublishError(f"PutEvents rejected the event: {codes}")
