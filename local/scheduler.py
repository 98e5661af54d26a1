"""Fire the template's Schedule / ScheduleV2 events, as EventBridge would, through the local runtime.

Each enabled `rate(...)` schedule gets a thread that invokes its function every period with the
"Scheduled Event" payload (or the event's `Input`, which replaces it in AWS too). `cron(...)` and
`at(...)` are logged and skipped: honouring wall-clock expressions under a speed-up factor would
be misleading, and `make run` users can invoke a function any time through the invoke API.

- LOCAL_SCHEDULE_SPEEDUP (default 1): 60 makes a one-minute rate fire every second.
- LOCAL_SCHEDULES=off: no schedule fires.

A tick is skipped (and logged) while the previous run of the same function is still going: the
scheduled functions process work queues and are written to finish before their timeout, so
overlapping runs would only race each other locally. A failing run is logged; the schedule
keeps going.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local.functions import FunctionRuntime
from local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, ScheduleSpec

logger = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.IGNORECASE)
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MIN_INTERVAL_S = 0.01
_OFF_VALUES = {"off", "false", "0", "no", "disabled"}


class ScheduleError(ValueError):
    """A schedule setting or expression the local scheduler cannot honour."""


def rate_seconds(expression: str) -> float | None:
    """Seconds between runs for `rate(N unit)`; None for expressions that are not rates."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2).lower().rstrip("s")
    if amount <= 0:
        raise ScheduleError(f"{expression}: the rate must be positive")
    return float(amount * _UNIT_SECONDS[unit])


@dataclass(frozen=True)
class SchedulerSettings:
    enabled: bool = True
    speedup: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SchedulerSettings:
        env = os.environ if env is None else env
        enabled = env.get("LOCAL_SCHEDULES", "on").strip().lower() not in _OFF_VALUES
        raw_speedup = env.get("LOCAL_SCHEDULE_SPEEDUP", "").strip() or "1"
        try:
            speedup = float(raw_speedup)
        except ValueError as error:
            raise ScheduleError(f"LOCAL_SCHEDULE_SPEEDUP must be a number, got {raw_speedup!r}") from error
        if speedup <= 0:
            raise ScheduleError(f"LOCAL_SCHEDULE_SPEEDUP must be positive, got {raw_speedup!r}")
        return cls(enabled=enabled, speedup=speedup)


def scheduled_event(schedule: ScheduleSpec, now: datetime | None = None) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" envelope for one tick of `schedule`."""
    now = now or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": LOCAL_REGION,
        "resources": [schedule.rule_arn],
        "detail": {},
    }


def event_for_tick(schedule: ScheduleSpec) -> Any:
    if schedule.input is not None:
        return json.loads(schedule.input)
    return scheduled_event(schedule)


@dataclass(frozen=True)
class _Plan:
    schedule: ScheduleSpec
    interval_s: float


class Scheduler:
    def __init__(
        self,
        runtime: FunctionRuntime,
        schedules: list[ScheduleSpec],
        settings: SchedulerSettings | None = None,
    ):
        self.runtime = runtime
        self.settings = settings or SchedulerSettings()
        self.plans = self._plan(schedules)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self.fired: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def _plan(self, schedules: list[ScheduleSpec]) -> list[_Plan]:
        plans = []
        for schedule in schedules:
            name = f"{schedule.function_id}/{schedule.event_id}"
            if not schedule.enabled:
                logger.info("schedule %s is disabled in the template; not firing", name)
                continue
            if schedule.function_id not in self.runtime.template.functions:
                logger.warning("schedule %s targets a function not served locally; not firing", name)
                continue
            period = rate_seconds(schedule.expression)
            if period is None:
                logger.warning(
                    "schedule %s uses %s, which the local scheduler does not support (only rate(...)); "
                    "invoke %s through the invoke API instead",
                    name,
                    schedule.expression,
                    schedule.function_id,
                )
                continue
            plans.append(_Plan(schedule, max(period / self.settings.speedup, _MIN_INTERVAL_S)))
        return plans

    def describe(self) -> list[str]:
        if not self.settings.enabled:
            return ["schedules are off (LOCAL_SCHEDULES=off)"]
        return [
            f"{plan.schedule.function_id}: {plan.schedule.expression} -> every {plan.interval_s:g} s"
            for plan in self.plans
        ]

    def start(self) -> None:
        if not self.settings.enabled:
            logger.info("schedules are off (LOCAL_SCHEDULES=off)")
            return
        for plan in self.plans:
            thread = threading.Thread(
                target=self._loop,
                args=(plan,),
                name=f"schedule-{plan.schedule.function_id}-{plan.schedule.event_id}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
            logger.info(
                "schedule %s %s fires every %g s (speed-up %g)",
                plan.schedule.function_id,
                plan.schedule.expression,
                plan.interval_s,
                self.settings.speedup,
            )

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def _loop(self, plan: _Plan) -> None:
        # Like EventBridge, the first run comes one period after the schedule is created.
        next_fire = time.monotonic() + plan.interval_s
        while not self._stop.wait(max(0.0, next_fire - time.monotonic())):
            self._tick(plan)
            next_fire += plan.interval_s
            now = time.monotonic()
            if next_fire < now:
                # Fell behind (a paused laptop): do not fire a burst of catch-up runs.
                next_fire = now + plan.interval_s

    def _tick(self, plan: _Plan) -> None:
        function_id = plan.schedule.function_id
        with self._busy_lock:
            if function_id in self._busy:
                self.skipped[function_id] = self.skipped.get(function_id, 0) + 1
                logger.info("skipping a %s tick: its previous run is still going", function_id)
                return
            self._busy.add(function_id)
            self.fired[function_id] = self.fired.get(function_id, 0) + 1
        threading.Thread(target=self._run, args=(plan,), name=f"run-{function_id}", daemon=True).start()

    def _run(self, plan: _Plan) -> None:
        function_id = plan.schedule.function_id
        try:
            # EventBridge invokes asynchronously: a throttled run waits for capacity.
            result = self.runtime.invoke_event(function_id, event_for_tick(plan.schedule))
            if result.failed:
                error = result.error_payload()
                logger.warning(
                    "scheduled run of %s failed (%s: %s); the schedule continues",
                    function_id,
                    error.get("errorType"),
                    error.get("errorMessage"),
                )
        except Exception:
            logger.exception("scheduled run of %s could not be started", function_id)
        finally:
            with self._busy_lock:
                self._busy.discard(function_id)
