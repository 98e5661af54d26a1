"""AWS's faults and killed execution environments in the local stack, and what the payment flow
makes of them: DynamoDB transaction conflicts on the writes of every function, environments killed
while QPay's callbacks arrive, and a create killed mid-invocation retried with its Idempotency-Key."""

import json
import time
import uuid

import pytest
import requests

from tests.e2e.conftest import start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    running = start_stack()
    yield running
    stop_stack(running)


@pytest.fixture
def faults(stack):
    """faults(rules) sets the stack's faults while it runs (PUT /_local/aws-faults); cleared after."""

    def set_rules(rules):
        response = requests.put(f"{stack.invoke}/_local/aws-faults", json=rules, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["rules"]

    yield set_rules
    requests.delete(f"{stack.invoke}/_local/aws-faults", timeout=10)


def invoke(stack, function_name):
    result = stack.lambda_client().invoke(FunctionName=function_name, Payload=b"{}")
    assert "FunctionError" not in result
    return json.loads(result["Payload"].read())


def stored(stack, session_id):
    item = stack.dynamodb_client().get_item(
        TableName="SessionsTable", Key={"session_id": {"S": session_id}}, ConsistentRead=True
    )
    return item.get("Item", {})


def create(stack, body, key=None):
    headers = {**stack.headers(), **({"Idempotency-Key": key} if key else {})}
    return requests.post(f"{stack.api}/payments", json=body, headers=headers, timeout=60)


def reconcile_until_settled(stack, session_ids, timeout_s=90):
    """Reconcile runs, as EventBridge would start them, until every session is PROCESSED (time
    is moved on: a session due later is made due now); the statuses then."""
    deadline = time.monotonic() + timeout_s
    while True:
        items = {session_id: stored(stack, session_id) for session_id in session_ids}
        statuses = {session_id: item["status"]["S"] for session_id, item in items.items()}
        if set(statuses.values()) == {"PROCESSED"} or time.monotonic() > deadline:
            return statuses
        for session_id, item in items.items():
            if "reconcile_shard" in item:
                stack.dynamodb_client().update_item(
                    TableName="SessionsTable",
                    Key={"session_id": {"S": session_id}},
                    UpdateExpression="SET next_check_at = :now",
                    ExpressionAttributeValues={":now": {"N": str(int(time.time()) - 1)}},
                )
        invoke(stack, "ReconcileFunction")
        time.sleep(1)


def assert_fulfilled_once(stack, session_id):
    """One order, and PaymentCompleted for that one order: at least once by design (a publisher
    killed after publishing and before recording it publishes again), deduplicated by order_id."""
    [order] = stack.orders(session_id)
    events = stack.events(session_id)
    assert events, session_id
    assert {event["detail"]["order_id"] for event in events} == {order["order_id"]}
    assert {event["detail-type"] for event in events} == {"PaymentCompleted"}


def test_a_malformed_fault_spec_is_refused_at_start_and_by_the_control_route(stack):
    with pytest.raises(RuntimeError) as refused:
        start_stack({"LOCAL_AWS_FAULTS": '[{"service": "dynamodb", "fault": "Meltdown"}]'})
    assert "LOCAL_AWS_FAULTS: fault rule 1: fault must be one of" in str(refused.value)

    for rules, says in (
        ([{"fault": "Throttling", "rate": 2}], "rate must be a number from 0 to 1"),
        ([{"fault": "Throttling", "function": "NoSuchFunction"}], "no function 'NoSuchFunction'"),
        ([{"fault": "PartialFailure", "service": "dynamodb"}], "PartialFailure applies to"),
        ({"fault": "Kill"}, "a JSON list of rules"),
    ):
        response = requests.put(f"{stack.invoke}/_local/aws-faults", json=rules, timeout=10)
        assert response.status_code == 400
        assert says in response.json()["error"]
    assert requests.get(f"{stack.invoke}/_local/aws-faults", timeout=10).json() == {"rules": []}


def test_transaction_conflicts_on_every_write_never_make_a_5xx_and_each_payment_is_fulfilled_once(
    stack, faults
):
    faults(
        [
            {"service": "dynamodb", "operation": "UpdateItem", "fault": "TransactionConflict", "rate": 0.3},
            {
                "service": "dynamodb",
                "operation": "TransactWriteItems",
                "fault": "TransactionConflict",
                "rate": 0.3,
            },
        ]
    )
    created = []
    for number in range(12):
        response = create(stack, {"amount": 1000 + number}, key=str(uuid.uuid4()))
        assert response.status_code == 201, response.text
        created.append(response.json())

    callbacks = [stack.pay(body["invoice_id"])["callback"]["status"] for body in created]
    polls = [
        requests.get(
            f"{stack.api}/payments/{body['session_id']}", headers=stack.headers(), timeout=30
        ).status_code
        for body in created
    ]

    assert callbacks == [200] * len(created)
    assert polls == [200] * len(created)
    statuses = reconcile_until_settled(stack, [body["session_id"] for body in created])
    assert set(statuses.values()) == {"PROCESSED"}
    for body in created:
        assert_fulfilled_once(stack, body["session_id"])


def test_environments_killed_while_callbacks_arrive_lose_no_payment_and_fulfil_none_twice(stack, faults):
    created = [stack.create({"amount": 2000 + number}).json() for number in range(8)]
    faults([{"function": "QPayWebhookFunction", "fault": "Kill", "rate": 0.5}])

    answers = [stack.pay(body["invoice_id"])["callback"]["status"] for body in created]
    faults([])

    assert any(status != 200 for status in answers), answers  # some callbacks met a killed environment
    statuses = reconcile_until_settled(stack, [body["session_id"] for body in created])
    assert set(statuses.values()) == {"PROCESSED"}
    for body in created:
        assert_fulfilled_once(stack, body["session_id"])


def test_a_create_killed_mid_invocation_is_finished_by_a_retry_with_the_same_key(stack, faults):
    key = f"order-{uuid.uuid4()}"
    body = {"amount": 4321, "description": "killed mid-create"}
    # QPay is slow to answer the invoice call, and the environment dies while it waits.
    requests.post(
        f"{stack.sim}/_sim/faults",
        json={"rules": [{"path": "/v2/invoice", "delay_ms": 2000, "times": 1}]},
        timeout=10,
    ).raise_for_status()
    faults([{"function": "CreatePaymentFunction", "fault": "Kill", "rate": 1.0}])

    first = create(stack, body, key)
    faults([])
    again = create(stack, body, key)

    assert first.status_code >= 500
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    wait_s = int(again.headers["Retry-After"])
    assert 1 <= wait_s <= 32  # the killed invocation's deadline (29 s timeout) and a little slack
    time.sleep(wait_s)
    finished = create(stack, body, key)
    replayed = create(stack, body, key)

    assert finished.status_code == 201, finished.text
    assert replayed.status_code == 200
    assert replayed.json()["session_id"] == finished.json()["session_id"]
    assert stored(stack, finished.json()["session_id"])["status"]["S"] == "PENDING"
    # QPay went on with the killed call's invoice after its caller died (the simulator, like a
    # server, finishes a request whose client is gone), so the retry found that session id taken
    # at QPay and created under a new one. The client only ever received one invoice's QR; the
    # other names a session that does not exist, and is logged for an operator (QPay offers no
    # lookup by sender_invoice_no, so it cannot be cancelled by id).
    invoices = requests.get(f"{stack.sim}/_sim/invoices", timeout=10).json()["invoices"]
    mine = [invoice for invoice in invoices if invoice["invoice_description"] == "killed mid-create"]
    assert finished.json()["invoice_id"] in [invoice["invoice_id"] for invoice in mine]
    orphans = [invoice for invoice in mine if invoice["invoice_id"] != finished.json()["invoice_id"]]
    assert len(orphans) <= 1
    for orphan in orphans:
        assert stored(stack, orphan["sender_invoice_no"]) == {}
        assert any("QPay holds an invoice of a create that died" in line for line in stack.output)


def test_a_create_throttled_past_every_retry_is_a_503_to_repeat_and_the_repeat_succeeds(stack, faults):
    key = f"order-{uuid.uuid4()}"
    faults([{"function": "CreatePaymentFunction", "operation": "writes", "fault": "Throttling", "rate": 1.0}])

    refused = create(stack, {"amount": 777}, key)
    faults([])
    repeated = create(stack, {"amount": 777}, key)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert repeated.status_code == 201, repeated.text
    assert any("[AWS FAULT] Throttling on dynamodb PutItem" in line for line in stack.output)
