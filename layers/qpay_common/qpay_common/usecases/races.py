"""Losing a conditional-write race, the one way every use case handles it: re-read the session and
take the step again from what the winner left, a bounded number of times."""

import random
import time
from collections.abc import Callable

from qpay_common.domain.errors import StaleSession
from qpay_common.domain.session import PaymentSession
from qpay_common.domain.store import SessionStore
from qpay_common.observability import logger

# Conditional-write races re-read and retry this often before leaving the rest to the winner.
MAX_RACE_RETRIES = 5
# A write that met an in-flight transaction waits this long (times the attempt, jittered) before
# re-reading: the transaction commits within milliseconds, and an immediate re-read may not see it.
IN_FLIGHT_WAIT_SECONDS = 0.02
# From the OS, not random's module state, which SnapStart would share between environments.
_JITTER = random.SystemRandom()

Step = Callable[[PaymentSession], PaymentSession]


def wait_for_in_flight(attempt: int) -> None:
    """The pause before attempt `attempt + 1` of a write that met an in-flight transaction."""
    time.sleep(IN_FLIGHT_WAIT_SECONDS * attempt * _JITTER.uniform(0.5, 1.5))


def retry_races(store: SessionStore, session: PaymentSession, step: Step) -> PaymentSession:
    """`step(session)`; whenever it loses a race (StaleSession), `step` again on a fresh read
    (SessionNotFound if the session is gone). After MAX_RACE_RETRIES lost races, the last read:
    whoever keeps winning finishes the work."""
    for attempt in range(1, MAX_RACE_RETRIES + 1):
        try:
            return step(session)
        except StaleSession as lost:
            if lost.in_flight:
                wait_for_in_flight(attempt)
            session = store.find(session.session_id)
    logger.warning("Gave up racing for the session; the winner finishes it")
    return session
