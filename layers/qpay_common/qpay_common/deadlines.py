"""The running invocation's deadline, so no QPay call outlives the Lambda that makes it.

An execution environment serves one invocation at a time, so the deadline is module state: the
handler entry points set it from the Lambda context, and the QPay transport (also from a scheduled
job's worker threads) reads it. Outside an invocation (tests, tools) there is none.
"""

import time
from typing import Protocol

# Left at the end of an invocation to record the outcome and answer, after the last QPay call.
ANSWER_MARGIN_SECONDS = 1.0

_deadline: float | None = None


class RemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def begin(context: RemainingTime | None) -> None:
    """Called by each entry point with its Lambda context."""
    global _deadline
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        _deadline = None
        return
    _deadline = time.monotonic() + remaining_ms() / 1000 - ANSWER_MARGIN_SECONDS


def end() -> None:
    global _deadline
    _deadline = None


def seconds_left() -> float | None:
    """Seconds until the deadline (never negative), or None outside an invocation."""
    if _deadline is None:
        return None
    return max(0.0, _deadline - time.monotonic())
