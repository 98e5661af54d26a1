"""One DynamoDB client per execution environment: every table model, the transactions' connection
and the cache share it (pynamodb would build a session and client for each, ~0.1-0.2 s apiece on
a cold start), with the limits each of them had before."""

import threading

import pytest

from qpay_common.adapters.aws import clients as aws_clients
from qpay_common.adapters.aws.events import EventBridgePublisher
from qpay_common.adapters.dynamodb.cache import DynamoDBCache
from qpay_common.adapters.dynamodb.session_store import DynamoDBSessionStore
from qpay_common.settings import load_settings

pytestmark = pytest.mark.unit

SETTINGS = {
    "SESSIONS_TABLE": "sessions",
    "ORDERS_TABLE": "orders",
    "CACHE_TABLE": "cache",
    "EVENT_BUS_NAME": "bus",
    "AWS_REGION": "ap-east-1",
    "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_EVENTBRIDGE": "http://127.0.0.1:10",
}


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit")
    aws_clients.reset()
    yield
    aws_clients.reset()


def test_every_table_model_and_the_transactions_use_one_client_with_the_same_limits():
    settings = load_settings(SETTINGS)
    repository = DynamoDBSessionStore(settings)
    cache = DynamoDBCache(settings)

    clients = {
        id(repository._sessions._get_connection().connection.client),
        id(repository._orders._get_connection().connection.client),
        id(repository._connection.client),
        id(cache._items._get_connection().connection.client),
        id(DynamoDBCache(settings)._items._get_connection().connection.client),
    }

    assert len(clients) == 1
    client = repository._connection.client
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "ap-east-1"
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    assert config.max_pool_connections == 32
    assert config.retries == {"total_max_attempts": 4, "mode": "standard"}


def test_the_event_bus_client_has_its_own_endpoint_and_timeouts():
    settings = load_settings(SETTINGS)

    events = EventBridgePublisher(settings)._events()

    assert events.meta.service_model.service_name == "events"
    assert events.meta.endpoint_url == "http://127.0.0.1:10"
    assert (events.meta.config.connect_timeout, events.meta.config.read_timeout) == (2, 5)
    assert events is EventBridgePublisher(settings)._events()


def test_threads_asking_at_once_get_the_same_client():
    settings = load_settings(SETTINGS)
    start_line = threading.Barrier(16)
    seen: list[int] = []

    def ask() -> None:
        start_line.wait()
        seen.append(id(aws_clients.dynamodb_client(settings)))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 16
    assert len(set(seen)) == 1


def test_other_endpoints_get_other_clients_and_reset_forgets_them():
    first = aws_clients.dynamodb_client(load_settings(SETTINGS))
    other = aws_clients.dynamodb_client(
        load_settings({**SETTINGS, "AWS_ENDPOINT_URL_DYNAMODB": "http://x:1"})
    )

    assert other is not first
    assert aws_clients.dynamodb_client(load_settings(SETTINGS)) is first
    aws_clients.reset()
    assert aws_clients.dynamodb_client(load_settings(SETTINGS)) is not first


def test_secrets_are_read_through_a_client_with_timeouts_and_bounded_retries():
    from botocore.stub import Stubber

    from qpay_common.adapters.aws.secrets import load_qpay_credentials

    arn = "arn:aws:secretsmanager:ap-east-1:123456789012:secret:qpay-AbCdEf"
    settings = load_settings({**SETTINGS, "QPAY_SECRET_ARN": arn})
    client = aws_clients.secretsmanager_client(settings)
    config = client.meta.config
    # Not the SDK's 60 s defaults: a cold start's secret read cannot outlast the request
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert client.meta.region_name == "ap-east-1"

    with Stubber(client) as stubbed:
        stubbed.add_response(
            "get_secret_value",
            {"SecretString": '{"client_id": "MERCHANT_1", "client_secret": "s3cret"}'},
            {"SecretId": arn},
        )
        credentials = load_qpay_credentials(settings, environ={})
        stubbed.assert_no_pending_responses()

    assert credentials.client_id == "MERCHANT_1"


def test_the_reconcile_queues_client_has_timeouts_and_bounded_retries():
    from qpay_common.adapters.aws.sqs import SQSReconcileQueues

    sqs = SQSReconcileQueues(load_settings(SETTINGS))._sqs()

    assert (sqs.meta.config.connect_timeout, sqs.meta.config.read_timeout) == (2, 5)
    assert sqs.meta.config.retries["mode"] == "standard"
