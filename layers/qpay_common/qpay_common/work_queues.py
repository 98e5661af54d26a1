"""Sparse-index bookkeeping: which scheduled job a session is due for, and when.

An index key attribute exists only while its work is due, and is set or removed in the same
conditional update that changes the session's state, so the jobs query exactly the sessions
that need them (never a Scan) and their cost grows with the work, not with the table.
"""

import hashlib
from typing import Any

from qpay_common.domain import PaymentStatus

SHARDS = 10
RECONCILE_INDEX = "reconcile_due"
PENDING_INDEX = "pending_since"
EBARIMT_INDEX = "ebarimt_due"

# Seconds between reconcile checks of one open session: 1, 2, 5, 10, 20 minutes, then hourly.
RECONCILE_BACKOFF_SECONDS = (60, 120, 300, 600, 1200, 3600)
# Ebarimt retries back off too: 1, 2, 5, 10, 20, 60 minutes.
EBARIMT_BACKOFF_SECONDS = (60, 120, 300, 600, 1200, 3600)
GRACE_STATES = frozenset({PaymentStatus.CANCELLED, PaymentStatus.EXPIRED, PaymentStatus.FAILED})


def shard(prefix: str, session_id: str) -> str:
    """A stable shard per session, so one busy shop does not make one hot partition."""
    number = int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16) % SHARDS
    return f"{prefix}#{number}"


def all_shards(prefix: str) -> list[str]:
    return [f"{prefix}#{number}" for number in range(SHARDS)]


def backoff(schedule: tuple[int, ...], attempts: int) -> int:
    return schedule[min(max(attempts, 0), len(schedule) - 1)]


def reconcile_due(session_id: str, at: float, checks: int = 0) -> dict[str, Any]:
    return {"reconcile_shard": shard("R", session_id), "next_check_at": int(at), "reconcile_checks": checks}


def not_reconciled() -> dict[str, Any]:
    return {"reconcile_shard": None, "next_check_at": None, "reconcile_checks": None, "grace_until": None}


def pending(session_id: str) -> dict[str, Any]:
    return {"pending_shard": shard("P", session_id)}


def not_pending() -> dict[str, Any]:
    return {"pending_shard": None}


def ebarimt_due(session_id: str, at: float) -> dict[str, Any]:
    return {"ebarimt_shard": shard("E", session_id), "ebarimt_next_at": int(at)}


def not_ebarimt_due() -> dict[str, Any]:
    return {"ebarimt_shard": None, "ebarimt_next_at": None}
