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

from qpay_common.cancellation import Cancellation
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain import PaymentSession, PaymentStatus, iso
from qpay_common.ebarimt import EbarimtService
from qpay_common.errors import PaymentError, StaleSession
from qpay_common.observability import logger, metrics
from qpay_common.repository import SessionsRepository
from qpay_common.settings import Settings
from qpay_common.settlement import Settlement
from qpay_common.state_machine import GRACE, RECONCILED, Event, allows
from qpay_common.work_queues import (
    EBARIMT_QUEUE,
    EXPIRE_QUEUE,
    RECONCILE_BACKOFF_SECONDS,
    RECONCILE_QUEUE,
    WorkQueue,
    backoff,
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
        settlement: Settlement,
        cancellation: Cancellation,
        ebarimt: EbarimtService,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._settlement = settlement
        self._cancellation = cancellation
        self._ebarimt = ebarimt
        self._clock = clock

    def reconcile(self, remaining_seconds: float) -> JobSummary:
        now = int(self._clock.epoch())
        return self._run(RECONCILE_QUEUE, now, self._reconcile_one, remaining_seconds)

    def expire(self, remaining_seconds: float) -> JobSummary:
        cutoff = iso(self._clock.now() - timedelta(minutes=self._settings.session_expiry_minutes))
        return self._run(EXPIRE_QUEUE, cutoff, self._expire_one, remaining_seconds)

    def ebarimt(self, remaining_seconds: float) -> JobSummary:
        now = int(self._clock.epoch())
        return self._run(EBARIMT_QUEUE, now, self._ebarimt.register, remaining_seconds)

    def _run(
        self,
        queue: WorkQueue,
        upper_bound: object,
        work: Callable[[str], str],
        remaining_seconds: float,
    ) -> JobSummary:
        job = queue.job
        started = time.monotonic()
        deadline = started + max(0.0, remaining_seconds - self._settings.job_safety_seconds)
        summary = JobSummary(job=job)
        due: list[str] = []
        for shard_key in queue.all_shards():
            ids, read = self._repository.due_session_ids(
                queue, shard_key, upper_bound, max_items=MAX_ITEMS_PER_RUN - len(due)
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
        if session.status not in RECONCILED:
            self._stop_watching(session, RECONCILE_QUEUE)
            return "not_due"
        now = self._clock.now()
        if session.status in GRACE and (session.grace_until or 0) < now.timestamp():
            self._stop_watching(session, RECONCILE_QUEUE)
            return "grace_over"
        checks = (session.reconcile_checks or 0) + 1
        next_check_at = now.timestamp() + backoff(RECONCILE_BACKOFF_SECONDS, checks - 1)
        try:
            # The claim: whoever moves next_check_at on wins this check; an overlapping run skips.
            session = self._repository.claim_reconcile_check(
                session, now, next_check_at=next_check_at, checks=checks
            )
        except StaleSession:
            return "claimed_elsewhere"
        before = session.status
        after = self._settlement.confirm_with_qpay(session, source="reconcile")
        if after.status == PaymentStatus.PROCESSED:
            return "finished" if before == PaymentStatus.PAID else "confirmed"
        return "still_open" if after.status == before else after.status.value.lower()

    def _expire_one(self, session_id: str) -> str:
        session = self._repository.get(session_id)
        if session is None:
            return "gone"
        if not allows(session.status, Event.EXPIRE):
            self._stop_watching(session, EXPIRE_QUEUE)
            return "not_due"
        try:
            self._cancellation.expire(session)
        except StaleSession:
            return "claimed_elsewhere"
        return "expired"

    def _stop_watching(self, session: PaymentSession, queue: WorkQueue) -> None:
        # Whoever changed it kept the index keys right.
        with contextlib.suppress(StaleSession):
            self._repository.stop_watching(session, queue)
