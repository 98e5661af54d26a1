"""Creation: a payment session and its QPay invoice, with Idempotency-Key replays.

A CREATING session is written first and becomes PENDING only with its invoice, so no session a
client can see lacks an invoice; if QPay fails, the CREATING one is deleted (or purged by TTL).
"""

import contextlib
import hashlib
import json
from datetime import timedelta

from pydantic import ValidationError

from qpay_common.adapters.qpay.errors import QPayError
from qpay_common.adapters.qpay.models import InvoiceRequest
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.callback_token import callback_url
from qpay_common.domain.errors import (
    ConfigurationError,
    IdempotencyConflict,
    QPayUnavailable,
    SessionNotFound,
)
from qpay_common.domain.payment_request import CreatePaymentRequest
from qpay_common.domain.session import (
    LineItem,
    PaymentSession,
    PaymentStatus,
    iso,
    new_session_id,
    purge_epoch,
)
from qpay_common.domain.store import SessionStore
from qpay_common.observability import count, logger
from qpay_common.settings import Settings
from qpay_common.usecases.ports import Cache, QPay, WebhookKeySource

# A session that never got its invoice is purged by TTL even if deleting it failed.
UNFINISHED_PURGE_DAYS = 1


class PaymentCreation:
    def __init__(
        self,
        settings: Settings,
        webhook_keys: WebhookKeySource,
        store: SessionStore,
        cache: Cache,
        qpay: QPay,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._webhook_keys = webhook_keys
        self._store = store
        self._cache = cache
        self._qpay = qpay
        self._clock = clock

    def create_payment(
        self,
        user_id: str,
        request: CreatePaymentRequest,
        callback_base_url: str,
        idempotency_key: str | None = None,
    ) -> tuple[PaymentSession, bool]:
        """The session, and whether this call created it (False: an Idempotency-Key replay)."""
        if idempotency_key is None:
            return self._create(user_id, request, callback_base_url, new_session_id()), True
        key = f"idem#{user_id}#{idempotency_key}"
        fingerprint = hashlib.sha256(
            json.dumps(request.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        session_id = new_session_id()
        expires_at = self._clock.epoch() + self._settings.idempotency_ttl_hours * 3600
        claimed = {"fingerprint": fingerprint, "session_id": session_id}
        if self._cache.put_if_absent(key, claimed, expires_at=expires_at):
            try:
                return self._create(user_id, request, callback_base_url, session_id), True
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
        try:
            return self._store.find(str(earlier.get("session_id"))), False
        except SessionNotFound:
            raise IdempotencyConflict("a request with this Idempotency-Key is still in progress") from None

    def _create(
        self, user_id: str, request: CreatePaymentRequest, callback_base_url: str, session_id: str
    ) -> PaymentSession:
        now = self._clock.now()
        invoice_request = self._invoice_request(session_id, request, callback_base_url)
        session = self._store.create_unfinished(
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
        except QPayError:
            self._discard_unfinished(session)
            raise QPayUnavailable(
                "QPay could not create the invoice; nothing was charged, try again"
            ) from None
        try:
            session = self._store.activate(
                session,
                {
                    "invoice_id": invoice.invoice_id,
                    "qr_text": invoice.qr_text,
                    "qr_image": invoice.qr_image,
                    "short_url": invoice.short_url,
                    "deeplinks": [link.model_dump() for link in invoice.urls],
                },
                self._clock.now(),
            )
        except Exception:
            # Nobody was shown this invoice's QR; cancel it so nothing payable is left without a
            # session (best effort: the QR never leaves this function anyway).
            with contextlib.suppress(QPayError):
                self._qpay.cancel_invoice(invoice.invoice_id)
            self._discard_unfinished(session)
            raise
        count("PaymentCreated")
        logger.info(
            "Payment session created", extra={"invoice_id": invoice.invoice_id, "amount": session.amount}
        )
        return session

    def _invoice_request(
        self, session_id: str, request: CreatePaymentRequest, callback_base_url: str
    ) -> InvoiceRequest:
        # Read per invoice (refreshed every few minutes): after a rotation, new URLs name the new key.
        keys = self._webhook_keys()
        try:
            return InvoiceRequest(
                invoice_code=self._settings.qpay_invoice_code,
                sender_invoice_no=session_id,
                invoice_description=request.description or f"Payment {session_id}",
                amount=request.amount,
                callback_url=callback_url(
                    callback_base_url, keys.signing_key, session_id, key_id=keys.current_key_id
                ),
            )
        except ValidationError:
            # Only our own configuration (e.g. a base URL too long for QPay) can get here.
            raise ConfigurationError("the callback URL or invoice fields exceed QPay's limits") from None

    def _discard_unfinished(self, session: PaymentSession) -> None:
        try:
            self._store.delete_unfinished(session)
        except Exception:  # noqa: BLE001 - purge_at removes it anyway; the 502 matters more
            logger.exception("Could not delete the unfinished session; TTL will purge it")
