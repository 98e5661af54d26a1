"""Sessions and orders in DynamoDB: the storage primitives under the SessionStore port's domain
verbs (domain/store.py). Conditional writes carry the status and version the caller read."""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from qpay_common.adapters.dynamodb.tables import OrderItem, SessionItem, bind, connection, storage_call
from qpay_common.domain.errors import DuplicateSettlement, StaleSession
from qpay_common.domain.listing import Position, Stream
from qpay_common.domain.session import Order, PaymentSession, PaymentStatus, iso
from qpay_common.domain.store import CURSOR_FIELDS, DuePage, SessionStore, user_cursor, user_cursor_key
from qpay_common.domain.work_queues import WorkQueue
from qpay_common.settings import Settings

CONDITION_FAILED = "ConditionalCheckFailedException"
# A plain write to an item an in-flight transaction holds (the fulfilment transaction, against a
# duplicate callback's write, a status poll's or a lease bump). botocore does not retry it: it is
# a lost race like a failed condition, told apart so the retry waits a little (races.py).
TRANSACTION_CONFLICT = "TransactionConflictException"
JSON_FIELDS = ("items", "metadata", "ebarimt_overrides", "deeplinks", "refund", "ebarimt_answer")


def _lost_race(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) in (CONDITION_FAILED, TRANSACTION_CONFLICT)


def _stale(session_id: str, exc: Exception) -> StaleSession:
    in_flight = getattr(exc, "cause_response_code", None) == TRANSACTION_CONFLICT
    return StaleSession(session_id, in_flight=in_flight)


class DynamoDBSessionStore(SessionStore):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._sessions = bind(SessionItem, settings.sessions_table, settings)
        self._orders = bind(OrderItem, settings.orders_table, settings)
        self._connection = connection(settings)

    @storage_call
    def get(self, session_id: str) -> PaymentSession | None:
        try:
            item = self._sessions.get(session_id, consistent_read=True)
        except self._sessions.DoesNotExist:
            return None
        return self._to_session(item)

    @storage_call
    def get_order(self, order_id: str) -> Order | None:
        try:
            item = self._orders.get(f"order#{order_id}", consistent_read=True)
        except self._orders.DoesNotExist:
            return None
        data = {key: value for key, value in item.attribute_values.items() if key not in ("pk", "kind")}
        return Order.model_validate(data)

    @storage_call
    def list_for_user(
        self, user_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[PaymentSession], str | None]:
        """Newest first, from the by_user index (never a Scan), with an opaque cursor that only
        this user can continue. Sessions still being created are filtered out, so a page can hold
        fewer than `limit` items while more follow."""
        results = self._sessions.by_user.query(
            user_id,
            scan_index_forward=False,
            limit=limit,
            page_size=limit,
            last_evaluated_key=self._start_key(user_id, cursor),
            filter_condition=self._sessions.status != PaymentStatus.CREATING.value,
        )
        sessions = [self._to_session(item) for item in results]
        last_key = results.last_evaluated_key
        return sessions, user_cursor(
            {name: last_key[name]["S"] for name in CURSOR_FIELDS} if last_key else None
        )

    @staticmethod
    def _start_key(user_id: str, cursor: str | None) -> dict[str, Any] | None:
        if not cursor:
            return None
        return {name: {"S": value} for name, value in user_cursor_key(user_id, cursor).items()}

    @storage_call
    def query_index(
        self,
        stream: Stream,
        *,
        created_from: str | None,
        created_to: str | None,
        after: Position | None,
        limit: int,
    ) -> tuple[list[PaymentSession], Position | None]:
        """One page of the by_status, by_user or by_ebarimt_status index, newest first, from
        `after` on. by_ebarimt_status holds keys only: the page's sessions are read after it."""
        index = getattr(self._sessions, stream.index)
        created = self._sessions.created_at
        range_condition: Condition | None
        if created_from is not None and created_to is not None:
            range_condition = created.between(created_from, created_to)
        elif created_from is not None:
            range_condition = created >= created_from
        elif created_to is not None:
            range_condition = created <= created_to
        else:
            range_condition = None
        filter_condition: Condition | None = None
        if stream.index == "by_user":
            filter_condition = self._sessions.status != PaymentStatus.CREATING.value
            if stream.status is not None:
                filter_condition = self._sessions.status == stream.status.value
            if stream.ebarimt_status is not None:
                filter_condition &= self._sessions.ebarimt_status == stream.ebarimt_status.value
        start_key = None
        if after is not None:
            start_key = {
                stream.partition_attribute: {"S": stream.partition},
                "created_at": {"S": after[0]},
                "session_id": {"S": after[1]},
            }
        results = index.query(
            stream.partition,
            range_key_condition=range_condition,
            filter_condition=filter_condition,
            scan_index_forward=False,
            limit=limit,
            page_size=limit,
            last_evaluated_key=start_key,
        )
        items = list(results)
        if stream.index == "by_ebarimt_status":
            items = self._read_items([item.session_id for item in items])
        sessions = [session for session in map(self._to_session, items) if stream.selects(session)]
        last_key = results.last_evaluated_key
        following = (last_key["created_at"]["S"], last_key["session_id"]["S"]) if last_key else None
        return sessions, following

    def _read_items(self, session_ids: list[str]) -> list[SessionItem]:
        """The items of `session_ids`, in that order (one BatchGetItem per 100; pynamodb retries
        unprocessed keys); a session deleted meanwhile is left out."""
        found = {item.session_id: item for item in self._sessions.batch_get(session_ids)}
        return [found[session_id] for session_id in session_ids if session_id in found]

    @storage_call
    def due_page(
        self, queue: WorkQueue, shard_key: str, upper_bound: Any, *, start_key: Any, limit: int
    ) -> DuePage:
        """One page of a shard of `queue`'s sparse index (KEYS_ONLY: the keys are all it holds)."""
        connection = self._sessions._get_connection()
        page = connection.query(
            shard_key,
            range_key_condition=getattr(self._sessions, queue.due_attribute) <= upper_bound,
            index_name=queue.index_name,
            exclusive_start_key=start_key,
            limit=limit,
        )
        items = page.get("Items", [])
        return DuePage(
            session_ids=[item["session_id"]["S"] for item in items],
            items_read=int(page.get("ScannedCount", 0)),
            next_key=page.get("LastEvaluatedKey"),
            # KEYS_ONLY still holds the index's own sort key, the due value.
            first_due=_attribute_value(items[0][queue.due_attribute]) if items else None,
        )

    @storage_call
    def _lease_due(self, session_id: str, attribute: str, bound: int, until: int) -> bool:
        # One UpdateItem on the key alone: the dispatcher never reads the session it leases.
        due = getattr(self._sessions, attribute)
        try:
            self._sessions._get_connection().update_item(
                session_id,
                actions=[due.set(until), self._sessions.version.add(1)],
                condition=due <= bound,
            )
        except UpdateError as exc:
            if _lost_race(exc):
                return False
            raise
        return True

    @storage_call
    def create_unfinished(self, session: PaymentSession) -> PaymentSession:
        """The CREATING session, written before the QPay invoice exists (never twice)."""
        item = self._to_item(session)
        try:
            item.save(condition=self._sessions.session_id.does_not_exist())
        except PutError as exc:
            if _lost_race(exc):
                raise _stale(session.session_id, exc) from None
            raise
        return self._to_session(item)

    @storage_call
    def delete_unfinished(self, session: PaymentSession) -> None:
        item = self._to_item(session)
        try:
            item.delete(condition=self._sessions.status == PaymentStatus.CREATING.value)
        except DeleteError as exc:
            if _lost_race(exc):
                raise _stale(session.session_id, exc) from None
            raise

    @storage_call
    def record_fulfilment(
        self, session: PaymentSession, order: Order, *, lease_until: float, now: datetime
    ) -> PaymentSession:
        """One transaction: the order (once per session), one settlement marker per QPay payment
        id (once ever), and the order id and publish lease on the still-PAID session."""
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
        changes = {"order_id": order.order_id, "emit_lease_until": lease_until, "updated_at": iso(now)}
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(order_item, condition=not_there)
                for settlement in settlements:
                    transaction.save(settlement, condition=not_there)
                transaction.update(
                    session_item,
                    actions=self._actions(changes),
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
                # TransactionConflict: another write held one of the items; ours may go through next.
                in_flight = any(code == "TransactionConflict" for code in reasons)
                raise StaleSession(session.session_id, in_flight=in_flight) from None
            raise
        fresh = self.get(session.session_id)
        if fresh is None:  # pragma: no cover - the transaction just conditioned on it
            raise StaleSession(session.session_id)
        return fresh

    @storage_call
    def _update(
        self, session: PaymentSession, changes: Mapping[str, Any], *, due: tuple[str, int] | None = None
    ) -> PaymentSession:
        condition = self._sessions.status == session.status.value
        if due is not None:
            attribute, bound = due
            condition = condition & (getattr(self._sessions, attribute) <= bound)
        item = self._to_item(session)
        try:
            item.update(actions=self._actions(changes), condition=condition)
        except UpdateError as exc:
            if _lost_race(exc):
                raise _stale(session.session_id, exc) from None
            raise
        return self._to_session(item)

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


def _attribute_value(attribute: Mapping[str, Any]) -> Any:
    """A low-level DynamoDB attribute ({"N": "12"} or {"S": "..."}) as a number or a string."""
    if "N" in attribute:
        return float(attribute["N"])
    return attribute.get("S")
