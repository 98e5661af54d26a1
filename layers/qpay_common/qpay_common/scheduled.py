"""The three EventBridge-scheduled jobs: reconcile, expire and ebarimt (ARCHITECTURE section 5).

Each job reads only its sparse work-queue index (never a Scan), works the due sessions with
bounded concurrency, stops taking work before its Lambda timeout (the rest stays due for the next
run), and reports one summary. Every per-session step is a conditional write that first claims
the session, so two overlapping runs never do visible work twice.
"""

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from aws_lambda_powertools.metrics import MetricUnit

from qpay_common.domain import PAYABLE_STATES, PaymentSession, PaymentStatus, iso
from qpay_common.ebarimt import EbarimtService
from qpay_common.errors import PaymentError, StaleSession
from qpay_common.observability import logger, metrics
from qpay_common.payments import PaymentsService
from qpay_common.repository import SessionsRepository
from qpay_common.settings import Settings
from qpay_common.work_queues import (
    EBARIMT_INDEX,
    GRACE_STATES,
    PENDING_INDEX,
    RECONCILE_BACKOFF_SECONDS,
    RECONCILE_INDEX,
    all_shards,
    backoff,
    not_pending,
    not_reconciled,
)

# At most this many due sessions are read per run; more stay due for the next run.
MAX_ITEMS_PER_RUN = 5000


@dataclass
class JobSummary:
    job: str
    due: int = 0
    index_items_read: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    left_for_next_run: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "job": self.job,
            "due": self.due,
            "index_items_read": self.index_items_read,
            "outcomes": dict(self.outcomes),
            "left_for_next_run": self.left_for_next_run,
            "seconds": round(self.seconds, 3),
        }


class ScheduledJobs:
    def __init__(
        self,
        settings: Settings,
        repository: SessionsRepository,
        payments: PaymentsService,
        ebarimt: EbarimtService,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._payments = payments
        self._ebarimt = ebarimt

    def reconcile(self, remaining_seconds: float) -> JobSummary:
        return self._run(
            "reconcile",
            RECONCILE_INDEX,
            "R",
            "next_check_at",
            int(time.time()),
            self._reconcile_one,
            remaining_seconds,
        )

    def expire(self, remaining_seconds: float) -> JobSummary:
        cutoff = iso(self._payments.now() - timedelta(minutes=self._settings.session_expiry_minutes))
        return self._run(
            "expire", PENDING_INDEX, "P", "created_at", cutoff, self._expire_one, remaining_seconds
        )

    def ebarimt(self, remaining_seconds: float) -> JobSummary:
        return self._run(
            "ebarimt",
            EBARIMT_INDEX,
            "E",
            "ebarimt_next_at",
            int(time.time()),
            self._ebarimt.register,
            remaining_seconds,
        )

    def _run(
        self,
        job: str,
        index_name: str,
        shard_prefix: str,
        due_attribute: str,
        upper_bound: object,
        work: Callable[[str], str],
        remaining_seconds: float,
    ) -> JobSummary:
        started = time.monotonic()
        deadline = started + max(0.0, remaining_seconds - self._settings.job_safety_seconds)
        summary = JobSummary(job=job)
        due: list[str] = []
        for shard_key in all_shards(shard_prefix):
            ids, read = self._repository.due_session_ids(
                index_name, shard_key, due_attribute, upper_bound, max_items=MAX_ITEMS_PER_RUN - len(due)
            )
            due.extend(ids)
            summary.index_items_read += read
        summary.due = len(due)

        def attempt(session_id: str) -> str:
            if time.monotonic() >= deadline:
                return "left_for_next_run"
            # Thread-local: the pool's threads each log their own session.
            logger.thread_safe_append_keys(session_id=session_id)
            try:
                return work(session_id)
            except PaymentError as exc:
                logger.warning(f"{job}: session not finished this run", extra={"error": exc.code})
                return "error"
            except Exception:  # noqa: BLE001 - one bad session must not stop the run
                logger.exception(f"{job}: unexpected error")
                return "error"
            finally:
                logger.thread_safe_remove_keys(["session_id"])

        with ThreadPoolExecutor(max_workers=self._settings.job_concurrency) as pool:
            summary.outcomes.update(pool.map(attempt, due))
        summary.left_for_next_run = summary.outcomes.pop("left_for_next_run", 0)
        summary.seconds = time.monotonic() - started
        logger.info(f"{job} run", extra={"summary": summary.as_dict()})
        metrics.add_metric(name=f"{job.capitalize()}Due", unit=MetricUnit.Count, value=summary.due)
        for outcome, number in summary.outcomes.items():
            metrics.add_metric(name=f"{job.capitalize()}_{outcome}", unit=MetricUnit.Count, value=number)
        return summary

    def _reconcile_one(self, session_id: str) -> str:
        session = self._repository.get(session_id)
        if session is None:
            return "gone"
        if session.status not in PAYABLE_STATES and session.status != PaymentStatus.PAID:
            self._clear(session, not_reconciled())
            return "not_due"
        if session.status in GRACE_STATES and (session.grace_until or 0) < time.time():
            self._clear(session, not_reconciled())
            return "grace_over"
        checks = (session.reconcile_checks or 0) + 1
        now = int(time.time())
        try:
            # The claim: whoever moves next_check_at on wins this check; an overlapping run skips.
            session = self._repository.claim_due(
                session,
                "next_check_at",
                now,
                {
                    "next_check_at": now + backoff(RECONCILE_BACKOFF_SECONDS, checks - 1),
                    "reconcile_checks": checks,
                },
            )
        except StaleSession:
            return "claimed_elsewhere"
        before = session.status
        after = self._payments.confirm_with_qpay(session, source="reconcile")
        if after.status == PaymentStatus.PROCESSED:
            return "finished" if before == PaymentStatus.PAID else "confirmed"
        return "still_open" if after.status == before else after.status.value.lower()

    def _expire_one(self, session_id: str) -> str:
        session = self._repository.get(session_id)
        if session is None:
            return "gone"
        if session.status != PaymentStatus.PENDING:
            self._clear(session, not_pending())
            return "not_due"
        try:
            self._payments.expire(session)
        except StaleSession:
            return "claimed_elsewhere"
        return "expired"

    def _clear(self, session: PaymentSession, changes: dict[str, object]) -> None:
        # Whoever changed it kept the index keys right.
        with contextlib.suppress(StaleSession):
            self._repository.transition(session, expected=session.status, changes=changes)
