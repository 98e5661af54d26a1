"""The EventBridge-scheduled jobs that work inside their own invocation: expire and ebarimt
(ARCHITECTURE section 5). Reconcile hands its work to SQS instead (reconcile.py).

Each job reads only its sparse work-queue index (never a Scan), fairly across its shards, works
the due sessions with bounded concurrency, stops taking work before its Lambda timeout (the rest
stays due for the next run), and reports one summary. Every per-session step is a conditional
write that first claims the session, so two overlapping runs never do visible work twice.
"""

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.errors import PaymentError, StaleSession
from qpay_common.domain.session import PaymentSession, iso
from qpay_common.domain.state_machine import Event, allows
from qpay_common.domain.store import SessionStore
from qpay_common.domain.work_queues import EBARIMT_QUEUE, EXPIRE_QUEUE, WorkQueue
from qpay_common.observability import logger, record
from qpay_common.settings import Settings
from qpay_common.usecases.cancellation import Cancellation
from qpay_common.usecases.ebarimt import EbarimtService

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
    # Due sessions read per shard: a starved shard shows as missing while others have many.
    per_shard: Counter[str] = field(default_factory=Counter)
    # Measurements of the run (e.g. the age of the oldest due session), published in seconds.
    gauges: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "job": self.job,
            "due": self.due,
            "index_items_read": self.index_items_read,
            "outcomes": dict(self.outcomes),
            "left_for_next_run": self.left_for_next_run,
            "seconds": round(self.seconds, 3),
            "per_shard": dict(sorted(self.per_shard.items())),
            **({"gauges": dict(self.gauges)} if self.gauges else {}),
        }

    def publish(self) -> None:
        """One log line and the metrics of a run."""
        logger.info(f"{self.job} run", extra={"summary": self.as_dict()})
        name = "".join(part.capitalize() for part in self.job.split("_"))
        record(f"{name}Due", self.due)
        for outcome, number in self.outcomes.items():
            record(f"{name}_{outcome}", number)
        for gauge, seconds in self.gauges.items():
            record(gauge, seconds, seconds=True)


def run_concurrently(
    job: str, work: Callable[[str], str], session_ids: list[str], *, threads: int, deadline: float
) -> Counter[str]:
    """`work` for each session from a thread pool; outcomes counted. Sessions not started by the
    deadline count as left_for_next_run; one session's error never stops the others."""

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

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return Counter(pool.map(attempt, session_ids))


class ScheduledJobs:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        cancellation: Cancellation,
        ebarimt: EbarimtService,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._store = store
        self._cancellation = cancellation
        self._ebarimt = ebarimt
        self._clock = clock

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
        started = time.monotonic()
        deadline = started + max(0.0, remaining_seconds - self._settings.job_safety_seconds)
        summary = JobSummary(job=queue.job)
        due = self._store.due_sessions(queue, upper_bound, limit=MAX_ITEMS_PER_RUN)
        summary.due = len(due.session_ids)
        summary.index_items_read = due.items_read
        summary.per_shard = due.per_shard
        summary.outcomes = run_concurrently(
            queue.job, work, due.session_ids, threads=self._settings.job_concurrency, deadline=deadline
        )
        summary.left_for_next_run = summary.outcomes.pop("left_for_next_run", 0)
        summary.seconds = time.monotonic() - started
        summary.publish()
        return summary

    def _expire_one(self, session_id: str) -> str:
        session = self._store.get(session_id)
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
            self._store.stop_watching(session, queue)
