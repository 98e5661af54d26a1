"""The scheduled functions in the local stack: on demand through the Lambda Invoke API, and on
their template schedules (sped up)."""

import json
import time

import pytest

from tests.e2e.conftest import start_stack, stop_stack

pytestmark = pytest.mark.e2e


def invoke(stack, function_name):
    result = stack.lambda_client().invoke(FunctionName=function_name, Payload=b"{}")
    assert "FunctionError" not in result
    return json.loads(result["Payload"].read())


def wait_for_status(stack, session_id, status, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    found = None
    while time.monotonic() < deadline:
        found = stack.dynamodb_client().get_item(
            TableName="SessionsTable", Key={"session_id": {"S": session_id}}, ConsistentRead=True
        )["Item"]["status"]["S"]
        if found == status:
            return found
        time.sleep(0.3)
    return found


def test_a_lost_callback_is_fulfilled_by_invoking_reconcile(stack):
    body = stack.create({"amount": 7000}).json()
    stack.pay(body["invoice_id"], callback=False)

    # The dispatcher queues the due session; the worker, fed by the SQS event source, settles it
    summary = invoke(stack, "ReconcileFunction")

    assert summary["job"] == "reconcile"
    assert summary["outcomes"].get("queued", 0) >= 1
    assert wait_for_status(stack, body["session_id"], "PROCESSED") == "PROCESSED"
    assert len(stack.orders(body["session_id"])) == 1
    assert len(stack.events(body["session_id"])) == 1


def test_expire_and_ebarimt_run_on_demand(stack):
    assert invoke(stack, "ExpireFunction")["job"] == "expire"
    assert invoke(stack, "EbarimtFunction")["job"] == "ebarimt"


@pytest.fixture(scope="module")
def scheduled_stack():
    running = start_stack({"LOCAL_SCHEDULES": "on", "LOCAL_SCHEDULE_SPEEDUP": "60"})
    yield running
    stop_stack(running)


def test_schedules_fire_on_their_own_with_a_speed_up(scheduled_stack):
    # A one-minute rate at 60x fires every second: a lost callback is found without anyone asking.
    body = scheduled_stack.create({"amount": 3000}).json()
    scheduled_stack.pay(body["invoice_id"], callback=False)

    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        stored = scheduled_stack.dynamodb_client().get_item(
            TableName="SessionsTable", Key={"session_id": {"S": body["session_id"]}}
        )["Item"]
        status = stored["status"]["S"]
        if status == "PROCESSED":
            break
        time.sleep(0.5)

    assert status == "PROCESSED"
    assert len(scheduled_stack.orders(body["session_id"])) == 1
