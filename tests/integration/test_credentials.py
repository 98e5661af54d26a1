"""QPay credentials: Secrets Manager in AWS (through Powertools parameters), environment locally."""

import json

import boto3
import pytest
from moto import mock_aws

from qpay_common.credentials import load_credentials
from qpay_common.errors import ConfigurationError
from qpay_common.settings import load_settings

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


def test_in_aws_the_credentials_come_from_the_stacks_secret(aws_env):
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="qpay/credentials",
            SecretString=json.dumps(
                {"client_id": "MERCHANT_1", "client_secret": "s3cret", "webhook_secret": "hmac-key"}
            ),
        )["ARN"]

        credentials = load_credentials(load_settings({**TABLES, "QPAY_SECRET_ARN": arn}), environ={})

    assert credentials.client_id == "MERCHANT_1"
    assert credentials.client_secret.get_secret_value() == "s3cret"
    assert credentials.webhook_secret.get_secret_value() == "hmac-key"
    # A SecretStr never prints its value, e.g. in a log line or a traceback.
    assert "s3cret" not in repr(credentials)


def test_locally_they_come_from_the_environment():
    credentials = load_credentials(
        load_settings(TABLES),
        environ={"QPAY_CLIENT_ID": "TEST_MERCHANT", "QPAY_CLIENT_SECRET": "x", "WEBHOOK_SECRET": "y"},
    )

    assert credentials.client_id == "TEST_MERCHANT"


def test_missing_credentials_fail_fast_naming_what_is_missing():
    with pytest.raises(ConfigurationError, match="client_secret"):
        load_credentials(load_settings(TABLES), environ={"QPAY_CLIENT_ID": "x", "WEBHOOK_SECRET": "y"})
