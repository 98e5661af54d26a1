"""In-memory stand-ins for the use cases' collaborators, for fast tests of the business rules.

InMemorySessions implements SessionStore's storage primitives with the same conditional-write
semantics as DynamoDB (status and version, due bounds, the fulfilment transaction), so the real
domain verbs and their bookkeeping run on top of it unchanged.
"""

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from qpay_common.adapters.qpay.errors import QPayRejected
from qpay_common.adapters.qpay.models import (
    EbarimtReceipt,
    Invoice,
    InvoiceDetails,
    PaymentCheck,
    PaymentDetails,
    PaymentRow,
)
from qpay_common.clock import Clock
from qpay_common.domain.callback_token import WebhookKeys
from qpay_common.domain.errors import DuplicateSettlement, StaleSession
from qpay_common.domain.listing import Position, Stream
from qpay_common.domain.session import Order, PaymentSession, PaymentStatus
from qpay_common.domain.store import CURSOR_FIELDS, DuePage, SessionStore, user_cursor, user_cursor_key
from qpay_common.domain.work_queues import WorkQueue
from qpay_common.settings import Settings
from qpay_common.usecases.ports import ReconcileTask

WEBHOOK_SECRET = "unit-webhook-secret"


class FixedClock(Clock):
    """Time stands still until a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start or datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


def unit_settings(**overrides: Any) -> Settings:
    values = {
        "SESSIONS_TABLE": "sessions",
        "ORDERS_TABLE": "orders",
        "CACHE_TABLE": "cache",
        "EVENT_BUS_NAME": "bus",
        **overrides,
    }
    return Settings.model_validate(values)


def unit_webhook_keys() -> WebhookKeys:
    return WebhookKeys(current_key_id="k1", keys={"k1": SecretStr(WEBHOOK_SECRET)})


class InMemorySessions(SessionStore):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.items: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, Order] = {}
        self.settlements: dict[str, str] = {}
        self.writes = 0
        self.index_reads = 0

    def get(self, session_id: str) -> PaymentSession | None:
        item = self.items.get(session_id)
        return PaymentSession.model_validate(item) if item is not None else None

    def get_order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    def create_unfinished(self, session: PaymentSession) -> PaymentSession:
        if session.session_id in self.items:
            raise StaleSession(session.session_id)
        return self._store({**session.model_dump(mode="json", exclude_none=True), "version": 1})

    def delete_unfinished(self, session: PaymentSession) -> None:
        item = self.items.get(session.session_id)
        if item is None or item["status"] != PaymentStatus.CREATING.value:
            raise StaleSession(session.session_id)
        del self.items[session.session_id]

    def record_fulfilment(
        self, session: PaymentSession, order: Order, *, lease_until: float, now: datetime
    ) -> PaymentSession:
        current = self.items.get(session.session_id, {})
        if current.get("status") != PaymentStatus.PAID.value or current.get("order_id"):
            raise StaleSession(session.session_id)
        if order.order_id in self.orders:
            raise StaleSession(session.session_id)
        if any(
            self.settlements.get(payment_id) not in (None, order.order_id) for payment_id in order.payment_ids
        ):
            raise DuplicateSettlement(session.session_id)
        self.orders[order.order_id] = order
        self.settlements.update(dict.fromkeys(order.payment_ids, order.order_id))
        changes = {
            "order_id": order.order_id,
            "emit_lease_until": lease_until,
            "updated_at": order.created_at,
        }
        return self._update(session, changes)

    def list_for_user(
        self, user_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[PaymentSession], str | None]:
        mine = sorted(
            (item for item in self.items.values() if item["user_id"] == user_id),
            key=lambda item: (item["created_at"], item["session_id"]),
            reverse=True,
        )
        if cursor:
            start = user_cursor_key(user_id, cursor)
            mine = [
                item
                for item in mine
                if (item["created_at"], item["session_id"]) < (start["created_at"], start["session_id"])
            ]
        page = mine[:limit]
        visible = [PaymentSession.model_validate(item) for item in page if item["status"] != "CREATING"]
        last = {name: page[-1][name] for name in CURSOR_FIELDS} if len(mine) > limit else None
        return visible, user_cursor(last)

    def query_index(
        self,
        stream: Stream,
        *,
        created_from: str | None,
        created_to: str | None,
        after: Position | None,
        limit: int,
    ) -> tuple[list[PaymentSession], Position | None]:
        attribute = stream.partition_attribute
        selected = sorted(
            (
                item
                for item in self.items.values()
                if item.get(attribute) == stream.partition
                and (created_from is None or item["created_at"] >= created_from)
                and (created_to is None or item["created_at"] <= created_to)
                and (after is None or (item["created_at"], item["session_id"]) < after)
            ),
            key=lambda item: (item["created_at"], item["session_id"]),
            reverse=True,
        )
        self.index_reads += 1
        page = selected[:limit]
        following = (page[-1]["created_at"], page[-1]["session_id"]) if len(selected) > limit else None
        sessions = [PaymentSession.model_validate(item) for item in page]
        return [session for session in sessions if stream.selects(session)], following

    def due_page(
        self, queue: WorkQueue, shard_key: str, upper_bound: Any, *, start_key: Any, limit: int
    ) -> DuePage:
        due = [
            item
            for item in sorted(
                self.items.values(), key=lambda item: (item.get(queue.due_attribute, 0), item["session_id"])
            )
            if item.get(queue.shard_attribute) == shard_key and item.get(queue.due_attribute) <= upper_bound
        ]
        start = int(start_key or 0)
        page = due[start : start + limit]
        more = start + limit < len(due)
        return DuePage(
            session_ids=[item["session_id"] for item in page],
            items_read=len(page),
            next_key=start + limit if more else None,
            first_due=page[0][queue.due_attribute] if page else None,
        )

    def _lease_due(self, session_id: str, attribute: str, bound: int, until: int) -> bool:
        current = self.items.get(session_id)
        if current is None or not current.get(attribute, float("inf")) <= bound:
            return False
        self._store({**current, attribute: until, "version": current["version"] + 1})
        return True

    def _update(
        self, session: PaymentSession, changes: Mapping[str, Any], *, due: tuple[str, int] | None = None
    ) -> PaymentSession:
        current = self.items.get(session.session_id)
        if (
            current is None
            or current["status"] != session.status.value
            or current["version"] != session.version
        ):
            raise StaleSession(session.session_id)
        if due is not None and not current.get(due[0], float("inf")) <= due[1]:
            raise StaleSession(session.session_id)
        updated = {**current, "version": current["version"] + 1}
        for name, value in changes.items():
            if value is None:
                updated.pop(name, None)
            else:
                updated[name] = value
        return self._store(updated)

    def _store(self, item: dict[str, Any]) -> PaymentSession:
        self.writes += 1
        self.items[item["session_id"]] = item
        return PaymentSession.model_validate(item)


class FakeCache:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.items: dict[str, tuple[dict[str, Any], float, str | None]] = {}

    def get(self, key: str) -> tuple[dict[str, Any], str | None] | None:
        found = self.items.get(key)
        if found is None or found[1] <= self._clock.epoch():
            return None
        return found[0], found[2]

    def put(self, key: str, data: dict[str, Any], *, expires_at: float, tag: str | None = None) -> None:
        self.items[key] = (data, expires_at, tag)

    def put_if_absent(
        self, key: str, data: dict[str, Any], *, expires_at: float, tag: str | None = None
    ) -> bool:
        if self.get(key) is not None:
            return False
        self.put(key, data, expires_at=expires_at, tag=tag)
        return True

    def delete(self, key: str, *, tag: str | None = None) -> bool:
        return self.items.pop(key, None) is not None


class FakeQPay:
    """QPay as the use cases see it: invoices, payment rows (P2P or CARD), receipts, scripted errors."""

    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, list[PaymentRow]] = {}
        self.payment_types: dict[str, str] = {}
        self.calls: list[str] = []
        self.fail_next: dict[str, Exception] = {}
        # Every call of these fails with this error until the entry is removed: an outage.
        self.down: dict[str, Exception] = {}
        self.receipts: list[dict[str, Any]] = []
        self.receipt_status: dict[str, str] = {}
        # Run while a call is in flight (before QPay answers it): races in one thread.
        self.during: dict[str, Callable[[], Any]] = {}
        # Run once QPay has done what the call asked, before it answers (a caller dying then).
        self.after: dict[str, Callable[[], Any]] = {}

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.during:
            self.during.pop(name)()
        if name in self.fail_next:
            raise self.fail_next.pop(name)
        if name in self.down:
            raise self.down[name]

    def create_invoice(self, request: Any) -> Invoice:
        self._call("create_invoice")
        if any(
            invoice["sender_invoice_no"] == request.sender_invoice_no for invoice in self.invoices.values()
        ):
            raise QPayRejected("duplicate", status=400, code="SENDER_INVOICE_NO_DUPLICATED")
        invoice_id = f"inv-{len(self.invoices) + 1}"
        self.invoices[invoice_id] = {
            "amount": request.amount,
            "status": "OPEN",
            "callback_url": request.callback_url,
            "sender_invoice_no": request.sender_invoice_no,
        }
        if "create_invoice" in self.after:
            self.after.pop("create_invoice")()
        return Invoice(invoice_id=invoice_id, qr_text=f"qr-{invoice_id}", qr_image="iVBOR", urls=[])

    def get_invoice(self, invoice_id: str) -> InvoiceDetails:
        self._call("get_invoice")
        invoice = self.invoices[invoice_id]
        return InvoiceDetails(
            invoice_id=invoice_id,
            invoice_status=invoice["status"],
            total_amount=invoice["amount"],
            payments=self.payments.get(invoice_id, []),
        )

    def cancel_invoice(self, invoice_id: str) -> None:
        self._call("cancel_invoice")
        if self.payments.get(invoice_id):
            raise QPayRejected("paid", status=400, code="INVOICE_PAID")
        self.invoices[invoice_id]["status"] = "CANCELLED"

    def check_payment(self, invoice_id: str) -> PaymentCheck:
        self._call("check_payment")
        rows = self.payments.get(invoice_id, [])
        return PaymentCheck(count=len(rows), rows=rows)

    def _row(self, payment_id: str) -> PaymentRow:
        for rows in self.payments.values():
            for row in rows:
                if row.payment_id == payment_id:
                    return row
        raise QPayRejected("not found", status=404, code="PAYMENT_NOTFOUND")

    def get_payment(self, payment_id: str) -> PaymentDetails:
        self._call("get_payment")
        row = self._row(payment_id)
        return PaymentDetails(
            payment_id=payment_id,
            payment_status=row.payment_status,
            payment_amount=row.payment_amount,
            payment_type=self.payment_types[payment_id],
        )

    def refund_payment(self, payment_id: str, note: str, callback_url: str | None = None) -> None:
        self._call("refund_payment")
        row = self._row(payment_id)
        if self.payment_types[payment_id] != "CARD":
            raise QPayRejected("card only", status=400, code="PAYMENT_NOT_CARD")
        if row.payment_status != "PAID":
            raise QPayRejected("done", status=400, code="PAYMENT_ALREADY_CANCELED")
        row.payment_status = "REFUNDED"

    def create_ebarimt(self, payload: dict[str, Any]) -> EbarimtReceipt:
        self._call("create_ebarimt")
        self.receipts.append(payload)
        self.receipt_status[payload["payment_id"]] = "REGISTERED"
        number = len(self.receipts)
        return EbarimtReceipt(
            id=f"receipt-{number}",
            ebarimt_receipt_id=f"{number:033d}",
            ebarimt_lottery=f"AB {number:08d}",
            ebarimt_qr_data=f"{number:096d}",
            vat_amount="909.09",
            city_tax_amount="0.00",
            answer={"id": f"receipt-{number}", "barimt_status": "REGISTERED"},
        )

    def cancel_ebarimt(self, payment_id: str) -> EbarimtReceipt:
        self._call("cancel_ebarimt")
        if payment_id not in self.receipt_status:
            raise QPayRejected("no receipt", status=400, code="EBARIMT_NOT_REGISTERED")
        self.receipt_status[payment_id] = "CANCELED"
        return EbarimtReceipt(barimt_status="CANCELED")

    def pay(self, invoice_id: str, amount: int, payment_type: str = "P2P") -> str:
        rows = self.payments.setdefault(invoice_id, [])
        payment_id = f"pay-{invoice_id}-{len(rows) + 1}"
        rows.append(PaymentRow(payment_id=payment_id, payment_status="PAID", payment_amount=amount))
        self.payment_types[payment_id] = payment_type
        return payment_id


class World:
    """Every use case wired by the composition root around in-memory parts and one fixed clock:
    the graph Lambda runs, with fakes where it would reach DynamoDB, QPay, EventBridge and SQS."""

    def __init__(self, **settings: Any) -> None:
        from qpay_common.composition import Graph

        self.settings = unit_settings(**settings)
        self.clock = FixedClock()
        self.sessions = InMemorySessions(self.settings)
        self.cache = FakeCache(self.clock)
        self.qpay = FakeQPay()
        self.publisher = FakePublisher()
        self.task_queues = FakeTaskQueues()
        keys = unit_webhook_keys()
        self.graph = Graph(
            settings=self.settings,
            clock=self.clock,
            store=self.sessions,
            cache=self.cache,
            qpay=self.qpay,
            publisher=self.publisher,
            task_queues=self.task_queues,
            webhook_keys=lambda: keys,
        )
        self.settlement = self.graph.settlement
        self.cancellation = self.graph.cancellation
        self.creation = self.graph.payment_creation
        self.queries = self.graph.queries
        self.ebarimt = self.graph.ebarimt
        self.jobs = self.graph.scheduled_jobs
        self.dispatcher = self.graph.reconcile_dispatcher
        self.worker = self.graph.reconcile_worker
        self.refunds = self.graph.refunds
        self.admin = self.graph.admin_operations
        self.reports = self.graph.admin_reports

    def reconcile(self, remaining_seconds: float = 60) -> tuple[Any, Counter[str]]:
        """One dispatcher run, then every queued message worked: (dispatch summary, outcomes)."""
        summary = self.dispatcher.dispatch(remaining_seconds)
        return summary, Counter(self.worker.work_message(body) for body in self.task_queues.take())

    def create(self, amount: int = 15000, user_id: str = "alice", **fields: Any) -> PaymentSession:
        from qpay_common.domain.payment_request import CreatePaymentRequest

        request = CreatePaymentRequest.model_validate({"amount": amount, **fields})
        session, _ = self.creation.create_payment(user_id, request, "https://shop.example")
        return session

    def token(self, session_id: str) -> str:
        from qpay_common.domain.callback_token import callback_token

        return callback_token(WEBHOOK_SECRET, session_id)

    def processed(self, amount: int = 15000, payment_type: str = "CARD", **fields: Any) -> PaymentSession:
        """A fulfilled session paid by one payment of `payment_type`."""
        session = self.create(amount, **fields)
        self.qpay.pay(session.invoice_id or "", amount, payment_type)
        done = self.settlement.confirm_with_qpay(session, source="webhook")
        assert done.status == PaymentStatus.PROCESSED
        return done

    def stored(self, session_id: str) -> PaymentSession:
        session = self.sessions.get(session_id)
        assert session is not None
        return session


class FakeTaskQueues:
    """The reconcile queues in memory: what the dispatcher sent, in order, per queue."""

    def __init__(self) -> None:
        self.messages: dict[bool, list[str]] = {True: [], False: []}

    def depth(self, *, priority: bool) -> int:
        return len(self.messages[priority])

    def send(self, tasks: list[ReconcileTask], *, priority: bool) -> int:
        self.messages[priority].extend(task.body() for task in tasks)
        return 0

    def take(self) -> list[str]:
        """Every waiting message, the priority queue's first."""
        taken = self.messages[True] + self.messages[False]
        self.messages = {True: [], False: []}
        return taken


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[PaymentSession, Order]] = []
        self.refunds: list[tuple[PaymentSession, Any]] = []
        self.fail_next = 0

    def _maybe_fail(self) -> None:
        from qpay_common.domain.errors import EventPublishError

        if self.fail_next:
            self.fail_next -= 1
            raise EventPublishError("bus unavailable")

    def payment_completed(self, session: PaymentSession, order: Order) -> None:
        self._maybe_fail()
        self.published.append((session, order))

    def payment_refunded(self, session: PaymentSession, refund: Any) -> None:
        self._maybe_fail()
        self.refunds.append((session, refund))
