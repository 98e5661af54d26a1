"""moto server as the stack runs it: the template's buses exist, every event put on them is captured in
the inspection log group, and `python -m local.inspect` reads it back."""

import json
from pathlib import Path

import pytest

from local.endpoints import free_port, local_client
from local.eventbridge import INSPECT_LOG_GROUP, MotoServer, setup_event_buses
from local.inspect import main, read_events
from local.template import create_tables, load_template

pytestmark = pytest.mark.integration

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
BUS = TEMPLATE.event_buses[0].name


@pytest.fixture(scope="module")
def moto():
    server = MotoServer(free_port())
    server.start()
    setup_event_buses(server.client("events"), server.client("logs"), TEMPLATE)
    yield server
    server.stop()


def put(moto, session_id: str, bus: str = BUS, detail_type: str = "PaymentCompleted") -> None:
    response = moto.client("events").put_events(
        Entries=[
            {
                "Source": "qpay.payments",
                "DetailType": detail_type,
                "Detail": json.dumps({"session_id": session_id, "order_id": f"ord_{session_id}"}),
                "EventBusName": bus,
            }
        ]
    )
    assert response["FailedEntryCount"] == 0


def test_template_buses_exist(moto):
    names = {bus["Name"] for bus in moto.client("events").list_event_buses()["EventBuses"]}

    assert {bus.name for bus in TEMPLATE.event_buses} <= names


def test_events_on_any_bus_are_captured_with_their_envelope(moto):
    put(moto, "ps_bus")
    put(moto, "ps_default", bus="default", detail_type="SomethingElse")

    captured = read_events(moto.endpoint_url)

    by_session = {event["detail"]["session_id"]: event for event in captured}
    assert by_session["ps_bus"]["detail-type"] == "PaymentCompleted"
    assert by_session["ps_bus"]["source"] == "qpay.payments"
    assert by_session["ps_bus"]["account"] == "123456789012"
    assert by_session["ps_bus"]["detail"]["order_id"] == "ord_ps_bus"
    assert "ingestion-time" not in by_session["ps_bus"]
    assert by_session["ps_default"]["detail-type"] == "SomethingElse"
    assert [
        event["detail"]["session_id"] for event in read_events(moto.endpoint_url, session_id="ps_bus")
    ] == ["ps_bus"]


def test_the_inspection_log_group_exists(moto):
    groups = moto.client("logs").describe_log_groups(logGroupNamePrefix=INSPECT_LOG_GROUP)["logGroups"]

    assert [group["logGroupName"] for group in groups] == [INSPECT_LOG_GROUP]


def test_inspect_cli_prints_events_and_a_session(moto, monkeypatch, capsys):
    # moto also serves DynamoDB: point both addresses of the inspection tool at it.
    port = str(moto.port)
    monkeypatch.setenv("LOCAL_MOTO_PORT", port)
    monkeypatch.setenv("LOCAL_DYNAMODB_PORT", port)
    dynamodb = local_client("dynamodb", moto.endpoint_url)
    create_tables(dynamodb, TEMPLATE)
    dynamodb.put_item(
        TableName="SessionsTable",
        Item={
            "session_id": {"S": "ps_cli"},
            "status": {"S": "PROCESSED"},
            "order_id": {"S": "ord_ps_cli"},
            "qr_image": {"S": "A" * 5000},
        },
    )
    dynamodb.put_item(
        TableName="OrdersTable", Item={"pk": {"S": "order#ord_ps_cli"}, "session_id": {"S": "ps_cli"}}
    )
    put(moto, "ps_cli")

    assert main(["events", "--session", "ps_cli"]) == 0
    events_output = capsys.readouterr()
    assert main(["session", "ps_cli"]) == 0
    session_output = capsys.readouterr().out

    assert '"session_id": "ps_cli"' in events_output.out
    assert "1 event(s)" in events_output.err
    assert '"status": "PROCESSED"' in session_output
    assert '"pk": "order#ord_ps_cli"' in session_output
    assert "orders for this session: 1" in session_output
    assert "events for this session: 1" in session_output
    assert "(5000 characters)" in session_output
    assert main(["session", "ps_missing"]) == 1


def test_inspect_cli_explains_when_the_stack_is_not_running(monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_MOTO_PORT", str(free_port()))

    assert main(["events"]) == 2
    assert "make run" in capsys.readouterr().err


def test_completed_and_refunded_reach_the_merchant_queue_through_the_template_rule(moto):
    from local.event_delivery import setup_event_rules
    from local.sqs import create_queues

    # Given the template's queues and rules on the local buses
    sqs = moto.client("sqs")
    create_queues(sqs, TEMPLATE)
    setup_event_rules(moto.client("events"), sqs, TEMPLATE)
    url = sqs.get_queue_url(QueueName="MerchantEventsQueue")["QueueUrl"]

    # When an order is completed, then refunded (and some other event happens)
    put(moto, "ps_merchant", detail_type="PaymentCompleted")
    put(moto, "ps_merchant", detail_type="PaymentRefunded")
    put(moto, "ps_merchant", detail_type="SomethingElse")

    # Then the merchant's queue gets both, the same order_id, told apart by detail-type
    received = []
    for _ in range(5):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        received += [json.loads(message["Body"]) for message in batch]
        if len(received) >= 2:
            break
    assert sorted((event["detail-type"], event["detail"]["order_id"]) for event in received) == [
        ("PaymentCompleted", "ord_ps_merchant"),
        ("PaymentRefunded", "ord_ps_merchant"),
    ]
