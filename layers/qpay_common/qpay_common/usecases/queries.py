"""Queries: a shopper reads one of their sessions (which may ask QPay, throttled, and may finish
or expire it) or lists them."""

import contextlib
from datetime import datetime

from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.errors import QPayUnavailable, StaleSession
from qpay_common.domain.session import PaymentSession, PaymentStatus
from qpay_common.domain.store import SessionStore
from qpay_common.settings import Settings
from qpay_common.usecases.cancellation import Cancellation
from qpay_common.usecases.ports import Cache
from qpay_common.usecases.settlement import Settlement


class Queries:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        cache: Cache,
        settlement: Settlement,
        cancellation: Cancellation,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._store = store
        self._cache = cache
        self._settlement = settlement
        self._cancellation = cancellation
        self._clock = clock

    def get_payment(self, user_id: str, session_id: str) -> PaymentSession:
        """The caller's session; while PENDING, asks QPay at most once per poll interval."""
        session = self._store.find_owned(user_id, session_id)
        if session.status == PaymentStatus.PAID:
            return self._settlement.fulfil(session)  # verified already: no QPay call needed
        if session.status != PaymentStatus.PENDING:
            return session  # CANCELLED, EXPIRED, PROCESSED, FAILED: QPay is not asked
        throttle_until = self._clock.epoch() + self._settings.status_poll_interval_seconds
        if not self._cache.put_if_absent(f"poll#{session_id}", {}, expires_at=throttle_until):
            return session
        try:
            session = self._settlement.confirm_with_qpay(session, source="status")
        except QPayUnavailable:
            # A read must not fail because QPay is slow; the webhook or reconcile will catch up.
            return session
        if session.status == PaymentStatus.PENDING and self._past_expiry(session):
            # The expire job runs every few minutes; a read past expires_at need not wait for it.
            with contextlib.suppress(StaleSession):
                return self._cancellation.expire(session)
        return session

    def list_payments(
        self, user_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[PaymentSession], str | None]:
        return self._store.list_for_user(user_id, limit=limit, cursor=cursor)

    def _past_expiry(self, session: PaymentSession) -> bool:
        if session.expires_at is None:
            return False
        return datetime.fromisoformat(session.expires_at) <= self._clock.now()
