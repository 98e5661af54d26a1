"""Cancellation: the shopper's cancel, the expiry of unpaid sessions, and the best-effort cancel of
the QPay invoice that makes late payments rare. A payment that beat the cancel is settled, never
voided (policy A)."""

from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain import PaymentSession, PaymentStatus
from qpay_common.errors import (
    AlreadyPaid,
    NotCancellable,
    QPayError,
    QPayRejected,
    SessionExpired,
    StaleSession,
)
from qpay_common.observability import count, logger
from qpay_common.qpay_client import QPayClient
from qpay_common.qpay_codes import INVOICE_ALREADY_GONE, QPayErrorCode
from qpay_common.queries import find_owned
from qpay_common.repository import SessionsRepository
from qpay_common.settlement import MAX_RACE_RETRIES, Settlement
from qpay_common.state_machine import Event, allows

SETTLED = frozenset({PaymentStatus.PAID, PaymentStatus.PROCESSED})


class Cancellation:
    def __init__(
        self,
        repository: SessionsRepository,
        qpay: QPayClient,
        settlement: Settlement,
        *,
        clock: Clock = SYSTEM_CLOCK,
        checks_after_cancel_seconds: int = 600,
    ) -> None:
        self._repository = repository
        self._qpay = qpay
        self._settlement = settlement
        self._clock = clock
        self._checks_after_cancel_seconds = checks_after_cancel_seconds

    def cancel(self, user_id: str, session_id: str) -> PaymentSession:
        """PENDING -> CANCELLED; idempotent; a paid or expired session answers why not."""
        session = find_owned(self._repository, user_id, session_id)
        for _ in range(MAX_RACE_RETRIES):
            if session.status == PaymentStatus.CANCELLED:
                return session
            if not allows(session.status, Event.CANCEL):
                raise _refusal(session.status)
            try:
                session = self._repository.cancel(session, self._clock.now())
                break
            except StaleSession:
                session = find_owned(self._repository, user_id, session_id)
        session = self.cancel_upstream(session, source="cancel")
        if session.status in SETTLED:
            raise AlreadyPaid("the payment arrived before the cancel and has been fulfilled")
        return session

    def expire(self, session: PaymentSession) -> PaymentSession:
        """PENDING -> EXPIRED, then cancel the invoice upstream (INVOICE_PAID: settle it)."""
        expired = self._repository.expire(session, self._clock.now())
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
                logger.warning("QPay refused to cancel the invoice", extra={"qpay_code": exc.code})
                return session
        except QPayError as exc:
            count("QPayErrors", operation="cancel_invoice")
            logger.warning("QPay invoice cancel failed; reconcile keeps watching", extra={"error": str(exc)})
            return session
        return self._invoice_cancelled(session)

    def _invoice_cancelled(self, session: PaymentSession) -> PaymentSession:
        """QPay confirmed it: no payment can arrive any more, so reconcile's grace checks end
        (after a short window for a payment that raced the cancel)."""
        try:
            return self._repository.record_invoice_cancelled(
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
