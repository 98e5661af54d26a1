"""The payments service: every business rule of creating, confirming and fulfilling a payment.

Webhook, status poll and (later) reconcile all drive the same methods, so a race between them
has one winner: every transition is a conditional write, and the loser re-reads and carries on
from whatever state the winner left.
"""

import base64
import binascii
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from qpay_common.api_models import CURSOR_NOT_ISSUED, CreatePaymentRequest
from qpay_common.cache import CacheStore
from qpay_common.credentials import QPayCredentials
from qpay_common.domain import (
    AMOUNT_MISMATCH,
    LATE_STATES,
    PAYABLE_STATES,
    SESSION_ID_PATTERN,
    EbarimtStatus,
    LineItem,
    Order,
    PaymentSession,
    PaymentStatus,
    iso,
    new_session_id,
    order_id_for,
    purge_epoch,
    utc_now,
)
from qpay_common.errors import (
    AlreadyPaid,
    ConfigurationError,
    IdempotencyConflict,
    InvalidRequest,
    NotCancellable,
    QPayError,
    QPayRejected,
    QPayUnavailable,
    SessionExpired,
    SessionNotFound,
    StaleSession,
    Unauthorized,
)
from qpay_common.events import EventPublisher, EventPublishError
from qpay_common.observability import count, logger
from qpay_common.qpay_client import QPayClient
from qpay_common.qpay_models import InvoiceRequest, PaymentCheck
from qpay_common.repository import SessionsRepository
from qpay_common.settings import Settings
from qpay_common.webhook_security import callback_url, is_valid_callback_token
from qpay_common.work_queues import (
    RECONCILE_BACKOFF_SECONDS,
    ebarimt_due,
    not_pending,
    not_reconciled,
    pending,
    reconcile_due,
)

# Conditional-write races re-read and retry this often before leaving the rest to the winner.
MAX_RACE_RETRIES = 5
# Whoever wrote the order publishes PaymentCompleted; others wait this long before taking over.
EMIT_LEASE_SECONDS = 30
# A session that never got its invoice is purged by TTL even if deleting it failed.
UNFINISHED_PURGE_DAYS = 1
# QPay's answers to cancelling an invoice that mean "nothing left to cancel".
ALREADY_GONE = frozenset({"INVOICE_NOTFOUND", "INVOICE_ALREADY_CANCELED", "INVOICE_ALREADY_CANCELLED"})

# domain.iso(): the created_at of every session, and so of every cursor this API issues.
_ISO_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")

FaultHook = Callable[[str, PaymentSession], None]


class PaymentsService:
    def __init__(
        self,
        settings: Settings,
        credentials: QPayCredentials,
        repository: SessionsRepository,
        cache: CacheStore,
        qpay: QPayClient,
        publisher: EventPublisher,
        *,
        clock: Callable[[], datetime] = utc_now,
        fault_hook: FaultHook | None = None,
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._repository = repository
        self._cache = cache
        self._qpay = qpay
        self._publisher = publisher
        self._clock = clock
        # A seam for crash-injection tests: called with a stage name at the points a Lambda can die.
        self.fault_hook = fault_hook
        self.emit_lease_seconds = EMIT_LEASE_SECONDS

    def now(self) -> datetime:
        return self._clock()

    def create_payment(
        self,
        user_id: str,
        request: CreatePaymentRequest,
        callback_base_url: str,
        idempotency_key: str | None = None,
    ) -> tuple[PaymentSession, bool]:
        """The session, and whether this call created it (False: an Idempotency-Key replay)."""
        if idempotency_key is None:
            return self._create_payment(user_id, request, callback_base_url, new_session_id()), True
        key = f"idem#{user_id}#{idempotency_key}"
        fingerprint = hashlib.sha256(
            json.dumps(request.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        session_id = new_session_id()
        expires_at = time.time() + self._settings.idempotency_ttl_hours * 3600
        claimed = {"fingerprint": fingerprint, "session_id": session_id}
        if self._cache.put_if_absent(key, claimed, expires_at=expires_at):
            try:
                return self._create_payment(user_id, request, callback_base_url, session_id), True
            except Exception:
                # Nothing usable was created, so the same key may be retried (the key's TTL
                # frees it anyway if this delete fails too).
                with contextlib.suppress(Exception):
                    self._cache.delete(key)
                raise
        found = self._cache.get(key)
        if found is None:
            raise IdempotencyConflict("a request with this Idempotency-Key just finished; retry it")
        earlier = found[0]
        if earlier.get("fingerprint") != fingerprint:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
        session = self._repository.get(str(earlier.get("session_id")))
        if session is None or session.status == PaymentStatus.CREATING:
            raise IdempotencyConflict("a request with this Idempotency-Key is still in progress")
        return session, False

    def _create_payment(
        self, user_id: str, request: CreatePaymentRequest, callback_base_url: str, session_id: str
    ) -> PaymentSession:
        now = self._clock()
        invoice_request = self._invoice_request(session_id, request, callback_base_url)
        session = self._repository.create(
            PaymentSession(
                session_id=session_id,
                user_id=user_id,
                status=PaymentStatus.CREATING,
                amount=request.amount,
                description=request.description,
                items=[LineItem(**item.model_dump()) for item in request.items or []],
                metadata=request.metadata,
                ebarimt_overrides=request.ebarimt.model_dump(exclude_none=True) if request.ebarimt else None,
                created_at=iso(now),
                updated_at=iso(now),
                expires_at=iso(now + timedelta(minutes=self._settings.session_expiry_minutes)),
                purge_at=purge_epoch(now, UNFINISHED_PURGE_DAYS),
            )
        )
        logger.append_keys(session_id=session_id)
        try:
            invoice = self._qpay.create_invoice(invoice_request)
        except QPayError as exc:
            count("QPayErrors", operation="create_invoice")
            logger.warning("QPay invoice creation failed", extra={"error": str(exc), "qpay_code": exc.code})
            self._discard_unfinished(session)
            raise QPayUnavailable(
                "QPay could not create the invoice; nothing was charged, try again"
            ) from None
        session = self._repository.transition(
            session,
            expected=PaymentStatus.CREATING,
            changes={
                "status": PaymentStatus.PENDING.value,
                "invoice_id": invoice.invoice_id,
                "qr_text": invoice.qr_text,
                "qr_image": invoice.qr_image,
                "short_url": invoice.short_url,
                "deeplinks": [link.model_dump() for link in invoice.urls],
                "purge_at": None,
                "updated_at": iso(self._clock()),
                **pending(session_id),
                # Due at once: the next reconcile run asks QPay, then backs off.
                **reconcile_due(session_id, time.time()),
            },
        )
        count("PaymentCreated")
        logger.info(
            "Payment session created", extra={"invoice_id": invoice.invoice_id, "amount": session.amount}
        )
        return session

    def get_payment(self, user_id: str, session_id: str) -> PaymentSession:
        """The caller's session; while PENDING, asks QPay at most once per poll interval."""
        session = self._owned_session(user_id, session_id)
        if session.status == PaymentStatus.PAID:
            return self.fulfil(session)  # verified already: no QPay call needed
        if session.status != PaymentStatus.PENDING:
            return session  # CANCELLED, EXPIRED, PROCESSED, FAILED: QPay is not asked
        throttle_until = time.time() + self._settings.status_poll_interval_seconds
        if not self._cache.put_if_absent(f"poll#{session_id}", {}, expires_at=throttle_until):
            return session
        try:
            session = self.confirm_with_qpay(session, source="status")
        except QPayUnavailable:
            # A read must not fail because QPay is slow; the webhook or reconcile will catch up.
            return session
        if session.status == PaymentStatus.PENDING and self._past_expiry(session):
            # The expire job runs every few minutes; a read past expires_at need not wait for it.
            with contextlib.suppress(StaleSession):
                return self.expire(session)
        return session

    def _past_expiry(self, session: PaymentSession) -> bool:
        if session.expires_at is None:
            return False
        return datetime.fromisoformat(session.expires_at) <= self._clock()

    def list_payments(
        self, user_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[PaymentSession], str | None]:
        start_key = self._decode_cursor(user_id, cursor) if cursor else None
        sessions, last_key = self._repository.list_for_user(user_id, limit=limit, start_key=start_key)
        next_cursor = None
        if last_key is not None:
            next_cursor = base64.urlsafe_b64encode(json.dumps(last_key).encode()).decode().rstrip("=")
        return sessions, next_cursor

    def cancel_payment(self, user_id: str, session_id: str) -> PaymentSession:
        session = self._owned_session(user_id, session_id)
        for _ in range(MAX_RACE_RETRIES):
            if session.status == PaymentStatus.CANCELLED:
                return session  # cancel is idempotent
            if session.status in (PaymentStatus.PAID, PaymentStatus.PROCESSED):
                raise AlreadyPaid("the payment is already paid")
            if session.status == PaymentStatus.EXPIRED:
                raise SessionExpired("the payment session has expired")
            if session.status != PaymentStatus.PENDING:
                raise NotCancellable(f"a {session.status.value} payment cannot be cancelled")
            now = self._clock()
            try:
                session = self._repository.transition(
                    session,
                    expected=PaymentStatus.PENDING,
                    changes={
                        "status": PaymentStatus.CANCELLED.value,
                        "cancelled_at": iso(now),
                        "updated_at": iso(now),
                        "purge_at": purge_epoch(now, self._settings.purge_after_days),
                        **self._grace_watch(session),
                    },
                )
                break
            except StaleSession:
                session = self._reload(session)
        session = self.cancel_upstream(session, source="cancel")
        if session.status in (PaymentStatus.PAID, PaymentStatus.PROCESSED):
            raise AlreadyPaid("the payment arrived before the cancel and has been fulfilled")
        return session

    def cancel_upstream(self, session: PaymentSession, *, source: str) -> PaymentSession:
        """Best effort: a cancelled invoice makes late payments rare. INVOICE_PAID means money
        arrived: settle it (policy A) instead of voiding anything."""
        if session.invoice_id is None:
            return session
        try:
            self._qpay.cancel_invoice(session.invoice_id)
        except QPayRejected as exc:
            if exc.code == "INVOICE_PAID":
                return self.confirm_with_qpay(session, source=source)
            if exc.code not in ALREADY_GONE:
                logger.warning("QPay refused to cancel the invoice", extra={"qpay_code": exc.code})
        except QPayError as exc:
            count("QPayErrors", operation="cancel_invoice")
            logger.warning("QPay invoice cancel failed; reconcile keeps watching", extra={"error": str(exc)})
        return session

    def _owned_session(self, user_id: str, session_id: str) -> PaymentSession:
        session = self._repository.get(session_id)
        # Someone else's session answers exactly like a missing one, so ids cannot be probed.
        if session is None or session.status == PaymentStatus.CREATING or session.user_id != user_id:
            raise SessionNotFound()
        return session

    @staticmethod
    def _decode_cursor(user_id: str, cursor: str) -> dict[str, Any]:
        """The by_user key this API returned as `next_cursor`. Every part is checked, because
        DynamoDB answers a malformed ExclusiveStartKey (an empty or oversized key) with an error."""
        not_issued = InvalidRequest(
            "cursor is not one this API returned",
            [
                {
                    "loc": ["query", "cursor"],
                    "msg": "cursor is not one this API returned",
                    "type": CURSOR_NOT_ISSUED,
                }
            ],
        )
        try:
            key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            owner, session_id, created_at = (
                key[name]["S"] for name in ("user_id", "session_id", "created_at")
            )
        except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
            raise not_issued from None
        if (
            owner != user_id
            or not isinstance(session_id, str)
            or not re.fullmatch(SESSION_ID_PATTERN, session_id)
            or not isinstance(created_at, str)
            or not _ISO_TIMESTAMP.fullmatch(created_at)
        ):
            raise not_issued
        return {name: key[name] for name in ("user_id", "session_id", "created_at")}

    def handle_callback(self, session_id: str | None, token: str | None) -> PaymentSession:
        """QPay's callback is a hint to look; QPay's payment check is the proof."""
        secret = self._credentials.webhook_secret.get_secret_value()
        if not is_valid_callback_token(secret, session_id, token):
            raise Unauthorized("invalid callback token")
        assert session_id is not None  # checked by the token
        logger.append_keys(session_id=session_id)
        session = self._repository.get(session_id)
        if session is None or session.status == PaymentStatus.CREATING:
            raise SessionNotFound()
        if session.status == PaymentStatus.PROCESSED:
            count("WebhookDuplicate")
            return session
        return self.confirm_with_qpay(session, source="webhook")

    def confirm_with_qpay(self, session: PaymentSession, *, source: str) -> PaymentSession:
        if session.status == PaymentStatus.PAID:
            # Already verified; only the order and event may be missing.
            return self.fulfil(session)
        if session.status not in PAYABLE_STATES or session.invoice_id is None:
            return session
        try:
            check = self._qpay.check_payment(session.invoice_id)
        except QPayError as exc:
            count("QPayErrors", operation="payment_check")
            logger.warning("QPay payment check failed", extra={"error": str(exc), "qpay_code": exc.code})
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
        for _ in range(MAX_RACE_RETRIES):
            try:
                if session.status in PAYABLE_STATES:
                    if total_paid < session.amount:
                        return self._record_underpayment(session, total_paid, payment_ids)
                    session = self._mark_paid(session, total_paid, payment_ids, source)
                if session.status == PaymentStatus.PAID:
                    return self.fulfil(session)
                return session
            except StaleSession:
                session = self._reload(session)
        logger.warning("Gave up racing for the session; the winner finishes it")
        return session

    def fulfil(self, session: PaymentSession) -> PaymentSession:
        """PAID -> order (once) -> PaymentCompleted (at least once) -> PROCESSED."""
        for _ in range(MAX_RACE_RETRIES):
            if session.status != PaymentStatus.PAID:
                return session
            now = time.time()
            try:
                if session.order_id is None:
                    self._fault("before_order", session)
                    order = self._order_for(session)
                    session = self._repository.record_fulfilment(
                        session,
                        order,
                        lease_until=now + self.emit_lease_seconds,
                        updated_at=iso(self._clock()),
                    )
                else:
                    if session.emit_lease_until is not None and session.emit_lease_until > now:
                        return session  # another worker is publishing right now
                    session = self._repository.transition(
                        session,
                        expected=PaymentStatus.PAID,
                        changes={
                            "emit_lease_until": now + self.emit_lease_seconds,
                            "updated_at": iso(self._clock()),
                        },
                    )
                    order = self._repository.get_order(session.order_id or "") or self._order_for(session)
                self._fault("before_event", session)
                self._publisher.payment_completed(session, order)
                self._fault("before_processed", session)
                processed_at = self._clock()
                session = self._repository.transition(
                    session,
                    expected=PaymentStatus.PAID,
                    changes={
                        "status": PaymentStatus.PROCESSED.value,
                        "processed_at": iso(processed_at),
                        "updated_at": iso(processed_at),
                        "emit_lease_until": None,
                        "purge_at": purge_epoch(processed_at, self._settings.purge_after_days),
                        **not_reconciled(),
                        **self._ebarimt_start(session),
                    },
                )
                logger.info("Payment fulfilled", extra={"order_id": session.order_id})
                return session
            except StaleSession:
                session = self._reload(session)
            except EventPublishError as exc:
                count("EventPublishFailed")
                logger.error("PaymentCompleted not published; session stays PAID", extra={"error": str(exc)})
                return self._release_emit_lease(session)
        return session

    def _release_emit_lease(self, session: PaymentSession) -> PaymentSession:
        """Let the next attempt (a duplicate callback, a poll, reconcile) publish at once."""
        try:
            return self._repository.transition(
                session, expected=PaymentStatus.PAID, changes={"emit_lease_until": None}
            )
        except StaleSession:
            return session

    def _mark_paid(
        self, session: PaymentSession, total_paid: int, payment_ids: list[str], source: str
    ) -> PaymentSession:
        paid = self._repository.transition(
            session,
            expected=session.status,
            changes={
                "status": PaymentStatus.PAID.value,
                "paid_amount": total_paid,
                "payment_ids": payment_ids,
                "paid_at": iso(self._clock()),
                "updated_at": iso(self._clock()),
                "failure_reason": None,
                "purge_at": None,
                **not_pending(),
                # Reconcile finishes the order if this worker dies before PROCESSED.
                **reconcile_due(session.session_id, time.time() + RECONCILE_BACKOFF_SECONDS[0]),
                "grace_until": None,
            },
        )
        count("PaymentConfirmed", source=source)
        if session.status in LATE_STATES:
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
        now = self._clock()
        failed = self._repository.transition(
            session,
            expected=session.status,
            changes={
                "status": PaymentStatus.FAILED.value,
                "failure_reason": AMOUNT_MISMATCH,
                "paid_amount": total_paid,
                "payment_ids": payment_ids,
                "updated_at": iso(now),
                "purge_at": purge_epoch(now, self._settings.purge_after_days),
                **self._grace_watch(session),
            },
        )
        count("AmountMismatch")
        logger.error("Paid less than the amount", extra={"amount": session.amount, "paid_amount": total_paid})
        return failed

    def expire(self, session: PaymentSession) -> PaymentSession:
        """PENDING -> EXPIRED, then cancel the invoice upstream (INVOICE_PAID: settle it)."""
        now = self._clock()
        expired = self._repository.transition(
            session,
            expected=PaymentStatus.PENDING,
            changes={
                "status": PaymentStatus.EXPIRED.value,
                "updated_at": iso(now),
                "purge_at": purge_epoch(now, self._settings.purge_after_days),
                **self._grace_watch(session),
            },
        )
        count("PaymentExpired")
        return self.cancel_upstream(expired, source="expire")

    def _grace_watch(self, session: PaymentSession) -> dict[str, Any]:
        """Leaving PENDING unpaid: reconcile keeps looking for a late payment for the grace window."""
        now = time.time()
        return {
            **not_pending(),
            **reconcile_due(session.session_id, now),
            "grace_until": int(now + self._settings.reconcile_grace_hours * 3600),
        }

    def _ebarimt_start(self, session: PaymentSession) -> dict[str, Any]:
        if not self._settings.ebarimt_enabled:
            return {"ebarimt_status": EbarimtStatus.SKIPPED.value}
        return {"ebarimt_status": EbarimtStatus.PENDING.value, **ebarimt_due(session.session_id, time.time())}

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
            created_at=iso(self._clock()),
        )

    def _reload(self, session: PaymentSession) -> PaymentSession:
        fresh = self._repository.get(session.session_id)
        if fresh is None:
            raise SessionNotFound()
        return fresh

    def _fault(self, stage: str, session: PaymentSession) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage, session)

    def _invoice_request(
        self, session_id: str, request: CreatePaymentRequest, callback_base_url: str
    ) -> InvoiceRequest:
        secret = self._credentials.webhook_secret.get_secret_value()
        try:
            return InvoiceRequest(
                invoice_code=self._settings.qpay_invoice_code,
                sender_invoice_no=session_id,
                invoice_description=request.description or f"Payment {session_id}",
                amount=request.amount,
                callback_url=callback_url(callback_base_url, secret, session_id),
            )
        except ValidationError:
            # Only our own configuration (e.g. a base URL too long for QPay) can get here.
            raise ConfigurationError("the callback URL or invoice fields exceed QPay's limits") from None

    def _discard_unfinished(self, session: PaymentSession) -> None:
        try:
            self._repository.delete_unfinished(session)
        except Exception:  # noqa: BLE001 - purge_at removes it anyway; the 502 matters more
            logger.exception("Could not delete the unfinished session; TTL will purge it")
