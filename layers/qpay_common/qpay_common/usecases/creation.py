"""Creation: a payment session and its QPay invoice, with Idempotency-Key replays.

A CREATING session is written first and becomes PENDING only with its invoice, so no session a
client can see lacks an invoice; if QPay fails, the CREATING one is deleted (or purged by TTL).

An Idempotency-Key is claimed (cache item `idem#<user>#<key>`) before anything is created, with
the same semantics as Powertools' idempotency utility, written here on the cache port because the
utility would add its own DynamoDB client and ~0.1 s of imports to the create function's cold
start: the claim is "in progress" only until the claiming invocation's deadline. A retry with the
same key and body gets the session once it exists; 409 with Retry-After while the first request
could still be running; and after that (the first invocation was killed or timed out) it takes the
claim over, once (a conditional delete on the claim's tag), and creates the session under the same
session id, so QPay (which refuses a second invoice with the same `sender_invoice_no`) never holds
two invoices for one key.
"""

import contextlib
import hashlib
import json
import math
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from qpay_common import deadlines
from qpay_common.adapters.qpay.codes import QPayErrorCode
from qpay_common.adapters.qpay.errors import QPayError, QPayRejected
from qpay_common.adapters.qpay.models import InvoiceRequest
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.callback_token import callback_url
from qpay_common.domain.errors import (
    ConfigurationError,
    IdempotencyConflict,
    QPayUnavailable,
    StaleSession,
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
from qpay_common.usecases.races import MAX_RACE_RETRIES, wait_for_in_flight

# A session that never got its invoice is purged by TTL even if deleting it failed.
UNFINISHED_PURGE_DAYS = 1
# How long a claim stays "in progress" when no invocation deadline is known (tests, tools): the
# create function's Timeout (template.yaml: 29 s), rounded up.
CLAIM_SECONDS_WITHOUT_DEADLINE = 30
# Added to the invocation's deadline: its last write may land just after it.
CLAIM_SLACK_SECONDS = 2


def _tried_again(write: Callable[[], PaymentSession]) -> PaymentSession:
    """`write()`, again after a short wait when it met an in-flight DynamoDB transaction (a
    bounded number of times). Nothing but creation writes a CREATING session, so that is not a
    lost race here; throttles are retried by the store itself (tables.storage_call)."""
    for attempt in range(1, MAX_RACE_RETRIES + 1):
        try:
            return write()
        except StaleSession as lost:
            if not lost.in_flight or attempt == MAX_RACE_RETRIES:
                raise
            wait_for_in_flight(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class _InvoiceOfADeadCreate(Exception):
    """QPay already holds an invoice for this session id: the create that died reached QPay."""


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
        if self._claim(key, fingerprint, session_id):
            return self._create_claimed(key, user_id, request, callback_base_url, session_id), True
        found = self._cache.get(key)
        if found is None:
            raise IdempotencyConflict(
                "a request with this Idempotency-Key just finished; retry it", retry_after_seconds=1
            )
        earlier, earlier_tag = found
        if earlier.get("fingerprint") != fingerprint:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
        earlier_id = str(earlier.get("session_id"))
        existing = self._store.get(earlier_id)
        if existing is not None and existing.status != PaymentStatus.CREATING:
            return existing, False
        # Claims written before they carried a deadline stay in progress until their TTL.
        until = float(earlier.get("in_progress_until") or math.inf)
        now = self._clock.epoch()
        if now < until:
            raise IdempotencyConflict(
                "a request with this Idempotency-Key is still in progress; retry it",
                retry_after_seconds=max(
                    1, math.ceil(until - now) if until != math.inf else CLAIM_SECONDS_WITHOUT_DEADLINE
                ),
            )
        # The first request's invocation is over and left no session: it was killed or timed out.
        # One retry takes its claim over (the tag condition), under the same session id.
        if not self._cache.delete(key, tag=earlier_tag) or not self._claim(key, fingerprint, earlier_id):
            raise IdempotencyConflict(
                "a request with this Idempotency-Key is still in progress; retry it", retry_after_seconds=1
            )
        count("IdempotencyTakeover")
        logger.warning(
            "Took over the Idempotency-Key of an invocation that died", extra={"session_id": earlier_id}
        )
        if existing is not None:
            self._discard_unfinished(existing)
        try:
            return self._create_claimed(key, user_id, request, callback_base_url, earlier_id), True
        except _InvoiceOfADeadCreate:
            # The dead create's invoice reached QPay, but its answer (the QR) never reached anyone,
            # and QPay offers no lookup by sender_invoice_no to cancel it. The client still gets
            # one session, under a new id; the orphan is counted for an operator.
            count("IdempotencyOrphanInvoice")
            logger.error("QPay holds an invoice of a create that died", extra={"session_id": earlier_id})
            replacement = new_session_id()
            claim, expires_at = self._claim_item(fingerprint, replacement)
            self._cache.put(key, claim, expires_at=expires_at, tag=secrets.token_hex(8))
            return self._create_claimed(key, user_id, request, callback_base_url, replacement), True

    def _claim(self, key: str, fingerprint: str, session_id: str) -> bool:
        """Claim `key` for this invocation: in progress until its deadline, remembered for the TTL."""
        claim, expires_at = self._claim_item(fingerprint, session_id)
        return self._cache.put_if_absent(key, claim, expires_at=expires_at, tag=secrets.token_hex(8))

    def _claim_item(self, fingerprint: str, session_id: str) -> tuple[dict[str, Any], float]:
        now = self._clock.epoch()
        left = deadlines.seconds_left()
        running_for = (
            CLAIM_SECONDS_WITHOUT_DEADLINE if left is None else left + deadlines.ANSWER_MARGIN_SECONDS
        )
        claim: dict[str, Any] = {
            "fingerprint": fingerprint,
            "session_id": session_id,
            "in_progress_until": math.ceil(now + running_for + CLAIM_SLACK_SECONDS),
        }
        return claim, now + self._settings.idempotency_ttl_hours * 3600

    def _create_claimed(
        self, key: str, user_id: str, request: CreatePaymentRequest, callback_base_url: str, session_id: str
    ) -> PaymentSession:
        try:
            return self._create(user_id, request, callback_base_url, session_id)
        except _InvoiceOfADeadCreate:
            raise  # the claim stays ours: the caller creates under another id
        except Exception:
            # Nothing usable was created, so the same key may be retried (the key's TTL
            # frees it anyway if this delete fails too).
            with contextlib.suppress(Exception):
                self._cache.delete(key)
            raise

    def _create(
        self, user_id: str, request: CreatePaymentRequest, callback_base_url: str, session_id: str
    ) -> PaymentSession:
        now = self._clock.now()
        invoice_request = self._invoice_request(session_id, request, callback_base_url)
        unfinished = PaymentSession(
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
        session = _tried_again(lambda: self._store.create_unfinished(unfinished))
        logger.append_keys(session_id=session_id)
        try:
            invoice = self._qpay.create_invoice(invoice_request)
        except QPayRejected as exc:
            self._discard_unfinished(session)
            if exc.code == QPayErrorCode.SENDER_INVOICE_NO_DUPLICATED:
                raise _InvoiceOfADeadCreate(session_id) from None
            raise QPayUnavailable(
                "QPay could not create the invoice; nothing was charged, try again"
            ) from None
        except QPayError:
            self._discard_unfinished(session)
            raise QPayUnavailable(
                "QPay could not create the invoice; nothing was charged, try again"
            ) from None
        try:
            session = self._activate(
                session,
                {
                    "invoice_id": invoice.invoice_id,
                    "qr_text": invoice.qr_text,
                    "qr_image": invoice.qr_image,
                    "short_url": invoice.short_url,
                    "deeplinks": [link.model_dump() for link in invoice.urls],
                },
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

    def _activate(self, session: PaymentSession, invoice: dict[str, Any]) -> PaymentSession:
        """CREATING -> PENDING (the invoice exists now: giving up would cancel it)."""
        return _tried_again(lambda: self._store.activate(session, invoice, self._clock.now()))

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
        except StaleSession:
            pass  # gone already, or no longer CREATING: nothing of ours to discard
        except Exception:  # noqa: BLE001 - purge_at removes it anyway; the 502 matters more
            logger.exception("Could not delete the unfinished session; TTL will purge it")
