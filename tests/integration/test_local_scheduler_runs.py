"""Schedules of template.yaml firing through the local runtime, as EventBridge would: rates with a
speed-up, the EventBridge payload, no overlapping runs of one function, failures that do not stop
the schedule."""

import itertools
import json
import logging
import time
from pathlib import Path

import pytest

from local.functions import FunctionRuntime
from local.scheduler import Scheduler, SchedulerSettings
from local.template import load_template

pytestmark = pytest.mark.integration

HANDLER = """\
import json
import time
from pathlib import Path

LOG = Path({log!r})


def lambda_handler(event, context):
    started = time.time()
    time.sleep({sleep})
    with LOG.open("a") as log:
        log.write(json.dumps({{"event": event, "started": started, "ended": time.time()}}) + "\\n")
    if {fail}:
        raise RuntimeError("scheduled run failed")
"""

TEMPLATE = """\
Resources:
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ticks/{name}/
      Handler: app.lambda_handler
      Events:
        EveryMinute:
          Type: Schedule
          Properties: {{Schedule: rate(1 minute)}}
        Nightly:
          Type: Schedule
          Properties: {{Schedule: "cron(0 3 * * ? *)"}}
        Paused:
          Type: Schedule
          Properties: {{Schedule: rate(1 minute), Enabled: false}}
"""


@pytest.fixture
def make_runtime(tmp_path: Path):
    runtimes: list[FunctionRuntime] = []

    def make(*, sleep: float = 0.0, fail: bool = False) -> tuple[FunctionRuntime, Path]:
        name = tmp_path.name.replace("-", "_")
        log = tmp_path / "runs.jsonl"
        code = tmp_path / "ticks" / name
        code.mkdir(parents=True)
        (code / "app.py").write_text(HANDLER.format(log=str(log), sleep=sleep, fail=fail))
        (tmp_path / "template.yaml").write_text(TEMPLATE.format(name=name))
        runtime = FunctionRuntime(load_template(tmp_path / "template.yaml"))
        # Warm, so the first tick does not spend its period starting a worker.
        runtime.prewarm()
        runtimes.append(runtime)
        return runtime, log

    yield make
    for runtime in runtimes:
        runtime.stop()


def runs(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run_for(scheduler: Scheduler, seconds: float) -> None:
    scheduler.start()
    time.sleep(seconds)
    scheduler.stop()


def test_a_sped_up_rate_fires_with_the_scheduled_event_payload(make_runtime, caplog):
    # Given a one-minute schedule, a cron schedule and a disabled one, sped up 600 times
    runtime, log = make_runtime()
    with caplog.at_level(logging.INFO):
        scheduler = Scheduler(runtime, runtime.template.schedules, SchedulerSettings(speedup=600))

    # When the scheduler runs for a little over half a second
    run_for(scheduler, 0.55)

    # Then only the rate schedule fired, every 0.1 s, with EventBridge's payload
    fired = runs(log)
    assert 3 <= len(fired) <= 6
    event = fired[0]["event"]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["version"] == "0"
    assert event["account"] == "123456789012"
    assert event["region"] == "us-east-1"
    assert event["detail"] == {}
    assert event["resources"] == [
        "arn:aws:events:us-east-1:123456789012:rule/qpay-local-TickFunctionEveryMinute"
    ]
    assert event["time"].endswith("Z")
    assert len({run["event"]["id"] for run in fired}) == len(fired)
    # And the cron schedule was reported as not supported
    assert "cron(0 3 * * ? *)" in caplog.text


def test_a_tick_is_skipped_while_the_previous_run_is_still_going(make_runtime):
    runtime, log = make_runtime(sleep=0.25)
    scheduler = Scheduler(runtime, runtime.template.schedules, SchedulerSettings(speedup=1200))

    run_for(scheduler, 0.6)
    time.sleep(0.3)

    assert scheduler.skipped["TickFunction"] >= 2
    fired = sorted(runs(log), key=lambda run: run["started"])
    assert len(fired) >= 2
    assert all(later["started"] >= earlier["ended"] for earlier, later in itertools.pairwise(fired))


def test_failing_runs_do_not_stop_the_schedule(make_runtime, caplog):
    runtime, log = make_runtime(fail=True)
    scheduler = Scheduler(runtime, runtime.template.schedules, SchedulerSettings(speedup=1200))

    run_for(scheduler, 0.4)

    assert len(runs(log)) >= 3
    assert "scheduled run failed" in caplog.text


def test_schedules_off_fires_nothing(make_runtime):
    runtime, log = make_runtime()
    scheduler = Scheduler(runtime, runtime.template.schedules, SchedulerSettings(enabled=False, speedup=1200))

    run_for(scheduler, 0.2)

    assert runs(log) == []
