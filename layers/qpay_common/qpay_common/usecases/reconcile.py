"""Reconcile on SQS: a scheduled dispatcher hands due sessions to queues, and a worker function,
scaled by its event source mappings, checks each with QPay (ARCHITECTURE section 5).

- The dispatcher (every minute) reads the reconcile_due index fairly across its shards, PAID
  sessions first (their own shard keys and queue), and leases each session before queueing it:
  one conditional write moves next_check_at to the end of the lease only if it is still due. So a
  session is queued once however runs overlap, and a lost message only makes it due again when
  the lease ends. It tops each queue up to RECONCILE_MAX_QUEUED, no further.
- The worker re-reads the session and acts only if it still carries the message's lease (else
  the message is a duplicate or outlived its lease: dropped), applies the same rules as the
  webhook (Settlement.confirm_with_qpay), and only then records the check and schedules the
  next one by the backoff (a conditional write on the version it read). A worker that dies
  midway leaves the lease in place: its message comes back after the visibility timeout and the
  check is done then. A batch's messages are worked in parallel; one that fails is reported
  back (partial batch response); after a few receives SQS moves it to the dead-letter queue.
"""

import asyncio
import contextlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common import deadlines
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.domain.errors import PaymentError, StaleSession
from qpay_common.domain.session import PaymentSession, PaymentStatus
from qpay_common.domain.state_machine import GRACE, RECONCILED
from qpay_common.domain.store import SessionStore
from qpay_common.domain.work_queues import (
    RECONCILE_BACKOFF_SECONDS,
    RECONCILE_PRIORITY_QUEUE,
    RECONCILE_QUEUE,
    WorkQueue,
    backoff,
)
from qpay_common.observability import logger
from qpay_common.settings import Settings
from qpay_common.usecases.jobs import JobSummary, run_concurrently
from qpay_common.usecases.ports import ReconcileTask, TaskQueues
from qpay_common.usecases.settlement import Settlement


class NotStartedInTime(Exception):
    """Too little of the invocation is left for a QPay call: the message is retried later."""


class ReconcileDispatcher:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        queues: TaskQueues,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._store = store
        self._queues = queues
        self._clock = clock

    def dispatch(self, remaining_seconds: float) -> JobSummary:
        started = time.monotonic()
        deadline = started + max(0.0, remaining_seconds - self._settings.job_safety_seconds)
        summary = JobSummary(job="reconcile")
        for queue, priority in ((RECONCILE_PRIORITY_QUEUE, True), (RECONCILE_QUEUE, False)):
            self._queue_due(queue, priority, summary, deadline)
        summary.outcomes = +summary.outcomes  # drop zero counts
        summary.seconds = time.monotonic() - started
        summary.publish()
        return summary

    def _queue_due(self, queue: WorkQueue, priority: bool, summary: JobSummary, deadline: float) -> None:
        """Lease the due sessions of `queue`, as many as its SQS queue has room for, and send them."""
        self._measure_backlog(queue, priority, summary)
        room = self._settings.reconcile_max_queued - self._queues.depth(priority=priority)
        if room <= 0:
            summary.outcomes["queue_full"] += 1
            return
        now = self._clock.now()
        lease_until = int(now.timestamp()) + self._settings.reconcile_lease_seconds
        due = self._store.due_sessions(queue, int(now.timestamp()), limit=room)
        summary.due += len(due.session_ids)
        summary.index_items_read += due.items_read
        summary.per_shard.update(due.per_shard)
        leased: list[str] = []

        def lease(session_id: str) -> str:
            if not self._store.lease_reconcile_check(session_id, now, until=lease_until):
                return "claimed_elsewhere"
            leased.append(session_id)  # list.append is atomic: the pool's threads share it
            return "leased"

        outcomes = run_concurrently(
            "reconcile", lease, due.session_ids, threads=self._settings.job_concurrency, deadline=deadline
        )
        outcomes.pop("leased", None)
        summary.left_for_next_run += outcomes.pop("left_for_next_run", 0)
        summary.outcomes.update(outcomes)
        tasks = [ReconcileTask(session_id=session_id, lease=lease_until) for session_id in leased]
        not_sent = self._queues.send(tasks, priority=priority)
        summary.outcomes["queued_priority" if priority else "queued"] += len(tasks) - not_sent
        if not_sent:
            summary.outcomes["not_sent"] += not_sent
            logger.warning("Some leased sessions were not queued; due again when the lease ends")

    def _measure_backlog(self, queue: WorkQueue, priority: bool, summary: JobSummary) -> None:
        """How long the longest-waiting due session has waited (0 when none is due): the
        ReconcileOldestDueSeconds metrics that the backlog alarms watch. Measured before leasing,
        so a run that cannot queue (queue full, or the run failing after) still reports it."""
        now = self._clock.now().timestamp()
        oldest = self._store.oldest_due(queue, int(now))
        age = 0.0 if oldest is None else max(0.0, now - float(oldest))
        name = "ReconcilePriorityOldestDueSeconds" if priority else "ReconcileOldestDueSeconds"
        summary.gauges[name] = round(age, 3)


class ReconcileWorker:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        settlement: Settlement,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._store = store
        self._settlement = settlement
        self._clock = clock

    def work_message(self, body: str) -> str:
        """One message; what happened, for the batch summary. Raises (so the message is retried)
        when nothing was done for it."""
        task = ReconcileTask.model_validate_json(body)
        logger.thread_safe_append_keys(session_id=task.session_id)
        try:
            return self.work(task)
        except PaymentError as exc:
            # QPay failed; the check was recorded and the next one comes after the backoff.
            logger.warning("reconcile: session not finished this check", extra={"error": exc.code})
            return "error"
        finally:
            logger.thread_safe_remove_keys(["session_id"])

    def work(self, task: ReconcileTask) -> str:
        session = self._store.get(task.session_id)
        if session is None:
            return "gone"
        if session.next_check_at != task.lease:
            # A duplicate delivery, or a message that outlived its lease (the session was queued
            # again or checked since): whoever holds the current lease does the work.
            return "not_leased"
        if session.status not in RECONCILED:
            self._stop_watching(session)
            return "not_due"
        if session.status in GRACE and (session.grace_until or 0) < self._clock.now().timestamp():
            self._stop_watching(session)
            return "grace_over"
        left = deadlines.seconds_left()
        if left is not None and left < self._settings.qpay_call_budget_seconds:
            raise NotStartedInTime(task.session_id)
        # The check is recorded only once it is done (below): a worker killed midway leaves the
        # lease in place, so the message that comes back does the check again.
        try:
            after = self._settlement.confirm_with_qpay(session, source="reconcile")
        except PaymentError:
            self._check_done(session, task)  # QPay failed: the next check comes after the backoff
            raise
        self._check_done(after, task)
        before = session.status
        if after.status == PaymentStatus.PROCESSED:
            return "finished" if before == PaymentStatus.PAID else "confirmed"
        return "still_open" if after.status == before else after.status.value.lower()

    def _check_done(self, session: PaymentSession, task: ReconcileTask) -> None:
        """Schedule the next check by the backoff, unless the work already re-queued the session
        (a new status sets its own work-queue keys) or another delivery recorded this check."""
        if session.next_check_at != task.lease or session.status not in RECONCILED:
            return
        checks = (session.reconcile_checks or 0) + 1
        next_check_at = self._clock.now().timestamp() + backoff(RECONCILE_BACKOFF_SECONDS, checks - 1)
        with contextlib.suppress(StaleSession):
            self._store.record_reconcile_check(session, next_check_at=next_check_at, checks=checks)

    def _stop_watching(self, session: PaymentSession) -> None:
        # Whoever changed it kept the index keys right.
        with contextlib.suppress(StaleSession):
            self._store.stop_watching(session, RECONCILE_QUEUE)

    def work_batch(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        """An SQS batch, its messages worked in parallel (each mostly waits on QPay); the
        partial batch response names the messages to retry."""
        records = event.get("Records") or []
        summary = JobSummary(job="reconcile_worker", due=len(records))
        started = time.monotonic()
        processor = AsyncBatchProcessor(event_type=EventType.SQS)
        with ThreadPoolExecutor(
            max_workers=max(1, min(len(records), self._settings.job_concurrency))
        ) as pool:
            # A session's check is recorded once it is done, so two copies of one message in the
            # same batch would both check it: the second copy is dropped here (across batches the
            # version check still lets only one record it, and a payment check is harmless).
            seen: set[tuple[str, int]] = set()

            async def handle(record: SQSRecord) -> str:
                key = _task_key(record.body)
                if key is not None:
                    if key in seen:  # the event loop's one thread: no lock needed
                        summary.outcomes["not_leased"] += 1
                        return "not_leased"
                    seen.add(key)
                loop = asyncio.get_running_loop()
                outcome = await loop.run_in_executor(pool, self.work_message, record.body)
                summary.outcomes[outcome] += 1  # back on the event loop's one thread
                return outcome

            response = async_process_partial_response(
                event=event, record_handler=handle, processor=processor, context=context
            )
        retried = len(response.get("batchItemFailures", []))
        if retried:
            summary.outcomes["retried"] = retried
            logger.warning("reconcile: messages returned for a retry", extra={"count": retried})
        summary.outcomes = Counter({name: n for name, n in summary.outcomes.items() if n})
        summary.seconds = time.monotonic() - started
        summary.publish()
        return dict(response)


def _task_key(body: str) -> tuple[str, int] | None:
    """The (session, lease) a message stands for; None for a body that is no task (work_message
    refuses it, so it is retried and dead-lettered)."""
    try:
        task = ReconcileTask.model_validate_json(body)
    except ValueError:
        return None
    return task.session_id, int(task.lease)
