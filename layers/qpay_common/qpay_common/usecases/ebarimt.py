"""Ebarimt 3.0 e-receipts, after PROCESSED: never blocks or rolls back an order, never logs the
receiver (personal data), idempotent (a receipt id present means done). A refunded session's
receipt is cancelled by the same job, with the same claims, backoff and attempt limit."""

import contextlib
from typing import Any

from qpay_common.adapters.qpay.codes import (
    EBARIMT_CANCEL_PERMANENT,
    EBARIMT_PERMANENT,
    EBARIMT_RECEIPT_ABSENT,
)
from qpay_common.adapters.qpay.errors import QPayError, QPayRejected
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.errors import StaleSession
from qpay_common.domain.session import EbarimtStatus, PaymentSession, PaymentStatus
from qpay_common.domain.store import SessionStore
from qpay_common.domain.work_queues import EBARIMT_BACKOFF_SECONDS, EBARIMT_QUEUE, backoff
from qpay_common.observability import count, logger
from qpay_common.settings import Settings
from qpay_common.usecases.ports import QPay


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

    def _claim(self, session: PaymentSession) -> tuple[PaymentSession, int] | None:
        """The next attempt, claimed with one conditional write that also schedules the one after
        it by the backoff; None if an overlapping run claimed it first (it leaves it alone)."""
        attempts = (session.ebarimt_attempts or 0) + 1
        now = self._clock.now()
        try:
            claimed = self._store.claim_ebarimt_attempt(
                session,
                now,
                next_attempt_at=now.timestamp() + backoff(EBARIMT_BACKOFF_SECONDS, attempts - 1),
                attempts=attempts,
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
        gave_up = permanent or attempts >= self._settings.ebarimt_max_attempts
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
        # The error text names the QPay path and code only: never the request, which holds the receiver.
        error = exc.code or type(exc).__name__
        permanent = isinstance(exc, QPayRejected) and exc.code in EBARIMT_PERMANENT
        gave_up = permanent or attempts >= self._settings.ebarimt_max_attempts
        self._record(session, EbarimtStatus.ERROR, still_due=not gave_up, ebarimt_last_error=error)
        count("EbarimtFailed")
        if gave_up:
            count("EbarimtGaveUp")
            logger.error(
                "Ebarimt receipt not registered; giving up", extra={"error": error, "attempts": attempts}
            )
            return "gave_up"
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
