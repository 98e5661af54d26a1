"""Refunds: an operator returns a fulfilled payment through QPay's refund endpoint.

QPay refunds card payments only; a QR/P2P bank transfer cannot be returned by API, so such a
session is refused (409) before anything is written. Otherwise, in order: the request (who, when,
note) is recorded on the session, QPay refunds each payment, the session moves PROCESSED ->
REFUNDED (a conditional write: of two racing refunds one wins, the other finds it done), the
Ebarimt receipt is cancelled (the Ebarimt job retries what fails), and PaymentRefunded is put on
the bus. Every step can be repeated: a repeated request skips what QPay already shows refunded and
publishes the event if it is still missing, so a refund cut short by a failure is finished by
asking again, and a payment is never refunded twice (QPay refuses that too).
"""

import contextlib

from qpay_common.adapters.qpay.codes import QPayErrorCode
from qpay_common.adapters.qpay.errors import QPayError, QPayRejected
from qpay_common.adapters.qpay.models import PaymentDetails
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.callback_token import callback_url
from qpay_common.domain.errors import (
    EventBusUnavailable,
    EventPublishError,
    InvalidRequest,
    NotRefundable,
    QPayUnavailable,
    RefundNotSupported,
    StaleSession,
)
from qpay_common.domain.session import EbarimtStatus, PaymentSession, PaymentStatus, Refund, iso
from qpay_common.domain.store import SessionStore
from qpay_common.observability import count, logger
from qpay_common.usecases.ebarimt import EbarimtService
from qpay_common.usecases.ports import EventPublisher, QPay, WebhookKeySource
from qpay_common.usecases.races import retry_races
from qpay_common.usecases.settlement import EMIT_LEASE_SECONDS

CARD_ONLY = (
    "QPay refunds card payments only; payment {payment_id} was paid by {kind}. Return the money by "
    "bank transfer; the session stays PROCESSED"
)
UNANSWERED = (
    "QPay did not answer the refund of payment {payment_id}, which may or may not have been made; "
    "repeat the request (a payment is never refunded twice)"
)


class Refunds:
    def __init__(
        self,
        webhook_keys: WebhookKeySource,
        store: SessionStore,
        qpay: QPay,
        publisher: EventPublisher,
        ebarimt: EbarimtService,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        # Read only when a refund asks QPay for a callback: most refunds never load the secret.
        self._webhook_keys = webhook_keys
        self._store = store
        self._qpay = qpay
        self._publisher = publisher
        self._ebarimt = ebarimt
        self._clock = clock

    def refund(
        self,
        actor: str,
        session_id: str,
        *,
        note: str,
        payment_id: str | None = None,
        callback_base_url: str | None = None,
    ) -> PaymentSession:
        """Refund every payment of a PROCESSED session; idempotent (a REFUNDED one is returned as
        it is, its PaymentRefunded published if that is still missing)."""
        session = self._store.find(session_id)
        logger.info("Admin refund requested", extra={"admin": actor, "payment_id": payment_id})
        if session.status != PaymentStatus.REFUNDED:
            session = self._refund(actor, session, note, payment_id, callback_base_url)
        if session.ebarimt_status == EbarimtStatus.CANCELLING:
            # Best effort: the Ebarimt job retries a failed cancel with backoff.
            self._ebarimt.cancel_receipt(session)
            session = self._store.find(session_id)
        return self._publish(session)

    def _refund(
        self,
        actor: str,
        session: PaymentSession,
        note: str,
        payment_id: str | None,
        callback_base_url: str | None,
    ) -> PaymentSession:
        if session.status != PaymentStatus.PROCESSED:
            raise _not_refundable(session.status)
        if payment_id is not None and payment_id not in session.payment_ids:
            raise InvalidRequest("payment_id is not a payment of this session")
        payments = [self._card_payment(payment) for payment in session.payment_ids]
        refund = Refund(
            requested_by=actor,
            requested_at=iso(self._clock.now()),
            note=note,
            payment_ids=session.payment_ids,
            amount=session.paid_amount,
        )
        session = self._record_request(session, refund)
        if session.status != PaymentStatus.PROCESSED:
            return session  # a racing refund finished first
        callback = self._callback_url(session.session_id, callback_base_url)
        for payment in payments:
            if not payment.is_returned:
                self._refund_at_qpay(payment.payment_id, note, callback)
        return self._mark_refunded(session, refund.model_copy(update={"refunded_at": iso(self._clock.now())}))

    def _card_payment(self, payment_id: str) -> PaymentDetails:
        """QPay's view of one payment, refused unless QPay can refund it by API."""
        try:
            payment = self._qpay.get_payment(payment_id)
        except QPayError:
            raise QPayUnavailable("QPay did not answer; nothing was refunded, try again") from None
        if payment.payment_type is not None and not payment.is_card and not payment.is_returned:
            raise RefundNotSupported(CARD_ONLY.format(payment_id=payment_id, kind=payment.payment_type))
        return payment

    def _refund_at_qpay(self, payment_id: str, note: str, callback: str | None) -> None:
        try:
            self._qpay.refund_payment(payment_id, note, callback)
            count("PaymentRefundedAtQPay")
            return
        except QPayRejected as exc:
            if exc.code == QPayErrorCode.PAYMENT_NOT_CARD:
                raise RefundNotSupported(CARD_ONLY.format(payment_id=payment_id, kind="QR/P2P")) from None
            if exc.code != QPayErrorCode.PAYMENT_ALREADY_CANCELED:
                raise NotRefundable(f"QPay refused to refund payment {payment_id}: {exc.code}") from None
        except QPayError:
            pass  # unanswered: it may or may not have been made
        # Refused as already refunded, or unanswered: QPay's own record of the payment decides.
        try:
            returned = self._qpay.get_payment(payment_id).is_returned
        except QPayError:
            returned = False
        if not returned:
            raise QPayUnavailable(UNANSWERED.format(payment_id=payment_id))

    def _record_request(self, session: PaymentSession, refund: Refund) -> PaymentSession:
        def record(current: PaymentSession) -> PaymentSession:
            if current.status != PaymentStatus.PROCESSED:
                return current
            return self._store.record_refund_request(current, refund, self._clock.now())

        session = retry_races(self._store, session, record)
        if session.status not in (PaymentStatus.PROCESSED, PaymentStatus.REFUNDED):
            raise _not_refundable(session.status)
        return session

    def _mark_refunded(self, session: PaymentSession, refund: Refund) -> PaymentSession:
        def mark(current: PaymentSession) -> PaymentSession:
            if current.status != PaymentStatus.PROCESSED:
                return current  # a racing refund won; it recorded its own request
            refunded = self._store.mark_refunded(current, refund, self._clock.now())
            count("PaymentRefunded")
            logger.info(
                "Payment refunded", extra={"admin": refund.requested_by, "refunded_amount": refund.amount}
            )
            return refunded

        return retry_races(self._store, session, mark)

    def _publish(self, session: PaymentSession) -> PaymentSession:
        """PaymentRefunded, once per refund as far as it can be: whoever takes the publish lease
        (a conditional write) publishes; a failure releases it, so repeating the request publishes."""

        def publish(current: PaymentSession) -> PaymentSession:
            refund = current.refund
            now = self._clock.now()
            if refund is None or refund.published_at is not None:
                return current
            if current.emit_lease_until is not None and current.emit_lease_until > now.timestamp():
                return current  # another request is publishing it right now
            current = self._store.take_emit_lease(current, now.timestamp() + EMIT_LEASE_SECONDS, now)
            try:
                self._publisher.payment_refunded(current, refund)
            except EventPublishError as exc:
                count("EventPublishFailed")
                logger.error("PaymentRefunded not published", extra={"error": str(exc)})
                with contextlib.suppress(StaleSession):
                    self._store.release_emit_lease(current)
                raise EventBusUnavailable(
                    "the refund is made and recorded, but PaymentRefunded could not be published; "
                    "repeat the request to publish it"
                ) from None
            published = refund.model_copy(update={"published_at": iso(now)})
            # Another write (the Ebarimt job's claim) may come between: the lease is still ours.
            return retry_races(
                self._store, current, lambda latest: self._store.record_refund_published(latest, published)
            )

        return retry_races(self._store, session, publish)

    def _callback_url(self, session_id: str, base_url: str | None) -> str | None:
        if not base_url:
            return None
        keys = self._webhook_keys()
        return callback_url(base_url, keys.signing_key, session_id, key_id=keys.current_key_id)


def _not_refundable(status: PaymentStatus) -> NotRefundable:
    if status == PaymentStatus.PAID:
        return NotRefundable("the payment is not fulfilled yet; reconcile it first, then refund")
    return NotRefundable(f"a {status.value} payment cannot be refunded: only PROCESSED ones can")
