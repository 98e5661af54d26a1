"""The session store port: the domain verbs of session storage, over a few storage primitives.

Every verb that changes a session is one conditional write on the status and version the caller
read; a lost race raises StaleSession and the caller re-reads. Status changes are checked against
the state machine, and the verbs add the TTL and the work-queue keys the new status calls for, so
no caller writes index attributes or `purge_at` by hand. adapters/dynamodb/session_store.py
implements the primitives in DynamoDB; the unit tests' in-memory store implements the same ones.
"""

import abc
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from qpay_common.domain.cursor import decode_cursor, encode_cursor
from qpay_common.domain.errors import InvalidCursor, SessionNotFound
from qpay_common.domain.listing import Position, Stream
from qpay_common.domain.session import (
    RECEIPT_MAY_EXIST,
    SESSION_ID_PATTERN,
    EbarimtStatus,
    Order,
    PaymentSession,
    PaymentStatus,
    Refund,
    iso,
    purge_epoch,
)
from qpay_common.domain.state_machine import GRACE, OPEN_STATUSES, WATCHED_BY, Event, Job, transition_for
from qpay_common.domain.work_queues import (
    EBARIMT_QUEUE,
    EXPIRE_QUEUE,
    RECONCILE_BACKOFF_SECONDS,
    RECONCILE_PRIORITY_QUEUE,
    RECONCILE_QUEUE,
    WorkQueue,
)

# A newly PAID session is checked a minute later: reconcile finishes the order if this worker dies.
FIRST_CHECK_DELAY_SECONDS = {PaymentStatus.PAID: RECONCILE_BACKOFF_SECONDS[0]}
# Paid sessions outlive abandoned ones: refunds and disputes come months after the payment.
KEPT_FOR_REFUNDS = frozenset({PaymentStatus.PROCESSED, PaymentStatus.REFUNDED})
# The by_user index key of the last session of a page: what a user's listing cursor holds.
CURSOR_FIELDS = ("user_id", "session_id", "created_at")
# session.iso(): the created_at of every session, and so of every cursor this API issues.
_ISO_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


# Index items read per shard and round when many are due; fewer when the limit is split evenly.
DUE_PAGE_SIZE = 100


@dataclass(frozen=True)
class DuePage:
    """One page of a work-queue shard: session ids, index items read, and where the next starts."""

    session_ids: list[str]
    items_read: int
    next_key: Any = None
    # The due value of the page's first item (epoch seconds, or a timestamp for expire): the
    # shard's oldest on a first page.
    first_due: Any = None


@dataclass
class DueSessions:
    session_ids: list[str] = field(default_factory=list)
    items_read: int = 0
    per_shard: Counter[str] = field(default_factory=Counter)


class StorePolicy(Protocol):
    """The settings the bookkeeping reads (qpay_common.settings.Settings has them)."""

    @property
    def purge_after_days(self) -> int: ...

    @property
    def paid_retention_days(self) -> int: ...

    @property
    def reconcile_grace_hours(self) -> int: ...

    @property
    def ebarimt_enabled(self) -> bool: ...


class SessionStore(abc.ABC):
    def __init__(self, policy: StorePolicy) -> None:
        self._policy = policy

    # Storage primitives

    @abc.abstractmethod
    def get(self, session_id: str) -> PaymentSession | None: ...

    @abc.abstractmethod
    def get_order(self, order_id: str) -> Order | None: ...

    @abc.abstractmethod
    def create_unfinished(self, session: PaymentSession) -> PaymentSession:
        """The CREATING session, written before the QPay invoice exists (never twice)."""

    @abc.abstractmethod
    def delete_unfinished(self, session: PaymentSession) -> None: ...

    @abc.abstractmethod
    def record_fulfilment(
        self, session: PaymentSession, order: Order, *, lease_until: float, now: datetime
    ) -> PaymentSession:
        """In one transaction: the order (once per session), one settlement marker per QPay
        payment id (once ever), and the order id and publish lease on the still-PAID session."""

    @abc.abstractmethod
    def list_for_user(
        self, user_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[PaymentSession], str | None]:
        """Newest first, with an opaque cursor only this user can continue."""

    @abc.abstractmethod
    def query_index(
        self,
        stream: Stream,
        *,
        created_from: str | None,
        created_to: str | None,
        after: Position | None,
        limit: int,
    ) -> tuple[list[PaymentSession], Position | None]:
        """Up to `limit` sessions of one index partition (session_listing.Stream) created within
        the bounds, after `after`, newest first, never CREATING ones; and the position to go on
        from (None once the partition is exhausted)."""

    @abc.abstractmethod
    def due_page(
        self, queue: WorkQueue, shard_key: str, upper_bound: Any, *, start_key: Any, limit: int
    ) -> DuePage:
        """Up to `limit` ids in one shard of `queue` whose due value is <= upper_bound, soonest
        due first, from `start_key` (None: the start)."""

    @abc.abstractmethod
    def _lease_due(self, session_id: str, attribute: str, bound: int, until: int) -> bool:
        """Set `attribute` to `until` (and bump the version) if it is still <= bound; whether it was."""

    @abc.abstractmethod
    def _update(
        self, session: PaymentSession, changes: Mapping[str, Any], *, due: tuple[str, int] | None = None
    ) -> PaymentSession:
        """Apply `changes` (None removes an attribute) if the session still has the status and
        version the caller read (and, with `due`, that attribute is <= the bound); else StaleSession."""

    # Reading sessions as their callers may see them

    def find(self, session_id: str) -> PaymentSession:
        """The session, or SessionNotFound while it is missing or still being created (a CREATING
        session never had an invoice: nobody outside creation may see it)."""
        session = self.get(session_id)
        if session is None or session.status == PaymentStatus.CREATING:
            raise SessionNotFound()
        return session

    def find_owned(self, user_id: str, session_id: str) -> PaymentSession:
        """The caller's own session. Someone else's answers exactly like a missing one, so ids
        cannot be probed."""
        session = self.find(session_id)
        if session.user_id != user_id:
            raise SessionNotFound()
        return session

    # Reading the work queues

    def due_sessions(self, queue: WorkQueue, upper_bound: Any, *, limit: int) -> DueSessions:
        """Up to `limit` due sessions of `queue`, read fairly: round by round, a page from each
        shard that still has due items, the limit split evenly between them, so a backlog in one
        shard never starves the others."""
        due = DueSessions()
        start_keys: dict[str, Any] = dict.fromkeys(queue.all_shards())
        while start_keys and len(due.session_ids) < limit:
            share = math.ceil((limit - len(due.session_ids)) / len(start_keys))
            for shard_key in list(start_keys):
                room = limit - len(due.session_ids)
                if room <= 0:
                    break
                page = self.due_page(
                    queue,
                    shard_key,
                    upper_bound,
                    start_key=start_keys[shard_key],
                    limit=min(DUE_PAGE_SIZE, share, room),
                )
                due.session_ids.extend(page.session_ids)
                due.items_read += page.items_read
                if page.session_ids:
                    due.per_shard[shard_key] += len(page.session_ids)
                if page.next_key is None:
                    del start_keys[shard_key]
                else:
                    start_keys[shard_key] = page.next_key
        return due

    def oldest_due(self, queue: WorkQueue, upper_bound: Any) -> Any:
        """When the longest-waiting due session of `queue` became due (None: nothing is due):
        one item from the start of each shard."""
        firsts = [
            page.first_due
            for page in (
                self.due_page(queue, shard_key, upper_bound, start_key=None, limit=1)
                for shard_key in queue.all_shards()
            )
            if page.first_due is not None
        ]
        return min(firsts, default=None)

    # Creation

    def activate(self, session: PaymentSession, invoice: Mapping[str, Any], now: datetime) -> PaymentSession:
        """CREATING -> PENDING with the invoice's id, QR and deeplinks."""
        return self._move(session, Event.INVOICE_CREATED, now, invoice)

    # Settlement

    def mark_paid(
        self, session: PaymentSession, paid_amount: int, payment_ids: list[str], now: datetime
    ) -> PaymentSession:
        late = transition_for(session.status, Event.PAYMENT_VERIFIED).late_payment
        changes = {"paid_amount": paid_amount, "payment_ids": payment_ids, "paid_at": iso(now)}
        changes.update(failure_reason=None, late_payment=True if late else None)
        return self._move(session, Event.PAYMENT_VERIFIED, now, changes)

    def record_underpayment(
        self, session: PaymentSession, paid_amount: int, payment_ids: list[str], reason: str, now: datetime
    ) -> PaymentSession:
        changes = {"failure_reason": reason, "paid_amount": paid_amount, "payment_ids": payment_ids}
        return self._move(session, Event.UNDERPAID, now, changes)

    def take_emit_lease(self, session: PaymentSession, until: float, now: datetime) -> PaymentSession:
        return self._update(session, {"emit_lease_until": until, "updated_at": iso(now)})

    def release_emit_lease(self, session: PaymentSession) -> PaymentSession:
        return self._update(session, {"emit_lease_until": None})

    def mark_processed(self, session: PaymentSession, now: datetime) -> PaymentSession:
        changes = {"processed_at": iso(now), "emit_lease_until": None}
        return self._move(session, Event.FULFILLED, now, changes)

    # Cancellation

    def cancel(self, session: PaymentSession, now: datetime) -> PaymentSession:
        return self._move(session, Event.CANCEL, now, {"cancelled_at": iso(now)})

    def expire(self, session: PaymentSession, now: datetime) -> PaymentSession:
        return self._move(session, Event.EXPIRE, now, {"expired_at": iso(now)})

    # Refunds (operators)

    def record_refund_request(self, session: PaymentSession, refund: Refund, now: datetime) -> PaymentSession:
        """Who asked for a refund, and why, before QPay is asked: a refund cut short stays visible."""
        return self._update(session, {"refund": refund.model_dump(mode="json"), "updated_at": iso(now)})

    def mark_refunded(self, session: PaymentSession, refund: Refund, now: datetime) -> PaymentSession:
        """PROCESSED -> REFUNDED; a receipt that may exist is queued for cancelling."""
        return self._move(session, Event.REFUND, now, {"refund": refund.model_dump(mode="json")})

    def record_refund_published(self, session: PaymentSession, refund: Refund) -> PaymentSession:
        """PaymentRefunded is on the bus; the publish lease (take_emit_lease) is released."""
        return self._update(session, {"refund": refund.model_dump(mode="json"), "emit_lease_until": None})

    def queue_receipt_cancel(self, session: PaymentSession, now: datetime, **receipt: Any) -> PaymentSession:
        """A receipt found on a refunded session (registered while the refund ran): cancel it."""
        changes = {"ebarimt_status": EbarimtStatus.CANCELLING.value, "ebarimt_queued_at": iso(now), **receipt}
        changes.update(EBARIMT_QUEUE.enqueue(session.session_id, now.timestamp(), ebarimt_attempts=0))
        return self._update(session, changes)

    def requeue_ebarimt(
        self, session: PaymentSession, now: datetime, *, overrides: Mapping[str, Any] | None
    ) -> PaymentSession:
        """An operator's re-queue of a receipt: PENDING again, due now, with a fresh retry window
        and attempt count, and `overrides` (if any) merged into the session's own."""
        changes: dict[str, Any] = {
            "ebarimt_status": EbarimtStatus.PENDING.value,
            "ebarimt_queued_at": iso(now),
            "ebarimt_attempts": 0,
            "ebarimt_last_error": None,
            "updated_at": iso(now),
        }
        if overrides:
            changes["ebarimt_overrides"] = {**(session.ebarimt_overrides or {}), **overrides}
        changes.update(EBARIMT_QUEUE.enqueue(session.session_id, now.timestamp()))
        return self._update(session, changes)

    # Scheduled work: a claim succeeds only while the work is still due, so of two overlapping
    # runs exactly one does it.

    def lease_reconcile_check(self, session_id: str, now: datetime, *, until: int) -> bool:
        """The reconcile dispatcher's lease: the session stops being due until `until`, so it is
        queued once; if its message is lost, it is simply due again then. False: another run
        leased it, or it is no longer due."""
        return self._lease_due(session_id, RECONCILE_QUEUE.due_attribute, int(now.timestamp()), until)

    def record_reconcile_check(
        self, session: PaymentSession, *, next_check_at: float, checks: int
    ) -> PaymentSession:
        """A check of a leased session is done: the next one is due at `next_check_at` (if the
        session is unchanged since the worker read it; else StaleSession)."""
        changes = {"next_check_at": int(next_check_at), "reconcile_checks": checks}
        return self._update(session, changes)

    def record_invoice_cancelled(
        self, session: PaymentSession, now: datetime, *, checks_for_seconds: int
    ) -> PaymentSession:
        """QPay confirmed the invoice cancelled, so a payment can only still race the cancel: the
        grace window shrinks to `checks_for_seconds` (0 ends the checks now)."""
        changes: dict[str, Any] = {"invoice_cancelled_at": iso(now)}
        if session.status in GRACE and session.reconcile_shard is not None:
            ends = int(now.timestamp()) + checks_for_seconds
            if checks_for_seconds <= 0:
                changes.update(RECONCILE_QUEUE.dequeue())
            elif session.grace_until is None or ends < session.grace_until:
                changes["grace_until"] = ends
        return self._update(session, changes)

    def claim_ebarimt_attempt(
        self, session: PaymentSession, now: datetime, *, next_attempt_at: float, attempts: int
    ) -> PaymentSession:
        changes = {"ebarimt_attempts": attempts, "ebarimt_next_at": int(next_attempt_at)}
        return self._update(session, changes, due=(EBARIMT_QUEUE.due_attribute, int(now.timestamp())))

    def record_ebarimt(
        self, session: PaymentSession, status: EbarimtStatus, *, still_due: bool, **fields: Any
    ) -> PaymentSession:
        """The receipt's outcome (REGISTERED, ERROR, REJECTED, GAVE_UP, SKIPPED, ...), with or
        without another attempt due."""
        changes: dict[str, Any] = {"ebarimt_status": status.value, **fields}
        if not still_due:
            changes.update(EBARIMT_QUEUE.dequeue())
        return self._update(session, changes)

    def stop_watching(self, session: PaymentSession, queue: WorkQueue) -> PaymentSession:
        """Take the session off a job's queue (the job found nothing to do for it)."""
        return self._update(session, queue.dequeue())

    # Status changes

    def _move(
        self, session: PaymentSession, event: Event, now: datetime, changes: Mapping[str, Any]
    ) -> PaymentSession:
        target = transition_for(session.status, event).target
        moved = {
            "status": target.value,
            "updated_at": iso(now),
            **self._bookkeeping_for(session, target, now),
            **changes,
        }
        return self._update(session, moved)

    def _retention_days(self, ended: PaymentStatus) -> int:
        if ended in KEPT_FOR_REFUNDS:
            return self._policy.paid_retention_days
        return self._policy.purge_after_days

    def _bookkeeping_for(
        self, session: PaymentSession, target: PaymentStatus, now: datetime
    ) -> dict[str, Any]:
        """The TTL and the work-queue keys a session in `target` carries."""
        session_id = session.session_id
        epoch = now.timestamp()
        watchers = WATCHED_BY[target]
        purge_at = None if target in OPEN_STATUSES else purge_epoch(now, self._retention_days(target))
        changes: dict[str, Any] = {"purge_at": purge_at}
        changes.update(EXPIRE_QUEUE.enqueue(session_id) if Job.EXPIRE in watchers else EXPIRE_QUEUE.dequeue())
        if Job.RECONCILE in watchers:
            due = epoch + FIRST_CHECK_DELAY_SECONDS.get(target, 0)
            queue = RECONCILE_PRIORITY_QUEUE if target == PaymentStatus.PAID else RECONCILE_QUEUE
            changes.update(queue.enqueue(session_id, due, reconcile_checks=0, grace_until=None))
        elif Job.GRACE in watchers:
            grace_until = int(epoch + self._policy.reconcile_grace_hours * 3600)
            changes.update(
                RECONCILE_QUEUE.enqueue(session_id, epoch, reconcile_checks=0, grace_until=grace_until)
            )
        else:
            changes.update(RECONCILE_QUEUE.dequeue())
        if Job.EBARIMT in watchers:
            if self._policy.ebarimt_enabled:
                changes.update(ebarimt_status=EbarimtStatus.PENDING.value, ebarimt_queued_at=iso(now))
                changes.update(EBARIMT_QUEUE.enqueue(session_id, epoch))
            else:
                changes["ebarimt_status"] = EbarimtStatus.SKIPPED.value
        elif Job.EBARIMT_CANCEL in watchers and session.ebarimt_status in RECEIPT_MAY_EXIST:
            changes.update(ebarimt_status=EbarimtStatus.CANCELLING.value, ebarimt_queued_at=iso(now))
            changes.update(EBARIMT_QUEUE.enqueue(session_id, epoch, ebarimt_attempts=0))
        else:
            changes.update(EBARIMT_QUEUE.dequeue())
        return changes


def user_cursor(last_key: Mapping[str, str] | None) -> str | None:
    """The cursor of a user's next page, from the index key of this page's last session."""
    if last_key is None:
        return None
    return encode_cursor({name: last_key[name] for name in CURSOR_FIELDS})


def user_cursor_key(user_id: str, cursor: str) -> dict[str, str]:
    """The index key a cursor stands for; InvalidCursor unless this API issued it to this user.
    Every part is checked, because DynamoDB answers a malformed ExclusiveStartKey (an empty or
    oversized key attribute) with an error, not an empty page."""
    plain = decode_cursor(cursor)
    values = {name: plain.get(name) for name in CURSOR_FIELDS}
    if not all(isinstance(value, str) for value in values.values()) or values["user_id"] != user_id:
        raise InvalidCursor()
    key = {name: str(value) for name, value in values.items()}
    if not re.fullmatch(SESSION_ID_PATTERN, key["session_id"]) or not _ISO_TIMESTAMP.fullmatch(
        key["created_at"]
    ):
        raise InvalidCursor()
    return key
