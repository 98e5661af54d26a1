"""The scheduled jobs' work queues: sparse DynamoDB indexes whose key attributes a session carries
only while the work is due.

The session store sets and removes those attributes in the same conditional update that changes the
session (from the state machine's WATCHED_BY), and the jobs query exactly the sessions that need
them (never a Scan), so their cost grows with the work, not with the table.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

SHARDS = 10

# Seconds between reconcile checks of one open session: 1, 2, 5, 10, 20 minutes, then hourly.
RECONCILE_BACKOFF_SECONDS = (60, 120, 300, 600, 1200, 3600)
# Ebarimt retries back off exponentially, 1, 2, 4, ... minutes, at most hourly, until their
# window closes (settings.ebarimt_max_age_hours): a QPay outage of hours costs a few dozen calls.
EBARIMT_FIRST_RETRY_SECONDS = 60
EBARIMT_MAX_RETRY_SECONDS = 3600


@dataclass(frozen=True)
class WorkQueue:
    job: str
    index_name: str
    shard_prefix: str
    # The index's partition key: present exactly while the session is queued.
    shard_attribute: str
    # The index's sort key: the jobs read items whose value is <= their bound.
    due_attribute: str
    # Whether the due attribute belongs to the queue (removed with it) or is a session field.
    owns_due_attribute: bool = True
    # Bookkeeping attributes that live and die with the queue entry.
    companions: tuple[str, ...] = ()

    def shard(self, session_id: str) -> str:
        """A stable shard per session, so one busy shop does not make one hot partition."""
        number = int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16) % SHARDS
        return f"{self.shard_prefix}#{number}"

    def all_shards(self) -> list[str]:
        return [f"{self.shard_prefix}#{number}" for number in range(SHARDS)]

    def enqueue(self, session_id: str, due_at: float | None = None, **companions: Any) -> dict[str, Any]:
        changes: dict[str, Any] = {self.shard_attribute: self.shard(session_id), **companions}
        if self.owns_due_attribute:
            changes[self.due_attribute] = int(due_at or 0)
        return changes

    def dequeue(self) -> dict[str, Any]:
        names = [self.shard_attribute, *self.companions]
        if self.owns_due_attribute:
            names.append(self.due_attribute)
        return dict.fromkeys(names)


RECONCILE_QUEUE = WorkQueue(
    job="reconcile",
    index_name="reconcile_due",
    shard_prefix="R",
    shard_attribute="reconcile_shard",
    due_attribute="next_check_at",
    companions=("reconcile_checks", "grace_until"),
)
# PAID sessions only need their order and event, no QPay call: the same index under shard keys of
# their own ("RP#n"), so the dispatcher reads them first and queues them apart, and they never
# wait behind a backlog of grace-window checks.
RECONCILE_PRIORITY_QUEUE = WorkQueue(
    job="reconcile",
    index_name="reconcile_due",
    shard_prefix="RP",
    shard_attribute="reconcile_shard",
    due_attribute="next_check_at",
    companions=("reconcile_checks", "grace_until"),
)
EXPIRE_QUEUE = WorkQueue(
    job="expire",
    index_name="pending_since",
    shard_prefix="P",
    shard_attribute="pending_shard",
    due_attribute="created_at",
    owns_due_attribute=False,
)
EBARIMT_QUEUE = WorkQueue(
    job="ebarimt",
    index_name="ebarimt_due",
    shard_prefix="E",
    shard_attribute="ebarimt_shard",
    due_attribute="ebarimt_next_at",
)


def backoff(schedule: tuple[int, ...], attempts: int) -> int:
    return schedule[min(max(attempts, 0), len(schedule) - 1)]


def ebarimt_retry_delay(attempts: int) -> int:
    """Seconds from attempt number `attempts` (1 for the first) to the next."""
    exponent = min(max(attempts - 1, 0), 12)  # 2**12 minutes is far past the cap
    return min(EBARIMT_FIRST_RETRY_SECONDS << exponent, EBARIMT_MAX_RETRY_SECONDS)
