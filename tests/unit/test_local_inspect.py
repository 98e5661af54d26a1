"""`make inspect`: what a person sees of a session, its order and its events, against moto in process
(tables from template.yaml; buses wired to the inspection log group as the stack wires them)."""

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local.eventbridge import setup_event_buses
from local.inspect import orders_for_session, read_events, session_report
from local.template import create_tables, load_template

pytestmark = pytest.mark.unit

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
BUS = TEMPLATE.event_buses[0].name
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "local", "aws_secret_access_key": "local"}


@pytest.fixture
def aws():
    with mock_aws():
        dynamodb = boto3.client("dynamodb", **CREDENTIALS)
        events = boto3.client("events", **CREDENTIALS)
        logs = boto3.client("logs", **CREDENTIALS)
        create_tables(dynamodb, TEMPLATE)
        setup_event_buses(events, logs, TEMPLATE)
        yield dynamodb, events, logs


def put_payment_completed(events, session_id: str, order_id: str) -> None:
    detail = {"session_id": session_id, "order_id": order_id, "amount": 15000}
    response = events.put_events(
        Entries=[
            {
                "Source": "qpay.payments",
                "DetailType": "PaymentCompleted",
                "Detail": json.dumps(detail),
                "EventBusName": BUS,
            }
        ]
    )
    assert response["FailedEntryCount"] == 0


def seed_paid_session(dynamodb, session_id: str, order_id: str) -> None:
    dynamodb.put_item(
        TableName="SessionsTable",
        Item={"session_id": {"S": session_id}, "status": {"S": "PROCESSED"}, "order_id": {"S": order_id}},
    )
    dynamodb.put_item(
        TableName="OrdersTable",
        Item={"pk": {"S": f"order#{order_id}"}, "session_id": {"S": session_id}, "amount": {"N": "15000"}},
    )
    # A settlement marker names the session too, but is not an order.
    dynamodb.put_item(
        TableName="OrdersTable",
        Item={"pk": {"S": "settlement#pay-1"}, "session_id": {"S": session_id}},
    )


def test_events_put_on_the_bus_are_read_back_as_full_envelopes(aws):
    _, events, logs = aws

    put_payment_completed(events, "ps_1", "ord_1")
    put_payment_completed(events, "ps_2", "ord_2")

    captured = read_events(logs)
    assert [event["detail"]["session_id"] for event in captured] == ["ps_1", "ps_2"]
    envelope = captured[0]
    assert envelope["source"] == "qpay.payments"
    assert envelope["detail-type"] == "PaymentCompleted"
    assert envelope["account"] == "123456789012"
    assert envelope["region"] == "us-east-1"
    assert envelope["id"]
    assert envelope["time"].endswith("Z")
    assert [event["detail"]["order_id"] for event in read_events(logs, session_id="ps_2")] == ["ord_2"]


def test_wiring_the_buses_twice_delivers_each_event_once(aws):
    _, events, logs = aws
    setup_event_buses(events, logs, TEMPLATE)

    put_payment_completed(events, "ps_1", "ord_1")

    assert len(read_events(logs)) == 1


def test_session_report_shows_the_session_its_order_and_events(aws):
    dynamodb, events, logs = aws
    seed_paid_session(dynamodb, "ps_1", "ord_1")
    put_payment_completed(events, "ps_1", "ord_1")

    report = session_report(dynamodb, logs, "ps_1")

    assert report["session"]["status"] == "PROCESSED"
    assert report["order"]["amount"] == 15000
    assert report["orders_for_session"] == 1
    assert [event["detail-type"] for event in report["events"]] == ["PaymentCompleted"]
    assert [order["pk"] for order in orders_for_session(dynamodb, "ps_1")] == ["order#ord_1"]
    assert orders_for_session(dynamodb, "ps_other") == []
