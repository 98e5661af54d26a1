"""The events on the payments bus match the JSON Schemas in docs/events, which consumers (and
the merchant's API destination) code against. The events are the ones EventBridgePublisher really puts
on the bus, for sessions the use cases really fulfilled and refunded."""

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from qpay_common.adapters.aws.events import PAYMENT_COMPLETED, PAYMENT_REFUNDED, SOURCE, EventBridgePublisher
from tests.fakes import World, unit_settings
from tests.support import ROOT

pytestmark = pytest.mark.unit

SCHEMAS = ROOT / "docs" / "events"


def validator(detail_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{detail_type}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


class RecordingEvents:
    """Stands in for the boto3 events client: keeps each PutEvents entry."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in Entries]}


def emitted(world: World) -> list[dict[str, Any]]:
    """What EventBridgePublisher puts on the bus for every event the world's flows published, in the
    shape EventBridge delivers (source, detail-type, detail) to rules and API destinations."""
    recorder = RecordingEvents()
    publisher = EventBridgePublisher(unit_settings())
    publisher._client = recorder
    for session, order in world.publisher.published:
        publisher.payment_completed(session, order)
    for session, refund in world.publisher.refunds:
        publisher.payment_refunded(session, refund)
    assert {entry["Source"] for entry in recorder.entries} == {SOURCE}
    return [
        {"source": entry["Source"], "detail-type": entry["DetailType"], "detail": json.loads(entry["Detail"])}
        for entry in recorder.entries
    ]


@pytest.fixture
def world() -> World:
    world = World()
    # A plain payment, one with line items and nested metadata, and a refunded card payment
    world.processed(15000)
    world.processed(
        3000,
        items=[{"name": "Tea", "quantity": 2, "unit_price": 1500}],
        metadata={"cart": {"id": "c-1", "lines": [{"sku": "tea"}]}, "channel": "web"},
    )
    refunded = world.processed(9000, payment_type="CARD")
    world.refunds.refund("ops-1", refunded.session_id, note="returned")
    return world


def test_every_event_the_code_emits_matches_its_schema(world):
    events = emitted(world)

    assert [event["detail-type"] for event in events] == [PAYMENT_COMPLETED] * 3 + [PAYMENT_REFUNDED]
    for event in events:
        errors = [error.message for error in validator(event["detail-type"]).iter_errors(event)]
        assert errors == [], event["detail-type"]


def test_the_schema_lists_every_field_the_code_emits_and_requires_them(world):
    # additionalProperties is false: a field added to adapters/aws/events.py without the schema fails here
    for event in emitted(world):
        schema = json.loads((SCHEMAS / f"{event['detail-type']}.schema.json").read_text())
        detail = schema["$defs"]["detail"]
        assert set(event["detail"]) == set(detail["properties"]) == set(detail["required"])


def test_the_dedupe_key_is_the_order_id_the_same_on_every_delivery(world):
    # A republish (or an archive replay) delivers the same order_id again
    first = [event for event in emitted(world) if event["detail-type"] == PAYMENT_COMPLETED]
    again = [event for event in emitted(world) if event["detail-type"] == PAYMENT_COMPLETED]
    assert [event["detail"]["order_id"] for event in first] == [
        event["detail"]["order_id"] for event in again
    ]
    assert len({event["detail"]["order_id"] for event in first}) == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", "15000"), ("amount", 1.5), ("currency", "USD"), ("order_id", None), ("paid_at", "yesterday")],
)
def test_the_schema_refuses_what_a_consumer_could_not_trust(world, field, value):
    event = emitted(world)[0]
    event["detail"][field] = value
    assert not validator(PAYMENT_COMPLETED).is_valid(event)
