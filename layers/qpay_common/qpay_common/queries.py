"""Queries: a shopper reads one of their sessions (which may ask QPay, throttled, and may finish
or expire it) or lists them."""

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from qpay_common.cache import CacheStore
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain import PaymentSession, PaymentStatus
from qpay_common.errors import QPayUnavailable, SessionNotFound, StaleSession
from qpay_common.repository import SessionsRepository
from qpay_common.settings import Settings
from qpay_common.settlement import Settlement

if TYPE_CHECKING:
    from qpay_common.cancellation import Cancellation


def find_owned(repository: SessionsRepository, user_id: str, session_id: str) -> PaymentSession:
    session = repository.get(session_id)
    # Someone else's session answers exactly like a missing one, so ids cannot be probed.
    if session is None or session.status == PaymentStatus.CREATING or session.user_id != user_id:
        raise SessionNotFound()
    return session


class Queries:
    def __init__(
        self,
        settings: Settings,
        repository: SessionsRepository,
        cache: CacheStore,
        settlement: Settlement,
        cancellation: "Cancellation",
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._cache = cache
        self._settlement = settlement
        self._cancellation = cancellation
        self._clock = clock

    def get_payment(self, user_id: str, session_id: str) -> PaymentSession:
        """The caller's session; while PENDING, asks QPay at most once per poll interval."""
        session = find_owned(self._repository, user_id, session_id)
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
        return self._repository.list_for_user(user_id, limit=limit, cursor=cursor)

    def _past_expiry(self, session: PaymentSession) -> bool:
        if session.expires_at is None:
            return False
        return datetime.fromisoformat(session.expires_at) <= self._clock.now()
