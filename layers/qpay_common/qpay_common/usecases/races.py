"""Losing a conditional-write race, the one way every use case handles it: re-read the session and
take the step again from what the winner left, a bounded number of times."""

from collections.abc import Callable

from qpay_common.domain.errors import StaleSession
from qpay_common.domain.session import PaymentSession
from qpay_common.domain.store import SessionStore
from qpay_common.observability import logger

# Conditional-write races re-read and retry this often before leaving the rest to the winner.
MAX_RACE_RETRIES = 5

Step = Callable[[PaymentSession], PaymentSession]


def retry_races(store: SessionStore, session: PaymentSession, step: Step) -> PaymentSession:
    """`step(session)`; whenever it loses a race (StaleSession), `step` again on a fresh read
    (SessionNotFound if the session is gone). After MAX_RACE_RETRIES lost races, the last read:
    whoever keeps winning finishes the work."""
    for _ in range(MAX_RACE_RETRIES):
        try:
            return step(session)
        except StaleSession:
            session = store.find(session.session_id)
    logger.warning("Gave up racing for the session; the winner finishes it")
    return session
