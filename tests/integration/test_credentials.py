"""Secrets: the QPay credentials and the webhook keys are two Secrets Manager secrets in AWS
(through Powertools parameters) and environment variables locally; each function reads only the
one it uses."""

import json
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import pytest
from moto import mock_aws

from qpay_common import composition
from qpay_common.adapters.aws.secrets import load_qpay_credentials, load_webhook_keys
from qpay_common.domain.callback_token import callback_token, is_valid_callback_token
from qpay_common.domain.errors import ConfigurationError
from qpay_common.settings import load_settings
from tests.support import create_event, get_event, invoke, list_event, webhook_event

pytestmark = pytest.mark.integration

TABLES = {"SESSIONS_TABLE": "s", "ORDERS_TABLE": "o", "CACHE_TABLE": "c", "EVENT_BUS_NAME": "b"}


@pytest.fixture
def aws_env(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def create_secret(name, value):
    client = boto3.client("secretsmanager", region_name="us-east-1")
    return client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]


def test_in_aws_the_credentials_come_from_their_own_secret(aws_env):
    with mock_aws():
        arn = create_secret("qpay/credentials", {"client_id": "MERCHANT_1", "client_secret": "s3cret"})

        credentials = load_qpay_credentials(load_settings({**TABLES, "QPAY_SECRET_ARN": arn}), environ={})

    assert credentials.client_id == "MERCHANT_1"
    assert credentials.client_secret.get_secret_value() == "s3cret"
    # A SecretStr never prints its value, e.g. in a log line or a traceback.
    assert "s3cret" not in repr(credentials)


def test_in_aws_the_webhook_keys_come_from_theirs_and_sign_with_the_current_key(aws_env):
    with mock_aws():
        # As the template's generator writes it on create: one key, k1, current
        arn = create_secret("qpay/webhook", {"current_key_id": "k1", "k1": "first-key"})
        settings = load_settings({**TABLES, "WEBHOOK_SECRET_ARN": arn})

        keys = load_webhook_keys(settings, environ={})

    assert keys.signing_key == "first-key"
    assert keys.verification_keys == ["first-key"]
    assert "first-key" not in repr(keys)


def test_a_rotation_signs_with_the_new_key_and_still_accepts_the_old_one(aws_env):
    with mock_aws():
        arn = create_secret("qpay/webhook", {"current_key_id": "k2", "k1": "first-key", "k2": "second-key"})
        keys = load_webhook_keys(load_settings({**TABLES, "WEBHOOK_SECRET_ARN": arn}), environ={})

    assert keys.signing_key == "second-key"
    old_url_token = callback_token("first-key", "ps_1")
    assert is_valid_callback_token(keys.verification_keys, "ps_1", old_url_token)
    assert is_valid_callback_token(keys.verification_keys, "ps_1", callback_token("second-key", "ps_1"))


def test_a_webhook_secret_whose_current_key_is_missing_fails_fast_without_its_values(aws_env):
    with mock_aws():
        arn = create_secret("qpay/webhook", {"current_key_id": "k3", "k1": "first-key"})
        with pytest.raises(ConfigurationError) as error:
            load_webhook_keys(load_settings({**TABLES, "WEBHOOK_SECRET_ARN": arn}), environ={})

    assert "current_key_id" in str(error.value)
    assert "first-key" not in str(error.value)


def test_locally_they_come_from_the_environment_previous_keys_included():
    settings = load_settings(TABLES)
    environ = {
        "QPAY_CLIENT_ID": "TEST_MERCHANT",
        "QPAY_CLIENT_SECRET": "x",
        "WEBHOOK_SECRET": "now",
        "WEBHOOK_PREVIOUS_SECRETS": "before, long-ago",
    }

    assert load_qpay_credentials(settings, environ=environ).client_id == "TEST_MERCHANT"
    keys = load_webhook_keys(settings, environ=environ)
    assert keys.signing_key == "now"
    assert keys.verification_keys == ["now", "before", "long-ago"]


def test_missing_credentials_fail_fast_naming_what_is_missing():
    with pytest.raises(ConfigurationError, match="client_secret"):
        load_qpay_credentials(load_settings(TABLES), environ={"QPAY_CLIENT_ID": "x"})
    with pytest.raises(ConfigurationError, match="webhook keys"):
        load_webhook_keys(load_settings(TABLES), environ={})


def test_listing_payments_needs_no_secret_at_all(aws, sim, monkeypatch):
    # Given a session, then a function environment without any QPay credentials or webhook key,
    # as template.yaml gives ListPaymentsFunction
    invoke("create_payment", create_event({"amount": 15000}))
    for name in ("QPAY_CLIENT_ID", "QPAY_CLIENT_SECRET", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name)
    composition.reset()

    status, body = invoke("list_payments", list_event())

    assert status == 200, body
    assert len(body["items"]) == 1


def test_the_webhook_accepts_a_callback_signed_with_a_previous_key(aws, sim, monkeypatch):
    # Given an invoice created before a rotation: its URL names the key that signed it
    created = invoke("create_payment", create_event({"amount": 15000}))[1]
    sim.pay(created["invoice_id"])
    callback_url = sim.callback_url(created["invoice_id"])
    assert dict(parse_qsl(urlsplit(callback_url).query))["kid"] == "local"
    # When the key is rotated: a new current key k2, the old one kept under its id
    old_key = composition.webhook_keys().signing_key
    monkeypatch.setenv("WEBHOOK_KEY_ID", "k2")
    monkeypatch.setenv("WEBHOOK_SECRET", "rotated-key")
    monkeypatch.setenv("WEBHOOK_PREVIOUS_SECRETS", f"local:{old_key}")
    composition.reset()

    status, body = invoke("qpay_webhook", webhook_event(callback_url))

    # Then the old invoice's callback still verifies, and new invoices use the new key and name it
    assert (status, body) == (200, "SUCCESS")
    assert composition.webhook_keys().signing_key == "rotated-key"
    second = invoke("create_payment", create_event({"amount": 500}))[1]
    assert dict(parse_qsl(urlsplit(sim.callback_url(second["invoice_id"])).query))["kid"] == "k2"
    # And once the old key is dropped, its tokens are refused
    monkeypatch.delenv("WEBHOOK_PREVIOUS_SECRETS")
    composition.reset()
    assert invoke("qpay_webhook", webhook_event(callback_url))[0] == 401


def test_a_callback_naming_an_unknown_key_is_401_before_any_read_or_qpay_call(aws, sim, monkeypatch):
    created = invoke("create_payment", create_event({"amount": 15000}))[1]
    sim.pay(created["invoice_id"])
    callback_url = sim.callback_url(created["invoice_id"])
    # A valid token, but a kid the secret does not hold (a typo, or a key already dropped)
    reads: list[str] = []
    monkeypatch.setattr(
        type(composition.graph().store), "get", lambda self, session_id: reads.append(session_id)
    )

    status, body = invoke("qpay_webhook", webhook_event(callback_url, kid="k9"))

    assert status == 401, body
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert reads == []
    assert sim.calls("POST /v2/payment/check") == 0


def test_a_callback_url_from_before_key_ids_still_verifies_against_any_key(aws, sim, monkeypatch):
    # Given an open invoice whose URL was made before key ids (no kid), signed with the old key
    created = invoke("create_payment", create_event({"amount": 15000}))[1]
    sim.pay(created["invoice_id"])
    query = dict(parse_qsl(urlsplit(sim.callback_url(created["invoice_id"])).query))
    legacy_url = "http://x/webhooks/qpay?" + urlencode(
        {"session_id": query["session_id"], "token": query["token"]}
    )
    old_key = composition.webhook_keys().signing_key
    monkeypatch.setenv("WEBHOOK_KEY_ID", "k2")
    monkeypatch.setenv("WEBHOOK_SECRET", "rotated-key")
    monkeypatch.setenv("WEBHOOK_PREVIOUS_SECRETS", f"k1:{old_key}")
    composition.reset()

    assert invoke("qpay_webhook", webhook_event(legacy_url)) == (200, "SUCCESS")
    status, body = invoke("get_payment", get_event(query["session_id"]))
    assert (status, body["status"]) == (200, "PROCESSED")


@pytest.mark.parametrize(
    "kid",
    ["", "ñ" * 1000, "local ", "LOCAL", "k" * 100_000],
    ids=["empty", "non-ascii", "space", "case", "huge"],
)
def test_a_hostile_or_wrong_key_id_is_a_plain_401(aws, sim, kid):
    created = invoke("create_payment", create_event({"amount": 15000}))[1]
    sim.pay(created["invoice_id"])
    callback_url = sim.callback_url(created["invoice_id"])

    status, body = invoke("qpay_webhook", webhook_event(callback_url, kid=kid))

    assert status == 401, body
    assert body["error"]["code"] == "UNAUTHORIZED"
    # The same URL with its own kid is accepted
    assert invoke("qpay_webhook", webhook_event(callback_url)) == (200, "SUCCESS")
