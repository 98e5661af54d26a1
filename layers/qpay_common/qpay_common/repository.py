"""Sessions and orders in DynamoDB. Every state change is a conditional write on the expected
status and the version; a lost race raises StaleSession and the caller re-reads."""

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from qpay_common.domain import Order, PaymentSession, PaymentStatus
from qpay_common.errors import DuplicateSettlement, StaleSession
from qpay_common.settings import Settings
from qpay_common.tables import OrderItem, SessionItem, bind, warm_up

CONDITION_FAILED = "ConditionalCheckFailedException"
JSON_FIELDS = ("items", "metadata", "ebarimt_overrides", "deeplinks")


def _lost_race(exc: Exception) -> bool:
    code = getattr(exc, "cause_response_code", None)
    return code == CONDITION_FAILED


class SessionsRepository:
    def __init__(self, settings: Settings) -> None:
        self._sessions = bind(SessionItem, settings.sessions_table, settings)
        self._orders = bind(OrderItem, settings.orders_table, settings)
        self._connection = Connection(
            region=settings.aws_region, host=settings.dynamodb_endpoint_url, max_pool_connections=32
        )
        warm_up(self._sessions, self._orders)
        _ = self._connection.client

    def _to_session(self, item: SessionItem) -> PaymentSession:
        data = item.attribute_values
        return PaymentSession.model_validate({**data, "version": data.get("version") or 0})

    def _to_item(self, session: PaymentSession) -> SessionItem:
        data = session.model_dump(mode="json", exclude_none=True)
        version = data.pop("version", 0)
        # The version the caller read: pynamodb conditions the write on it and increments it
        # (no version yet means "must not exist").
        if version:
            data["version"] = version
        return self._sessions(**data)

    def create(self, session: PaymentSession) -> PaymentSession:
        item = self._to_item(session)
        try:
            item.save(condition=self._sessions.session_id.does_not_exist())
        except PutError as exc:
            if _lost_race(exc):
                raise StaleSession(session.session_id) from None
            raise
        return self._to_session(item)

    def get(self, session_id: str) -> PaymentSession | None:
        try:
            item = self._sessions.get(session_id, consistent_read=True)
        except self._sessions.DoesNotExist:
            return None
        return self._to_session(item)

    def transition(
        self,
        session: PaymentSession,
        *,
        expected: PaymentStatus | Iterable[PaymentStatus],
        changes: Mapping[str, Any],
        extra_condition: Condition | None = None,
    ) -> PaymentSession:
        """Apply `changes` (None removes an attribute) if the session is still in one of the
        expected states at the version the caller read."""
        allowed = [expected] if isinstance(expected, PaymentStatus) else list(expected)
        condition = self._sessions.status.is_in(*[status.value for status in allowed])
        if extra_condition is not None:
            condition = condition & extra_condition
        item = self._to_item(session)
        try:
            item.update(actions=self._actions(changes), condition=condition)
        except UpdateError as exc:
            if _lost_race(exc):
                raise StaleSession(session.session_id) from None
            raise
        return self._to_session(item)

    def claim_due(
        self, session: PaymentSession, due_attribute: str, now: int, changes: Mapping[str, Any]
    ) -> PaymentSession:
        """Take a scheduled job's work item: succeeds only if it is still due (and unchanged), so
        of two overlapping runs exactly one gets it."""
        still_due = getattr(self._sessions, due_attribute) <= now
        return self.transition(session, expected=session.status, changes=changes, extra_condition=still_due)

    def delete_unfinished(self, session: PaymentSession) -> None:
        item = self._to_item(session)
        try:
            item.delete(condition=self._sessions.status == PaymentStatus.CREATING.value)
        except DeleteError as exc:
            if _lost_race(exc):
                raise StaleSession(session.session_id) from None
            raise

    def record_fulfilment(
        self, session: PaymentSession, order: Order, *, lease_until: float, updated_at: str
    ) -> PaymentSession:
        """One transaction: the order (once per session), one settlement marker per QPay payment
        id (once ever), and the order id on the still-PAID session."""
        not_there = self._orders.pk.does_not_exist()
        order_item = self._orders(
            pk=f"order#{order.order_id}",
            kind="order",
            **order.model_dump(mode="json", exclude_none=True),
        )
        settlements = [
            self._orders(
                pk=f"settlement#{payment_id}",
                kind="settlement",
                order_id=order.order_id,
                session_id=order.session_id,
                created_at=order.created_at,
            )
            for payment_id in order.payment_ids
        ]
        session_item = self._to_item(session)
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(order_item, condition=not_there)
                for settlement in settlements:
                    transaction.save(settlement, condition=not_there)
                transaction.update(
                    session_item,
                    actions=self._actions(
                        {
                            "order_id": order.order_id,
                            "emit_lease_until": lease_until,
                            "updated_at": updated_at,
                        }
                    ),
                    condition=(self._sessions.status == PaymentStatus.PAID.value)
                    & self._sessions.order_id.does_not_exist(),
                )
        except TransactWriteError as exc:
            reasons = [reason.code if reason else None for reason in exc.cancellation_reasons]
            # pynamodb sends puts before updates: [order, settlements..., session]. If the session
            # moved on, another worker fulfilled it (and wrote the same order and markers).
            session_moved = bool(reasons) and reasons[-1] is not None
            if not session_moved and any(code == "ConditionalCheckFailed" for code in reasons[1:-1]):
                raise DuplicateSettlement(session.session_id) from None
            if any(reasons):
                raise StaleSession(session.session_id) from None
            raise
        fresh = self.get(session.session_id)
        if fresh is None:  # pragma: no cover - the transaction just conditioned on it
            raise StaleSession(session.session_id)
        return fresh

    def list_for_user(
        self, user_id: str, *, limit: int, start_key: dict[str, Any] | None
    ) -> tuple[list[PaymentSession], dict[str, Any] | None]:
        """Newest first, from the by_user index (never a Scan). Sessions still being created are
        filtered out, so a page can hold fewer than `limit` items while more follow."""
        results = self._sessions.by_user.query(
            user_id,
            scan_index_forward=False,
            limit=limit,
            page_size=limit,
            last_evaluated_key=start_key,
            filter_condition=self._sessions.status != PaymentStatus.CREATING.value,
        )
        sessions = [self._to_session(item) for item in results]
        return sessions, results.last_evaluated_key

    def due_session_ids(
        self, index_name: str, shard_key: str, due_attribute: str, upper_bound: Any, *, max_items: int
    ) -> tuple[list[str], int]:
        """Session ids in one shard of a sparse work-queue index whose sort key is <= upper_bound,
        and how many index items DynamoDB read for them."""
        connection = self._sessions._get_connection()
        condition = getattr(self._sessions, due_attribute) <= upper_bound
        ids: list[str] = []
        scanned = 0
        start_key = None
        while len(ids) < max_items:
            page = connection.query(
                shard_key,
                range_key_condition=condition,
                index_name=index_name,
                exclusive_start_key=start_key,
                limit=min(100, max_items - len(ids)),
            )
            scanned += int(page.get("ScannedCount", 0))
            ids.extend(item["session_id"]["S"] for item in page.get("Items", []))
            start_key = page.get("LastEvaluatedKey")
            if not start_key:
                break
        return ids, scanned

    def get_order(self, order_id: str) -> Order | None:
        try:
            item = self._orders.get(f"order#{order_id}", consistent_read=True)
        except self._orders.DoesNotExist:
            return None
        data = {key: value for key, value in item.attribute_values.items() if key not in ("pk", "kind")}
        return Order.model_validate(data)

    def _actions(self, changes: Mapping[str, Any]) -> list[Any]:
        actions = []
        for name, value in changes.items():
            attribute = getattr(self._sessions, name)
            if value is None:
                actions.append(attribute.remove())
            else:
                if name in JSON_FIELDS:
                    value = json.loads(json.dumps(value, default=str))
                actions.append(attribute.set(value))
        return actions
