"""IAM per function, end to end: the stack started from a copy of template.yaml that lacks actions
two flows need; each flow fails as it would in AWS, with AccessDeniedException naming the action.
(Every other e2e test runs with the template's real policies, checked on every call.)"""

import re
import time
import uuid

import pytest
import requests

from tests.e2e.conftest import start_stack, stop_stack
from tests.support import ROOT

pytestmark = pytest.mark.e2e


def logged(stack, text, timeout_s=10.0):
    """The stack's output once `text` is in it (its lines reach the test a moment later)."""
    deadline = time.monotonic() + timeout_s
    while text not in "\n".join(stack.output) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = "\n".join(stack.output)
    assert text in log
    return log


def without(text, resource, action, instead):
    """`text` with `action` replaced in `resource`'s section only (up to the next resource)."""
    start = text.index(f"\n  {resource}:\n")
    end = re.search(r"\n  [A-Za-z]+:\n", text[start + 1 :])
    stop = start + 1 + end.start() if end else len(text)
    block = text[start:stop]
    assert action in block, (resource, action)
    return text[:start] + block.replace(action, instead) + text[stop:]


@pytest.fixture(scope="module")
def lacking():
    text = (ROOT / "template.yaml").read_text()
    text = without(text, "ListPaymentsFunction", "Action: dynamodb:Query", "Action: dynamodb:GetItem")
    text = without(text, "QPayWebhookFunction", "Action: events:PutEvents", "Action: events:DescribeEventBus")
    # Beside template.yaml, so its CodeUri and ContentUri paths hold
    copy = ROOT / f".template-iam-{uuid.uuid4().hex[:8]}.yaml"
    copy.write_text(text)
    try:
        running = start_stack({"LOCAL_SCHEDULES": "off"}, template=copy)
    finally:
        copy.unlink()
    yield running
    stop_stack(running)


def test_a_flow_whose_policy_lacks_an_action_fails_with_access_denied_naming_it(lacking):
    # Listing needs dynamodb:Query on the by_user index
    listed = requests.get(f"{lacking.api}/payments", headers=lacking.headers(), timeout=30)

    assert listed.status_code == 500
    log = logged(
        lacking,
        "ListPaymentsFunction AccessDenied: dynamodb:Query on "
        "arn:aws:dynamodb:us-east-1:123456789012:table/SessionsTable/index/by_user",
    )
    assert "AccessDeniedException" in log
    assert "because no identity-based policy allows the dynamodb:Query action" in log


def test_a_paid_callback_cannot_publish_without_events_put_events_and_the_session_stays_paid(lacking):
    created = lacking.create({"amount": 2500}).json()

    lacking.pay(created["invoice_id"])

    # The order is written, PaymentCompleted is refused, so the session waits in PAID for a retry
    session = lacking.dynamodb_client().get_item(
        TableName="SessionsTable", Key={"session_id": {"S": created["session_id"]}}, ConsistentRead=True
    )["Item"]
    assert session["status"]["S"] == "PAID"
    assert lacking.events(created["session_id"]) == []
    assert "QPayWebhookFunction AccessDenied: events:PutEvents on" in logged(
        lacking, "QPayWebhookFunction AccessDenied: events:PutEvents on"
    )
