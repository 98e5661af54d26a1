"""Settlement: QPay's payment check turned into PAID, then one order, PaymentCompleted and PROCESSED.

The webhook, the status poll, cancel/expire (when QPay says INVOICE_PAID) and reconcile all drive
these methods, so a race between them has one winner: every step is a conditional write, and the
loser re-reads and carries on from whatever state the winner left.
"""

from collections.abc import Callable

from qpay_common.adapters.qpay.errors import QPayError
from qpay_common.adapters.qpay.models import PaymentCheck
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.callback_token import is_valid_callback_token
from qpay_common.domain.errors import (
    DuplicateSettlement,
    EventPublishError,
    QPayUnavailable,
    StaleSession,
    StorageUnavailable,
    Unauthorized,
)
from qpay_common.domain.session import (
    AMOUNT_MISMATCH,
    Order,
    PaymentSession,
    PaymentStatus,
    iso,
    order_id_for,
)
from qpay_common.domain.state_machine import PAYABLE, Event, transition_for
from qpay_common.domain.store import SessionStore
from qpay_common.observability import count, logger
from qpay_common.usecases.ports import EventPublisher, QPay, WebhookKeySource
from qpay_common.usecases.races import retry_races

# Whoever wrote the order publishes PaymentCompleted; others wait this long before taking over.
EMIT_LEASE_SECONDS = 30

# A seam for crash-injection tests: called with a stage name at the points a Lambda can die.
FaultHook = Callable[[str, PaymentSession], None]


class Settlement:
    def __init__(
        self,
        webhook_keys: WebhookKeySource,
        store: SessionStore,
        qpay: QPay,
        publisher: EventPublisher,
        *,
        clock: Clock = SYSTEM_CLOCK,
        fault_hook: FaultHook | None = None,
        emit_lease_seconds: float = EMIT_LEASE_SECONDS,
    ) -> None:
        # Loaded on the first callback: the other functions that settle never read the secret.
        self._webhook_keys = webhook_keys
        self._store = store
        self._qpay = qpay
        self._publisher = publisher
        self._clock = clock
        self._fault_hook = fault_hook
        self._emit_lease_seconds = emit_lease_seconds

    def handle_callback(
        self, session_id: str | None, token: str | None, key_id: str | None = None
    ) -> PaymentSession | None:
        """QPay's callback is a hint to look; QPay's payment check is the proof. `key_id` is the
        URL's `kid`: the token must be made with that key (None: a URL from before key ids).

        None: DynamoDB was throttled or failing past the SDK's retries, and the callback is left
        to reconcile, which checks every PENDING session with QPay within minutes (the shopper's
        next status read does too). Answering QPay with a 5xx instead would only page someone and
        make QPay call again into the same throttle."""
        if not is_valid_callback_token(self._webhook_keys().keys_for(key_id), session_id, token):
            raise Unauthorized("invalid callback token")
        assert session_id is not None  # checked by the token
        logger.append_keys(session_id=session_id)
        try:
            session = self._store.find(session_id)
            if session.status == PaymentStatus.PROCESSED:
                count("WebhookDuplicate")
                return session
            return self.confirm_with_qpay(session, source="webhook")
        except StorageUnavailable:
            count("WebhookDeferred")
            logger.warning("DynamoDB unavailable during a callback; reconcile records the payment")
            return None

    def confirm_with_qpay(self, session: PaymentSession, *, source: str) -> PaymentSession:
        if session.status == PaymentStatus.PAID:
            # Already verified; only the order and event may be missing.
            return self.fulfil(session)
        if session.status not in PAYABLE or session.invoice_id is None:
            return session
        try:
            check = self._qpay.check_payment(session.invoice_id)
        except QPayError:
            raise QPayUnavailable("QPay did not answer the payment check; try again") from None
        return self.apply_payment_check(session, check, source=source)

    def apply_payment_check(
        self, session: PaymentSession, check: PaymentCheck, *, source: str
    ) -> PaymentSession:
        paid_rows = check.paid_rows
        if not paid_rows:
            return session
        total_paid = check.total_paid
        payment_ids = [row.payment_id for row in paid_rows]

        def settle(current: PaymentSession) -> PaymentSession:
            if current.status in PAYABLE:
                if total_paid < current.amount:
                    return self._record_underpayment(current, total_paid, payment_ids)
                current = self._mark_paid(current, total_paid, payment_ids, source)
            if current.status == PaymentStatus.PAID:
                return self.fulfil(current)
            return current

        return retry_races(self._store, session, settle)

    def fulfil(self, session: PaymentSession) -> PaymentSession:
        """PAID -> order (once) -> PaymentCompleted (at least once) -> PROCESSED."""
        published_under: float | None = None  # the publish lease under which this call published

        def fulfil_once(current: PaymentSession) -> PaymentSession:
            nonlocal published_under
            if current.status != PaymentStatus.PAID:
                return current
            now = self._clock.now()
            lease_until = now.timestamp() + self._emit_lease_seconds
            if published_under is not None and current.emit_lease_until == published_under:
                # Our event is out and the lease still ours: only the last write lost a race
                # with an unrelated one (a duplicate delivery recording its check).
                return self._mark_processed(current)
            if current.order_id is None:
                self._fault("before_order", current)
                order = self._order_for(current)
                try:
                    current = self._store.record_fulfilment(current, order, lease_until=lease_until, now=now)
                except DuplicateSettlement:
                    return self._settled_elsewhere(current)
            else:
                if current.emit_lease_until is not None and current.emit_lease_until > now.timestamp():
                    return current  # another worker is publishing right now
                current = self._store.take_emit_lease(current, lease_until, now)
                order = self._store.get_order(current.order_id or "") or self._order_for(current)
            self._fault("before_event", current)
            try:
                self._publisher.payment_completed(current, order)
            except EventPublishError as exc:
                count("EventPublishFailed")
                logger.error("PaymentCompleted not published; session stays PAID", extra={"error": str(exc)})
                return self._release_emit_lease(current)
            published_under = current.emit_lease_until
            self._fault("before_processed", current)
            return self._mark_processed(current)

        return retry_races(self._store, session, fulfil_once)

    def _settled_elsewhere(self, session: PaymentSession) -> PaymentSession:
        """A QPay payment id of this session is already settled against another order: no retry
        can fulfil it, and a second order for the same money must never be made. The session stays
        PAID (its money is real, reconcile's backoff keeps it visible) and an operator is paged;
        QPay's callback is still answered, since calling again cannot change it."""
        count("DuplicateSettlement")
        logger.error(
            "A payment of this session is settled against another order; not fulfilled",
            extra={"payment_ids": session.payment_ids},
        )
        return session

    def _mark_processed(self, session: PaymentSession) -> PaymentSession:
        processed = self._store.mark_processed(session, self._clock.now())
        count("PaymentFulfilled")
        logger.info("Payment fulfilled", extra={"order_id": processed.order_id})
        return processed

    def _release_emit_lease(self, session: PaymentSession) -> PaymentSession:
        """Let the next attempt (a duplicate callback, a poll, reconcile) publish at once."""
        try:
            return self._store.release_emit_lease(session)
        except StaleSession:
            return session

    def _mark_paid(
        self, session: PaymentSession, total_paid: int, payment_ids: list[str], source: str
    ) -> PaymentSession:
        late = transition_for(session.status, Event.PAYMENT_VERIFIED).late_payment
        paid = self._store.mark_paid(session, total_paid, payment_ids, self._clock.now())
        count("PaymentConfirmed", source=source)
        if late:
            count("LatePaymentHonoured")
            logger.warning("Late payment honoured", extra={"previous_status": session.status.value})
        if total_paid > session.amount:
            logger.info("Over-payment accepted", extra={"amount": session.amount, "paid_amount": total_paid})
        return paid

    def _record_underpayment(
        self, session: PaymentSession, total_paid: int, payment_ids: list[str]
    ) -> PaymentSession:
        if session.status == PaymentStatus.FAILED and session.paid_amount == total_paid:
            return session
        failed = self._store.record_underpayment(
            session, total_paid, payment_ids, AMOUNT_MISMATCH, self._clock.now()
        )
        count("AmountMismatch")
        logger.error("Paid less than the amount", extra={"amount": session.amount, "paid_amount": total_paid})
        return failed

    def _order_for(self, session: PaymentSession) -> Order:
        return Order(
            order_id=order_id_for(session.session_id),
            session_id=session.session_id,
            user_id=session.user_id,
            amount=session.amount,
            paid_amount=session.paid_amount,
            currency=session.currency,
            payment_ids=session.payment_ids,
            items=session.items,
            metadata=session.metadata,
            created_at=iso(self._clock.now()),
        )

    def _fault(self, stage: str, session: PaymentSession) -> None:
        if self._fault_hook is not None:
            self._fault_hook(stage, session)
