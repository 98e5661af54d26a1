"""What the stack printed while the fuzzer and the hostile-input table ran: a client's mistake
is an INFO line with its status, never a stack trace and never a 5xx."""

import re
import time

import pytest
import requests

pytestmark = pytest.mark.after_the_contract_suite

FRONT_DOOR_STATUS = re.compile(r"local\.front_door: .* -> (\d{3}) \(")
STACK_TRACE_MARKERS = ("Traceback (most recent call last)", '"exception_name"', '"stack_trace"')


def _wait_for_the_log_to_catch_up(stack) -> None:
    # The stack's output is read by a thread; a last request marks the end of this run's lines.
    marker = f"/contract-suite-done-{time.monotonic_ns()}"
    requests.get(stack.api + marker, timeout=10)
    deadline = time.monotonic() + 10
    while not any(marker in line for line in list(stack.output)):
        assert time.monotonic() < deadline, "the stack never logged the last request"
        time.sleep(0.1)


def test_no_line_the_stack_printed_holds_a_stack_trace_or_a_server_error(stack):
    _wait_for_the_log_to_catch_up(stack)
    lines = list(stack.output)
    statuses = [int(match.group(1)) for line in lines if (match := FRONT_DOOR_STATUS.search(line))]

    # Given hundreds of client errors were sent (the check below would pass vacuously otherwise)
    assert sum(400 <= status < 500 for status in statuses) > 300
    # Then none of them left a trace, and nothing was answered with a 5xx.
    traces = [line for line in lines if any(marker in line for marker in STACK_TRACE_MARKERS)]
    assert traces == []
    assert [status for status in statuses if status >= 500] == []
