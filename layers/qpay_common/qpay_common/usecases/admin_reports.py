"""Operators' reports over many sessions: the listing (by status, user and time, newest first,
paged) and the summary of a time window, both read from indexes, never a Scan."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.errors import InvertedWindow
from qpay_common.domain.listing import LISTED_STATUSES, SessionFilter, every_session, list_page
from qpay_common.domain.session import EbarimtStatus, PaymentSession, PaymentStatus, iso
from qpay_common.domain.store import SessionStore
from qpay_common.observability import logger

# A summary reads at most this many sessions; beyond, it says it is incomplete.
MAX_SUMMARY_SESSIONS = 20_000
DEFAULT_SUMMARY_WINDOW = timedelta(hours=24)


@dataclass
class StatusTotals:
    count: int = 0
    amount: int = 0
    paid_amount: int = 0


@dataclass
class Summary:
    created_from: str
    created_to: str
    sessions: int = 0
    by_status: dict[str, StatusTotals] = field(
        default_factory=lambda: {status.value: StatusTotals() for status in LISTED_STATUSES}
    )
    # Sessions ever cancelled, ever expired, paid at all, and paid after a cancel or expiry.
    cancelled: int = 0
    expired: int = 0
    paid: int = 0
    late_payments: int = 0
    refunded_amount: int = 0
    ebarimt: Counter[str] = field(default_factory=Counter)
    complete: bool = True

    @property
    def cancellation_rate(self) -> float:
        return _rate(self.cancelled, self.sessions)

    @property
    def expiry_rate(self) -> float:
        return _rate(self.expired, self.sessions)

    @property
    def late_payment_rate(self) -> float:
        return _rate(self.late_payments, self.paid)

    def add(self, session: PaymentSession) -> None:
        self.sessions += 1
        totals = self.by_status[session.status.value]
        totals.count += 1
        totals.amount += session.amount
        totals.paid_amount += session.paid_amount
        self.cancelled += session.cancelled_at is not None
        self.expired += session.expired_at is not None
        self.paid += session.paid_at is not None
        self.late_payments += bool(session.late_payment)
        if session.status == PaymentStatus.REFUNDED and session.refund is not None:
            self.refunded_amount += session.refund.amount
        if session.ebarimt_status:
            self.ebarimt[session.ebarimt_status] += 1


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


class AdminReports:
    def __init__(self, store: SessionStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock

    def list_payments(
        self,
        actor: str,
        *,
        status: PaymentStatus | None = None,
        ebarimt_status: EbarimtStatus | None = None,
        user_id: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[PaymentSession], str | None]:
        query = SessionFilter(
            status, user_id, *_window(created_from, created_to), ebarimt_status=ebarimt_status
        )
        logger.info(
            "Admin list",
            extra={
                "admin": actor,
                "status": status,
                "ebarimt_status": ebarimt_status,
                "filtered_by_user": bool(user_id),
            },
        )
        return list_page(self._store.query_index, query, limit=limit, cursor=cursor)

    def summary(
        self, actor: str, *, created_from: datetime | None = None, created_to: datetime | None = None
    ) -> Summary:
        """Counts and sums of the sessions created in the window (default: the last 24 hours)."""
        created_to = created_to or self._clock.now()
        if created_from is None:
            # A `to` within a day of the calendar's start starts the window there.
            earliest = datetime.min.replace(tzinfo=UTC)
            created_from = max(earliest, created_to - min(DEFAULT_SUMMARY_WINDOW, created_to - earliest))
        bounds = _window(created_from, created_to)
        summary = Summary(created_from=bounds[0] or "", created_to=bounds[1] or "")
        query = SessionFilter(None, None, *bounds)
        for session in every_session(self._store.query_index, query, max_items=MAX_SUMMARY_SESSIONS + 1):
            if summary.sessions == MAX_SUMMARY_SESSIONS:
                summary.complete = False
                break
            summary.add(session)
        logger.info("Admin summary", extra={"admin": actor, "sessions": summary.sessions})
        return summary


def _window(created_from: datetime | None, created_to: datetime | None) -> tuple[str | None, str | None]:
    if created_from is not None and created_to is not None and created_from > created_to:
        raise InvertedWindow()
    return (
        iso(created_from) if created_from is not None else None,
        iso(created_to) if created_to is not None else None,
    )
