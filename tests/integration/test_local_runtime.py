"""The local Lambda runtime: each execution environment is a worker process that serves one
invocation at a time, as in AWS. Cold and warm starts, per-environment module state, timeouts that
kill, crashes that are replaced, import errors, throttling at the concurrency limit, idle retirement,
and no worker left behind."""

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from local.functions import FunctionRuntime, RuntimeSettings, Throttled
from local.template import load_template
from tests.support import ROOT

pytestmark = pytest.mark.integration

TEMPLATE = """\
Globals:
  Function:
    Timeout: 5
    MemorySize: 256
    Environment: {Variables: {SHARED: from-globals}}
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/shared/
  CounterFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/counter/
      Handler: app.lambda_handler
      Layers: [!Ref Shared]
      Environment: {Variables: {MODE: counting}}
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/other/
      Handler: app.lambda_handler
      Environment: {Variables: {MODE: other}}
  SleepyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/counter/
      Handler: app.lambda_handler
      Layers: [!Ref Shared]
      Timeout: 1
  SingleFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/counter/
      Handler: app.lambda_handler
      Layers: [!Ref Shared]
      ReservedConcurrentExecutions: 1
  DisabledFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/counter/
      Handler: app.lambda_handler
      Layers: [!Ref Shared]
      ReservedConcurrentExecutions: 0
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/broken/
      Handler: app.lambda_handler
  MissingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/missing/
      Handler: app.lambda_handler
"""

COUNTER = """\
import os
import sys
import time

import shared_layer_for_local_tests

INVOCATIONS = [0]


def lambda_handler(event, context):
    INVOCATIONS[0] += 1
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError("counter failed")
    if event.get("exit") is not None:
        os._exit(event["exit"])
    if event.get("unserializable"):
        return {1, 2}
    return {
        "count": INVOCATIONS[0],
        "pid": os.getpid(),
        "layer": shared_layer_for_local_tests.GREETING,
        "mode": os.environ.get("MODE"),
        "shared": os.environ.get("SHARED"),
        "function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "cwd": os.getcwd(),
        "repo_on_path": any(entry == REPO_ROOT for entry in sys.path),
    }
"""

OTHER = """\
import os


def lambda_handler(event, context):
    return {"mode": os.environ.get("MODE"), "pid": os.getpid(), "name": __name__}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def build(tmp_path: Path, settings: RuntimeSettings | None = None) -> FunctionRuntime:
    layer_module = tmp_path / "layers" / "shared" / "shared_layer_for_local_tests.py"
    write(layer_module, "GREETING = 'from the layer'\n")
    write(tmp_path / "lambdas" / "counter" / "app.py", COUNTER.replace("REPO_ROOT", repr(str(ROOT))))
    write(tmp_path / "lambdas" / "other" / "app.py", OTHER)
    write(tmp_path / "lambdas" / "broken" / "app.py", "raise ImportError('no module named nonsense')\n")
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return FunctionRuntime(load_template(tmp_path / "template.yaml"), settings=settings or RuntimeSettings())


@pytest.fixture
def runtime(tmp_path):
    built = build(tmp_path)
    yield built
    built.stop()


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def in_parallel(*calls):
    results: list = [None] * len(calls)

    def run(index, call):
        results[index] = call()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_each_function_runs_with_its_own_code_layers_and_variables(runtime):
    counter = runtime.invoke("CounterFunction", {})
    other = runtime.invoke("OtherFunction", {})

    assert counter.value["layer"] == "from the layer"
    assert (counter.value["mode"], other.value["mode"]) == ("counting", "other")
    assert counter.value["shared"] == "from-globals"
    assert counter.value["function_name"] == "CounterFunction"
    # Lambda's layout: the code folder is the working directory and the handler is `app`
    assert counter.value["cwd"].endswith("lambdas/counter")
    assert other.value["name"] == "app"
    # The repository is not on the path: an import Lambda could not satisfy fails here too
    assert counter.value["repo_on_path"] is False
    assert counter.value["pid"] != other.value["pid"] != os.getpid()
    assert 0 < counter.value["remaining_ms"] <= 5000


def test_module_state_belongs_to_one_environment(runtime):
    # When two invocations run at the same time
    first, second = in_parallel(
        lambda: runtime.invoke("CounterFunction", {"sleep": 0.5}),
        lambda: runtime.invoke("CounterFunction", {"sleep": 0.5}),
    )

    # Then each ran in an environment of its own, with its own module-level counter
    assert first.value["pid"] != second.value["pid"]
    assert first.value["count"] == second.value["count"] == 1
    assert first.cold_start
    assert second.cold_start

    # And a later, sequential invocation reuses a warm one and sees its state
    third = runtime.invoke("CounterFunction", {})
    assert third.value["pid"] in {first.value["pid"], second.value["pid"]}
    assert third.value["count"] == 2
    assert not third.cold_start
    assert runtime.pool("CounterFunction").size == 2


def test_the_report_line_carries_init_duration_on_cold_starts_only(runtime, caplog):
    with caplog.at_level(logging.INFO, logger="local.functions"):
        cold = runtime.invoke("CounterFunction", {})
        warm = runtime.invoke("CounterFunction", {})

    reports = [record.getMessage() for record in caplog.records if " REPORT " in record.getMessage()]
    assert len(reports) == 2
    assert f"RequestId: {cold.request_id}" in reports[0]
    assert "Init Duration: " in reports[0]
    assert f"RequestId: {warm.request_id}" in reports[1]
    assert "Init Duration" not in reports[1]
    for report in reports:
        assert "Billed Duration: " in report
        assert "Memory Size: 256 MB" in report
        assert "Max Memory Used: " in report
    assert cold.init_duration_ms is not None
    assert cold.init_duration_ms > 0
    assert warm.init_duration_ms is None


def test_a_handler_past_its_timeout_is_killed_and_replaced(runtime, caplog):
    # Given a warm environment of a function with a 1 s timeout
    before = runtime.invoke("SleepyFunction", {})
    old_pid = before.value["pid"]

    # When an invocation sleeps past the timeout
    with caplog.at_level(logging.INFO, logger="local.functions"):
        timed_out = runtime.invoke("SleepyFunction", {"sleep": 30})

    # Then the caller gets Lambda's timeout error, after the timeout and not the sleep
    assert timed_out.timed_out
    assert timed_out.error_payload()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in timed_out.error_payload()["errorMessage"]
    assert f"{timed_out.request_id} Task timed out after 1.00 seconds" in caplog.text
    assert "Status: timeout" in caplog.text
    # And the process that ran it is gone
    assert wait_until(lambda: process_gone(old_pid))

    # And the next invocation succeeds in a fresh environment (a cold start, state reset)
    after = runtime.invoke("SleepyFunction", {})
    assert after.value["pid"] != old_pid
    assert after.value["count"] == 1
    assert after.cold_start


def test_a_worker_that_exits_is_a_runtime_exit_error_and_is_replaced(runtime):
    crashed = runtime.invoke("CounterFunction", {"exit": 3})

    assert crashed.failed
    assert crashed.error_payload()["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in crashed.error_payload()["errorMessage"]
    assert runtime.pool("CounterFunction").size == 0
    assert runtime.invoke("CounterFunction", {}).value["count"] == 1


def test_a_handler_exception_is_the_runtime_error_document_and_the_environment_stays(runtime, capfd):
    first = runtime.invoke("CounterFunction", {})
    failed = runtime.invoke("CounterFunction", {"fail": True})

    payload = failed.error_payload()
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "counter failed"
    assert payload["requestId"] == failed.request_id
    assert any("lambda_handler" in frame for frame in payload["stackTrace"])
    # The function's log (the worker's stderr) has the runtime's [ERROR] line and traceback
    assert "[ERROR] ValueError: counter failed" in capfd.readouterr().err
    # A handled exception does not cost the environment
    assert runtime.invoke("CounterFunction", {}).value["pid"] == first.value["pid"]


def test_an_unserializable_result_is_a_marshal_error(runtime):
    result = runtime.invoke("CounterFunction", {"unserializable": True})

    assert result.error_payload()["errorType"] == "Runtime.MarshalError"


def test_import_failures_are_reported_and_a_fix_is_picked_up(runtime, tmp_path):
    # When every function is pre-warmed
    failures = runtime.prewarm()

    # Then the broken ones are named and the others are warm
    assert set(failures) == {"BrokenFunction", "MissingFunction"}
    assert "nonsense" in failures["BrokenFunction"]
    assert runtime.pool("OtherFunction").size == 1
    broken = runtime.invoke("BrokenFunction", {})
    assert broken.error_payload()["errorType"] == "Runtime.ImportModuleError"
    assert "nonsense" in broken.error_payload()["errorMessage"]
    assert runtime.invoke("MissingFunction", {}).error_payload()["errorType"] == "Runtime.ImportModuleError"

    # And once the code is fixed, the next invocation imports it in a new environment
    fixed = "def lambda_handler(event, context):\n    return 'fixed'\n"
    write(tmp_path / "lambdas" / "broken" / "app.py", fixed)
    assert runtime.invoke("BrokenFunction", {}).value == "fixed"


def test_a_prewarmed_environment_reports_its_init_on_its_first_invocation(runtime):
    runtime.prewarm()

    first = runtime.invoke("OtherFunction", {})
    second = runtime.invoke("OtherFunction", {})

    assert first.cold_start
    assert not second.cold_start
    assert first.value["pid"] == second.value["pid"]


def test_beyond_reserved_concurrency_a_synchronous_call_is_throttled(runtime):
    # Given the only environment of a function with ReservedConcurrentExecutions: 1 busy
    busy = threading.Thread(target=runtime.invoke, args=("SingleFunction", {"sleep": 1.0}))
    busy.start()
    assert wait_until(lambda: runtime.pool("SingleFunction").size == 1)
    time.sleep(0.2)

    # When a second synchronous invocation arrives
    with pytest.raises(Throttled) as throttled:
        runtime.invoke("SingleFunction", {})

    # Then it is refused the way Lambda refuses it, and no second environment exists
    assert throttled.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert runtime.pool("SingleFunction").size == 1
    # While an asynchronous one waits for the environment and then runs in it
    queued = runtime.invoke_event("SingleFunction", {})
    busy.join()
    assert queued.value["count"] == 2


def test_reserved_concurrency_zero_throttles_everything(runtime):
    with pytest.raises(Throttled):
        runtime.invoke("DisabledFunction", {})


def test_the_default_limit_applies_to_functions_without_a_reservation(tmp_path):
    runtime = build(tmp_path, RuntimeSettings.from_env({"LOCAL_LAMBDA_CONCURRENCY": "2"}))
    try:
        busy = [
            threading.Thread(target=runtime.invoke, args=("CounterFunction", {"sleep": 1.0}))
            for _ in range(2)
        ]
        for thread in busy:
            thread.start()
        assert wait_until(lambda: runtime.pool("CounterFunction").size == 2)
        time.sleep(0.2)
        with pytest.raises(Throttled) as throttled:
            runtime.invoke("CounterFunction", {})
        assert throttled.value.reason == "ConcurrentInvocationLimitExceeded"
        for thread in busy:
            thread.join()
    finally:
        runtime.stop()


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_concurrency_setting_is_refused(value):
    with pytest.raises(ValueError, match="LOCAL_LAMBDA_CONCURRENCY"):
        RuntimeSettings.from_env({"LOCAL_LAMBDA_CONCURRENCY": value})


def test_a_caller_that_stops_waiting_does_not_stop_the_invocation(runtime):
    # When the caller waits less than the handler runs (API Gateway's integration timeout)
    gave_up = runtime.invoke("CounterFunction", {"sleep": 0.6}, wait_s=0.1)

    # Then the caller hears of a timeout, while the environment finishes its work and stays warm
    assert gave_up.timed_out
    assert wait_until(lambda: len(runtime.pool("CounterFunction")._idle) == 1)
    assert runtime.invoke("CounterFunction", {}).value["count"] == 2


def test_idle_environments_are_retired(tmp_path):
    runtime = build(tmp_path, RuntimeSettings(idle_seconds=0.3))
    try:
        pid = runtime.invoke("OtherFunction", {}).value["pid"]

        assert wait_until(lambda: runtime.pool("OtherFunction").size == 0, timeout_s=5)
        assert wait_until(lambda: process_gone(pid))
        assert runtime.invoke("OtherFunction", {}).cold_start
    finally:
        runtime.stop()


def test_stop_kills_busy_and_idle_workers(tmp_path):
    runtime = build(tmp_path)
    idle_pid = runtime.invoke("OtherFunction", {}).value["pid"]
    busy = threading.Thread(target=runtime.invoke, args=("CounterFunction", {"sleep": 30}))
    busy.start()
    assert wait_until(lambda: len(runtime.pool("CounterFunction").environments()) == 1)
    busy_pid = runtime.pool("CounterFunction").environments()[0].pid

    runtime.stop()
    busy.join(timeout=5)

    assert not busy.is_alive()
    assert process_gone(idle_pid)
    assert process_gone(busy_pid)


def test_workers_do_not_outlive_a_stack_that_is_killed(tmp_path):
    # Given a process that runs the runtime, has a busy worker, and then dies without cleanup
    build(tmp_path).stop()
    script = textwrap.dedent(
        f"""
        import os, sys, threading, time
        sys.path[:0] = [{str(ROOT)!r}]
        from local.functions import FunctionRuntime, RuntimeSettings
        from local.template import load_template
        template = load_template({str(tmp_path / "template.yaml")!r})
        runtime = FunctionRuntime(template, settings=RuntimeSettings())
        call = ("CounterFunction", {{"sleep": 60}})
        threading.Thread(target=runtime.invoke, args=call, daemon=True).start()
        while not runtime.pool("CounterFunction").environments():
            time.sleep(0.05)
        time.sleep(0.5)
        print(runtime.pool("CounterFunction").environments()[0].pid, flush=True)
        os._exit(9)
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    worker_pid = int(json.loads(output.stdout.strip().splitlines()[-1]))

    # Then its worker notices and exits within a couple of seconds
    assert wait_until(lambda: process_gone(worker_pid), timeout_s=5)
