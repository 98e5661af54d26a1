"""Operators' actions on one session: inspect it beside QPay's live view, reconcile it now, and
publish PaymentCompleted again. Refunds are in refunds.py, listings and the summary in
admin_reports.py. Every action is logged with the operator's id; none bypasses the state machine.
"""

from dataclasses import dataclass, field

from qpay_common.adapters.qpay.errors import QPayError
from qpay_common.adapters.qpay.models import InvoiceDetails, PaymentCheck, PaymentDetails
from qpay_common.domain.errors import EventBusUnavailable, EventPublishError, NoOrder
from qpay_common.domain.session import Order, PaymentSession, PaymentStatus
from qpay_common.domain.state_machine import PAYABLE
from qpay_common.domain.store import SessionStore
from qpay_common.observability import count, logger
from qpay_common.usecases.ports import EventPublisher, QPay
from qpay_common.usecases.settlement import Settlement

# A session with more payments than this is shown with the first ones only.
MAX_PAYMENTS_SHOWN = 20


@dataclass
class QPayLiveView:
    """What QPay says about a session's invoice and payments right now (as far as it answered)."""

    invoice: InvoiceDetails | None = None
    check: PaymentCheck | None = None
    payments: list[PaymentDetails] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Inspection:
    session: PaymentSession
    order: Order | None
    qpay: QPayLiveView


class AdminOperations:
    def __init__(
        self,
        store: SessionStore,
        qpay: QPay,
        settlement: Settlement,
        publisher: EventPublisher,
    ) -> None:
        self._store = store
        self._qpay = qpay
        self._settlement = settlement
        self._publisher = publisher

    def inspect(self, actor: str, session_id: str) -> Inspection:
        """The session, its order, and QPay's live view; QPay being down does not hide the rest."""
        session = self._store.find(session_id)
        logger.info("Admin inspect", extra={"admin": actor})
        order = self._store.get_order(session.order_id) if session.order_id else None
        return Inspection(session=session, order=order, qpay=self._live_view(session))

    def reconcile(self, actor: str, session_id: str) -> PaymentSession:
        """Ask QPay now (no throttle, no backoff) and apply what it says, as reconcile would."""
        session = self._store.find(session_id)
        logger.info("Admin reconcile", extra={"admin": actor, "status": session.status.value})
        if session.status == PaymentStatus.PAID or session.status in PAYABLE:
            # QPayUnavailable (502) if QPay does not answer: nothing changes then.
            return self._settlement.confirm_with_qpay(session, source="admin")
        return session  # PROCESSED, REFUNDED: settled already

    def republish(self, actor: str, session_id: str) -> tuple[PaymentSession, list[str]]:
        """PaymentCompleted again, with the same order id (and PaymentRefunded after it for a
        refunded session). A PAID session is fulfilled instead, which publishes once."""
        session = self._store.find(session_id)
        logger.info("Admin republish", extra={"admin": actor, "status": session.status.value})
        if session.status == PaymentStatus.PAID:
            fulfilled = self._settlement.fulfil(session)
            if fulfilled.status == PaymentStatus.PAID:
                raise EventBusUnavailable(
                    "PaymentCompleted could not be published now; the session stays PAID and "
                    "reconcile retries it"
                )
            return fulfilled, ["PaymentCompleted"]
        order = self._store.get_order(session.order_id) if session.order_id else None
        if order is None or session.status not in (PaymentStatus.PROCESSED, PaymentStatus.REFUNDED):
            raise NoOrder(f"a {session.status.value} session has no order to publish")
        published = []
        try:
            self._publisher.payment_completed(session, order)
            published.append("PaymentCompleted")
            if session.status == PaymentStatus.REFUNDED and session.refund is not None:
                self._publisher.payment_refunded(session, session.refund)
                published.append("PaymentRefunded")
        except EventPublishError as exc:
            count("EventPublishFailed")
            logger.error("Republish failed", extra={"error": str(exc), "published": published})
            raise EventBusUnavailable("the event bus did not take the event; try again") from None
        count("EventRepublished")
        return session, published

    def _live_view(self, session: PaymentSession) -> QPayLiveView:
        view = QPayLiveView()
        if session.invoice_id is None:
            return view
        try:
            view.invoice = self._qpay.get_invoice(session.invoice_id)
        except QPayError as exc:
            view.errors.append(_described("invoice", exc))
        try:
            view.check = self._qpay.check_payment(session.invoice_id)
        except QPayError as exc:
            view.errors.append(_described("payment check", exc))
        checked = [row.payment_id for row in view.check.rows] if view.check else []
        payment_ids = list(dict.fromkeys([*session.payment_ids, *checked]))[:MAX_PAYMENTS_SHOWN]
        for payment_id in payment_ids:
            try:
                view.payments.append(self._qpay.get_payment(payment_id))
            except QPayError as exc:
                view.errors.append(_described(f"payment {payment_id}", exc))
        return view


def _described(what: str, exc: QPayError) -> str:
    # The code and status only: a QPay message can carry what we do not log.
    return f"{what}: {exc.code or type(exc).__name__}" + (f" (HTTP {exc.status})" if exc.status else "")
