"""The payment session's state machine (ARCHITECTURE.md section 2) as data.

One table lists every allowed transition (from, event, to). The use cases ask it before they
write; the session store derives from the target status which scheduled jobs watch a session, so a
new status is a row here plus the code that acts on it, not a set threaded through modules.
"""

from dataclasses import dataclass
from enum import StrEnum

from qpay_common.domain.session import PaymentStatus


class Event(StrEnum):
    INVOICE_CREATED = "invoice_created"
    PAYMENT_VERIFIED = "payment_verified"  # QPay's payment check covers the amount
    UNDERPAID = "underpaid"  # QPay's paid rows sum below the amount
    FULFILLED = "fulfilled"  # order written and PaymentCompleted published
    CANCEL = "cancel"
    EXPIRE = "expire"
    REFUND = "refund"  # QPay returned the card payment(s) to the customer


class Job(StrEnum):
    """The scheduled work a session in a status is due for."""

    RECONCILE = "reconcile"  # ask QPay (and finish PAID -> PROCESSED)
    GRACE = "grace"  # keep asking QPay for a late payment, for the grace window
    EXPIRE = "expire"
    EBARIMT = "ebarimt"
    # Cancel the receipt of a refunded payment (the same ebarimt job and queue).
    EBARIMT_CANCEL = "ebarimt_cancel"


@dataclass(frozen=True)
class Transition:
    source: PaymentStatus
    event: Event
    target: PaymentStatus
    # A payment the merchant had given up on (cancelled, expired): honoured by policy A.
    late_payment: bool = False


S, E = PaymentStatus, Event
TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.CREATING, E.INVOICE_CREATED, S.PENDING),
    Transition(S.PENDING, E.PAYMENT_VERIFIED, S.PAID),
    Transition(S.CANCELLED, E.PAYMENT_VERIFIED, S.PAID, late_payment=True),
    Transition(S.EXPIRED, E.PAYMENT_VERIFIED, S.PAID, late_payment=True),
    # A top-up that completes the amount of an under-paid session.
    Transition(S.FAILED, E.PAYMENT_VERIFIED, S.PAID),
    Transition(S.PENDING, E.UNDERPAID, S.FAILED),
    Transition(S.CANCELLED, E.UNDERPAID, S.FAILED),
    Transition(S.EXPIRED, E.UNDERPAID, S.FAILED),
    # Another partial payment that still falls short: the paid amount is updated.
    Transition(S.FAILED, E.UNDERPAID, S.FAILED),
    Transition(S.PAID, E.FULFILLED, S.PROCESSED),
    Transition(S.PENDING, E.CANCEL, S.CANCELLED),
    Transition(S.PENDING, E.EXPIRE, S.EXPIRED),
    Transition(S.PROCESSED, E.REFUND, S.REFUNDED),
)

# Which jobs watch a session while it is in a status. PROCESSED is watched by Ebarimt only while a
# receipt is due; CREATING by nobody (TTL purges an abandoned one).
WATCHED_BY: dict[PaymentStatus, frozenset[Job]] = {
    S.CREATING: frozenset(),
    S.PENDING: frozenset({Job.RECONCILE, Job.EXPIRE}),
    S.PAID: frozenset({Job.RECONCILE}),
    S.PROCESSED: frozenset({Job.EBARIMT}),
    S.CANCELLED: frozenset({Job.GRACE}),
    S.EXPIRED: frozenset({Job.GRACE}),
    S.FAILED: frozenset({Job.GRACE}),
    # Watched by the Ebarimt job only while a receipt may exist to cancel.
    S.REFUNDED: frozenset({Job.EBARIMT_CANCEL}),
}
# Statuses kept forever while open; the others get a purge_at (TTL) when entered.
OPEN_STATUSES = frozenset({S.PENDING, S.PAID})

_TABLE = {(row.source, row.event): row for row in TRANSITIONS}


class TransitionRefused(Exception):
    def __init__(self, source: PaymentStatus, event: Event) -> None:
        super().__init__(f"{event.value} is not allowed from {source.value}")
        self.source = source
        self.event = event


def transition_for(source: PaymentStatus, event: Event) -> Transition:
    """The allowed transition, or TransitionRefused."""
    row = _TABLE.get((source, event))
    if row is None:
        raise TransitionRefused(source, event)
    return row


def allows(source: PaymentStatus, event: Event) -> bool:
    return (source, event) in _TABLE


def sources_of(event: Event) -> frozenset[PaymentStatus]:
    return frozenset(row.source for row in TRANSITIONS if row.event == event)


def watched_by(job: Job) -> frozenset[PaymentStatus]:
    return frozenset(status for status, jobs in WATCHED_BY.items() if job in jobs)


# Derived views the use cases read.
PAYABLE = sources_of(Event.PAYMENT_VERIFIED)
RECONCILED = watched_by(Job.RECONCILE) | watched_by(Job.GRACE)
GRACE = watched_by(Job.GRACE)
