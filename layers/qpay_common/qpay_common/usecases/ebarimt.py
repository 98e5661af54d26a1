"""Ebarimt 3.0 e-receipts, after PROCESSED: never blocks or rolls back an order, never logs the
receiver (personal data), idempotent (a receipt id present means done). A refunded session's
receipt is cancelled by the same job, with the same claims, backoff and retry window.

An e-receipt is the merchant's legal obligation, so a failure is retried, with exponential backoff
up to hourly, until EBARIMT_MAX_AGE_HOURS after the receipt was queued: an outage of hours ends
REGISTERED once QPay answers again. Only QPay's validation codes stop it at once (REJECTED); past
the window it is GAVE_UP. Both page (the alarm), and an operator can queue it again (requeue)."""

import contextlib
from datetime import datetime, timedelta
from typing import Any

from qpay_common.adapters.qpay.codes import (
    EBARIMT_CANCEL_PERMANENT,
    EBARIMT_PERMANENT,
    EBARIMT_RECEIPT_ABSENT,
)
from qpay_common.adapters.qpay.errors import QPayError, QPayRejected
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.errors import (
    EbarimtAlreadyRegistered,
    EbarimtDisabled,
    NotRequeueable,
    StaleSession,
)
from qpay_common.domain.session import (
    REQUEUEABLE,
    EbarimtStatus,
    PaymentSession,
    PaymentStatus,
    iso,
)
from qpay_common.domain.store import SessionStore
from qpay_common.domain.work_queues import EBARIMT_QUEUE, ebarimt_retry_delay
from qpay_common.observability import count, logger
from qpay_common.settings import Settings
from qpay_common.usecases.ports import QPay
from qpay_common.usecases.races import retry_races


class EbarimtService:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        qpay: QPay,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._store = store
        self._qpay = qpay
        self._clock = clock

    def register(self, session_id: str) -> str:
        """One attempt for one session; returns what happened, for the job's summary."""
        session = self._store.get(session_id)
        if session is None:
            return "gone"
        if session.status == PaymentStatus.REFUNDED:
            return self.cancel_receipt(session)
        if (
            session.status != PaymentStatus.PROCESSED
            or session.ebarimt_receipt_id
            or session.ebarimt_status
            in (
                EbarimtStatus.REGISTERED,
                EbarimtStatus.SKIPPED,
            )
        ):
            self._stop_watching(session)
            return "not_due"
        if not self._settings.ebarimt_enabled:
            self._record(session, EbarimtStatus.SKIPPED, still_due=False)
            return "skipped"
        claimed = self._claim(session)
        if claimed is None:
            return "claimed_elsewhere"
        session, attempts = claimed
        try:
            receipt = self._qpay.create_ebarimt(self._request(session))
        except QPayError as exc:
            return self._record_failure(session, exc, attempts)
        fields = {
            "ebarimt_receipt_id": receipt.ebarimt_receipt_id or receipt.id,
            "ebarimt_qr_data": receipt.ebarimt_qr_data,
            "ebarimt_lottery": receipt.ebarimt_lottery,
            "ebarimt_vat_amount": receipt.vat_amount,
            "ebarimt_city_tax_amount": receipt.city_tax_amount,
            "ebarimt_registered_at": iso(self._clock.now()),
            "ebarimt_answer": receipt.answer or None,
        }
        count("EbarimtRegistered")
        try:
            self._store.record_ebarimt(
                session, EbarimtStatus.REGISTERED, still_due=False, ebarimt_last_error=None, **fields
            )
        except StaleSession:
            return self._registered_while_moving_on(session.session_id, fields)
        return "registered"

    def cancel_receipt(self, session: PaymentSession) -> str:
        """One attempt at cancelling the receipt of a refunded session (the refund and the job
        both call this; the claim lets one of them at a time ask QPay)."""
        if session.ebarimt_status != EbarimtStatus.CANCELLING:
            self._stop_watching(session)
            return "not_due"
        claimed = self._claim(session)
        if claimed is None:
            return "claimed_elsewhere"
        session, attempts = claimed
        if not session.payment_ids:
            self._record(session, EbarimtStatus.SKIPPED, still_due=False)
            return "no_receipt"
        try:
            receipt = self._qpay.cancel_ebarimt(session.payment_ids[0])
        except QPayRejected as exc:
            if exc.code in EBARIMT_RECEIPT_ABSENT and not session.ebarimt_receipt_id:
                # Never registered: nothing was issued, nothing to cancel.
                self._record(session, EbarimtStatus.SKIPPED, still_due=False, ebarimt_last_error=None)
                return "no_receipt"
            return self._record_cancel_failure(session, exc.code or type(exc).__name__, attempts, exc)
        except QPayError as exc:
            return self._record_cancel_failure(session, exc.code or type(exc).__name__, attempts, exc)
        if (receipt.barimt_status or "CANCELED").upper() not in ("CANCELED", "CANCELLED"):
            return self._record_cancel_failure(session, f"BARIMT_STATUS_{receipt.barimt_status}", attempts)
        self._record(session, EbarimtStatus.CANCELLED, still_due=False, ebarimt_last_error=None)
        count("EbarimtCancelled")
        return "cancelled"

    def requeue(self, actor: str, session_id: str, overrides: dict[str, Any] | None = None) -> PaymentSession:
        """An operator queues a receipt again (ERROR, REJECTED or GAVE_UP), perhaps with other
        receiver data for this session: due at the job's next run, with a fresh retry window."""
        logger.info("Admin Ebarimt re-queue", extra={"admin": actor, "overrides": sorted(overrides or {})})
        if not self._settings.ebarimt_enabled:
            raise EbarimtDisabled("Ebarimt is not enabled on this stack (EBARIMT_ENABLED)")

        def step(session: PaymentSession) -> PaymentSession:
            if session.ebarimt_status == EbarimtStatus.REGISTERED or session.ebarimt_receipt_id:
                raise EbarimtAlreadyRegistered(f"receipt {session.ebarimt_receipt_id} is registered already")
            if session.status != PaymentStatus.PROCESSED or session.ebarimt_status not in REQUEUEABLE:
                state = session.ebarimt_status or "no receipt"
                raise NotRequeueable(
                    f"a {session.status.value} session's receipt is {state}; only ERROR, REJECTED or "
                    "GAVE_UP receipts of PROCESSED sessions are queued again"
                )
            return self._store.requeue_ebarimt(session, self._clock.now(), overrides=overrides)

        # A job's claim may come between the read and the write: read it again (retry_races).
        requeued = retry_races(self._store, self._store.find(session_id), step)
        if requeued.ebarimt_status != EbarimtStatus.PENDING:
            raise NotRequeueable("the receipt kept changing while it was queued again; repeat the request")
        return requeued

    def _retry_until(self, session: PaymentSession) -> datetime:
        """When the receipt's retry window closes: EBARIMT_MAX_AGE_HOURS after it was queued."""
        queued = session.ebarimt_queued_at or session.processed_at or session.updated_at
        start = datetime.fromisoformat(queued.replace("Z", "+00:00"))
        return start + timedelta(hours=self._settings.ebarimt_max_age_hours)

    def _claim(self, session: PaymentSession) -> tuple[PaymentSession, int] | None:
        """The next attempt, claimed with one conditional write that also schedules the one after
        it by the backoff (never past the window's end, so the last try comes as it closes); None
        if an overlapping run claimed it first (it leaves it alone)."""
        attempts = (session.ebarimt_attempts or 0) + 1
        now = self._clock.now()
        next_attempt_at = now.timestamp() + ebarimt_retry_delay(attempts)
        window_ends = self._retry_until(session).timestamp()
        if window_ends > now.timestamp():
            next_attempt_at = min(next_attempt_at, window_ends)
        try:
            claimed = self._store.claim_ebarimt_attempt(
                session, now, next_attempt_at=next_attempt_at, attempts=attempts
            )
        except StaleSession:
            return None
        return claimed, attempts

    def _registered_while_moving_on(self, session_id: str, fields: dict[str, Any]) -> str:
        """The session changed while QPay registered its receipt. If it was refunded meanwhile, the
        refund may have found no receipt to cancel: this one is queued for cancelling now."""
        current = self._store.get(session_id)
        if current is None or current.status != PaymentStatus.REFUNDED:
            return "registered"  # another run recorded it; its write stands
        try:
            current = self._store.queue_receipt_cancel(current, self._clock.now(), **fields)
        except StaleSession:
            return "claimed_elsewhere"
        return self.cancel_receipt(current)

    def _record_cancel_failure(
        self, session: PaymentSession, error: str, attempts: int, exc: QPayError | None = None
    ) -> str:
        permanent = exc is not None and isinstance(exc, QPayRejected) and exc.code in EBARIMT_CANCEL_PERMANENT
        # A receipt we recorded that QPay says does not exist needs a person too.
        permanent = permanent or (exc is not None and exc.code in EBARIMT_RECEIPT_ABSENT)
        gave_up = permanent or self._clock.now() >= self._retry_until(session)
        status = EbarimtStatus.CANCEL_FAILED if gave_up else EbarimtStatus.CANCELLING
        self._record(session, status, still_due=not gave_up, ebarimt_last_error=error)
        count("EbarimtCancelFailed")
        if gave_up:
            count("EbarimtGaveUp")
            logger.error(
                "Ebarimt receipt of a refund not cancelled; giving up",
                extra={"error": error, "attempts": attempts},
            )
            return "cancel_gave_up"
        logger.warning(
            "Ebarimt receipt cancel failed; will retry", extra={"error": error, "attempts": attempts}
        )
        return "cancel_retry_later"

    def _record_failure(self, session: PaymentSession, exc: QPayError, attempts: int) -> str:
        # The error text names the QPay code only: never the request, which holds the receiver.
        error = exc.code or type(exc).__name__
        count("EbarimtFailed")
        if isinstance(exc, QPayRejected) and exc.code in EBARIMT_PERMANENT:
            self._record(session, EbarimtStatus.REJECTED, still_due=False, ebarimt_last_error=error)
            count("EbarimtRejected")
            logger.error("Ebarimt receipt rejected by QPay", extra={"error": error, "attempts": attempts})
            return "rejected"
        if self._clock.now() >= self._retry_until(session):
            self._record(session, EbarimtStatus.GAVE_UP, still_due=False, ebarimt_last_error=error)
            count("EbarimtGaveUp")
            logger.error(
                "Ebarimt receipt not registered within its retry window; giving up",
                extra={"error": error, "attempts": attempts},
            )
            return "gave_up"
        self._record(session, EbarimtStatus.ERROR, still_due=True, ebarimt_last_error=error)
        logger.warning("Ebarimt receipt failed; will retry", extra={"error": error, "attempts": attempts})
        return "retry_later"

    def _request(self, session: PaymentSession) -> dict[str, Any]:
        overrides = session.ebarimt_overrides or {}
        request: dict[str, Any] = {
            "payment_id": session.payment_ids[0] if session.payment_ids else None,
            "ebarimt_receiver_type": overrides.get("receiver_type", self._settings.ebarimt_receiver_type),
            "district_code": overrides.get("district_code", self._settings.ebarimt_district_code),
            "classification_code": overrides.get(
                "classification_code", self._settings.ebarimt_classification_code
            ),
        }
        if overrides.get("receiver"):
            request["ebarimt_receiver"] = overrides["receiver"]
        return request

    def _record(
        self, session: PaymentSession, status: EbarimtStatus, *, still_due: bool, **fields: Any
    ) -> None:
        # Another run moved it on; its write stands.
        with contextlib.suppress(StaleSession):
            self._store.record_ebarimt(session, status, still_due=still_due, **fields)

    def _stop_watching(self, session: PaymentSession) -> None:
        with contextlib.suppress(StaleSession):
            self._store.stop_watching(session, EBARIMT_QUEUE)
