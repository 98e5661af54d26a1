"""The one clock of the layer. Every use case, job and cache reads time from an injected Clock, so
tests control time in one place; only durations (deadlines, backoff) use time.monotonic()."""

from datetime import UTC, datetime


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def epoch(self) -> float:
        """Seconds since the epoch: DynamoDB TTLs, index sort keys and cache expiries."""
        return self.now().timestamp()


SYSTEM_CLOCK = Clock()
