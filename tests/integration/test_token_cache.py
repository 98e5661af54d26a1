"""The QPay token shared through the cache table, against DynamoDB Local (real conditional writes)
and the simulator over HTTP."""

import threading
import time
from datetime import UTC, datetime

import pytest

from local.endpoints import local_client
from qpay_common.adapters.dynamodb.cache import DynamoDBCache
from qpay_common.adapters.qpay.client import QPayAuthClient, QPayClient, QPayTransport
from qpay_common.adapters.qpay.models import InvoiceRequest
from qpay_common.adapters.qpay.token_cache import TOKEN_KEY, QPayTokenProvider
from qpay_common.settings import load_settings
from tests.fakes import FixedClock

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(dynamodb_local, simulator, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    client = local_client("dynamodb", dynamodb_local)
    for key in (TOKEN_KEY, "lock#token"):
        client.delete_item(TableName="CacheTable", Key={"pk": {"S": key}})
    return load_settings(
        {
            "SESSIONS_TABLE": "SessionsTable",
            "ORDERS_TABLE": "OrdersTable",
            "CACHE_TABLE": "CacheTable",
            "EVENT_BUS_NAME": "bus",
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local,
            "QPAY_BASE_URL": f"{simulator.base_url}/v2",
        }
    )


def cold_lambda(settings):
    """What one freshly started Lambda builds: its own HTTP session, its own provider."""
    transport = QPayTransport(
        settings.qpay_base_url, connect_timeout=3, read_timeout=10, max_attempts=3, budget_seconds=20
    )
    return QPayTokenProvider(
        DynamoDBCache(settings), QPayAuthClient(transport, "TEST_MERCHANT", "sim-secret")
    ), transport


def test_fifty_cold_lambdas_asking_at_once_cause_one_token_fetch(settings, sim):
    providers = [cold_lambda(settings)[0] for _ in range(50)]
    barrier = threading.Barrier(50)
    tokens, errors = [], []

    def ask(provider):
        barrier.wait()
        try:
            tokens.append(provider.get_token())
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(provider,)) for provider in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(tokens) == 50
    assert len(set(tokens)) == 1
    assert sim.calls("POST /v2/auth/token") == 1


def test_a_cached_token_is_reused_across_lambdas(settings, sim):
    first = cold_lambda(settings)[0].get_token()
    second = cold_lambda(settings)[0].get_token()

    assert first == second
    assert sim.calls("POST /v2/auth/token") == 1


def test_a_duration_expires_in_is_understood_and_refreshed_60_s_early(settings, sim):
    sim.faults({"path": "/v2/auth/token", "expires_in": "duration"})
    provider = cold_lambda(settings)[0]
    provider.get_token()
    stored = DynamoDBCache(settings).get(TOKEN_KEY)
    assert stored is not None
    expires_at = stored[0]["access_expires_at"]
    # 3600 s read as a duration: about an hour from now, not 1970.
    assert time.time() + 3500 < expires_at < time.time() + 3700

    just_before_expiry = FixedClock(datetime.fromtimestamp(expires_at - 30, UTC))
    later = QPayTokenProvider(
        DynamoDBCache(settings, clock=just_before_expiry),
        QPayAuthClient(cold_lambda(settings)[1], "TEST_MERCHANT", "sim-secret"),
        clock=just_before_expiry,
    )
    later.get_token()

    # Inside the 60 s margin the token is renewed, through /auth/refresh first.
    assert sim.calls("POST /v2/auth/refresh") + sim.calls("POST /v2/auth/token") == 2


def test_a_revoked_token_is_dropped_and_the_call_retried_once(settings, sim):
    provider, transport = cold_lambda(settings)
    client = QPayClient(transport, provider)
    stale = provider.get_token()
    sim.post("/_sim/tokens/expire")

    invoice = client.create_invoice(
        InvoiceRequest(
            invoice_code="TEST_INVOICE",
            sender_invoice_no="ps_revoked_token_test",
            invoice_description="d",
            amount=100,
            callback_url="http://127.0.0.1:3000/webhooks/qpay",
        )
    )

    assert invoice.invoice_id
    assert provider.get_token() != stale
    assert sim.calls("POST /v2/invoice") == 2  # refused once with 401, then accepted
