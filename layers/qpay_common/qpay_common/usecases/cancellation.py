"""Cancellation: the shopper's cancel, the expiry of unpaid sessions, and the best-effort cancel of
the QPay invoice that makes late payments rare. A payment that beat the cancel is settled, never
voided (policy A)."""

from qpay_common.adapters.qpay.codes import INVOICE_ALREADY_GONE, QPayErrorCode
from qpay_common.adapters.qpay.errors import QPayError, QPayRejected
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.errors import AlreadyPaid, NotCancellable, SessionExpired, StaleSession
from qpay_common.domain.session import PaymentSession, PaymentStatus
from qpay_common.domain.state_machine import Event, allows
from qpay_common.domain.store import SessionStore
from qpay_common.observability import count
from qpay_common.usecases.ports import QPay
from qpay_common.usecases.races import retry_races
from qpay_common.usecases.settlement import Settlement

SETTLED = frozenset({PaymentStatus.PAID, PaymentStatus.PROCESSED})


class Cancellation:
    def __init__(
        self,
        store: SessionStore,
        qpay: QPay,
        settlement: Settlement,
        *,
        clock: Clock = SYSTEM_CLOCK,
        checks_after_cancel_seconds: int = 600,
    ) -> None:
        self._store = store
        self._qpay = qpay
        self._settlement = settlement
        self._clock = clock
        self._checks_after_cancel_seconds = checks_after_cancel_seconds

    def cancel(self, user_id: str, session_id: str) -> PaymentSession:
        """PENDING -> CANCELLED; idempotent; a paid or expired session answers why not."""
        cancelled_here = False

        def cancel_once(current: PaymentSession) -> PaymentSession:
            nonlocal cancelled_here
            if current.status == PaymentStatus.CANCELLED:
                return current
            if not allows(current.status, Event.CANCEL):
                raise _refusal(current.status)
            cancelled = self._store.cancel(current, self._clock.now())
            cancelled_here = True
            return cancelled

        session = retry_races(self._store, self._store.find_owned(user_id, session_id), cancel_once)
        if not cancelled_here:
            return session  # cancelled before (idempotent), or every write lost its race
        session = self.cancel_upstream(session, source="cancel")
        if session.status in SETTLED:
            raise AlreadyPaid("the payment arrived before the cancel and has been fulfilled")
        return session

    def expire(self, session: PaymentSession) -> PaymentSession:
        """PENDING -> EXPIRED, then cancel the invoice upstream (INVOICE_PAID: settle it)."""
        expired = self._store.expire(session, self._clock.now())
        count("PaymentExpired")
        return self.cancel_upstream(expired, source="expire")

    def cancel_upstream(self, session: PaymentSession, *, source: str) -> PaymentSession:
        if session.invoice_id is None:
            return session
        try:
            self._qpay.cancel_invoice(session.invoice_id)
        except QPayRejected as exc:
            if exc.code == QPayErrorCode.INVOICE_PAID:
                return self._settlement.confirm_with_qpay(session, source=source)
            if exc.code not in INVOICE_ALREADY_GONE:
                return session  # refused for another reason (the client's monitor logged it)
        except QPayError:
            return session  # reconcile keeps watching it
        return self._invoice_cancelled(session)

    def _invoice_cancelled(self, session: PaymentSession) -> PaymentSession:
        """QPay confirmed it: no payment can arrive any more, so reconcile's grace checks end
        (after a short window for a payment that raced the cancel)."""
        try:
            return self._store.record_invoice_cancelled(
                session, self._clock.now(), checks_for_seconds=self._checks_after_cancel_seconds
            )
        except StaleSession:
            # It moved on (a payment, say); whoever moved it keeps its work-queue keys right.
            return session


def _refusal(status: PaymentStatus) -> Exception:
    if status in SETTLED:
        return AlreadyPaid("the payment is already paid")
    if status == PaymentStatus.EXPIRED:
        return SessionExpired("the payment session has expired")
    return NotCancellable(f"a {status.value} payment cannot be cancelled")
