"""A function's environment under `make run`: template < local wiring < the user's shell, and AWS
settings always forced local, so a real account is unreachable whatever the shell holds."""

from pathlib import Path

import boto3
import pytest

from local.endpoints import LocalPorts
from local.environment import build_function_environment
from local.template import load_template

pytestmark = pytest.mark.unit

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
CREATE = TEMPLATE.functions["CreatePaymentFunction"]
PORTS = LocalPorts(api=3000, invoke=3001, dynamodb=8000, moto=5000, simulator=3100)

REAL_LOOKING_SHELL = {
    "HOME": "/home/alice",
    "SESSION_EXPIRY_MINUTES": "1",
    "EBARIMT_ENABLED": "false",
    "QPAY_BASE_URL": "http://127.0.0.1:9999/v2",
    "AWS_ACCESS_KEY_ID": "AKIAREALACCOUNTKEY00",
    "AWS_SECRET_ACCESS_KEY": "real-secret",
    "AWS_SESSION_TOKEN": "real-session",
    "AWS_PROFILE": "production",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ENDPOINT_URL_S3": "https://s3.eu-west-1.amazonaws.com",
    "AWS_ENDPOINT_URL_DYNAMODB": "https://dynamodb.eu-west-1.amazonaws.com",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
}


def test_template_values_then_local_wiring_then_shell():
    environment = build_function_environment(CREATE, PORTS, REAL_LOOKING_SHELL)

    # From the template
    assert environment["SESSIONS_TABLE"] == "SessionsTable"
    assert environment["EVENT_BUS_NAME"] == "qpay-local-payments"
    # Local wiring replaces the template's AWS-only values
    assert environment["QPAY_SECRET_ARN"] == ""
    assert environment["PUBLIC_BASE_URL"] == "http://127.0.0.1:3000"
    assert environment["QPAY_CLIENT_ID"] == "TEST_MERCHANT"
    assert environment["WEBHOOK_SECRET"] == "local-webhook-secret"
    assert environment["POWERTOOLS_TRACE_DISABLED"] == "true"
    # And the user's shell wins over both
    assert environment["SESSION_EXPIRY_MINUTES"] == "1"
    assert environment["EBARIMT_ENABLED"] == "false"
    assert environment["QPAY_BASE_URL"] == "http://127.0.0.1:9999/v2"
    assert environment["HOME"] == "/home/alice"


def test_without_shell_overrides_the_simulator_is_the_qpay_base_url():
    environment = build_function_environment(CREATE, PORTS, {})

    assert environment["QPAY_BASE_URL"] == "http://127.0.0.1:3100/v2"
    assert environment["SESSION_EXPIRY_MINUTES"] == "30"


def test_aws_credentials_region_and_endpoints_are_always_local():
    environment = build_function_environment(CREATE, PORTS, REAL_LOOKING_SHELL)

    assert environment["AWS_ACCESS_KEY_ID"] == "local"
    assert environment["AWS_SECRET_ACCESS_KEY"] == "local"
    assert environment["AWS_REGION"] == environment["AWS_DEFAULT_REGION"] == "us-east-1"
    assert environment["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:8000"
    assert environment["AWS_ENDPOINT_URL_EVENTBRIDGE"] == "http://127.0.0.1:5000"
    assert environment["AWS_ENDPOINT_URL_EVENTS"] == "http://127.0.0.1:5000"
    assert environment["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == "http://127.0.0.1:5000"
    assert environment["AWS_ENDPOINT_URL_SSM"] == "http://127.0.0.1:5000"
    for removed in (
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_S3",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    ):
        assert removed not in environment


def test_sdk_clients_built_by_handlers_can_only_reach_local_endpoints(monkeypatch):
    # Given the environment an execution environment of the stack starts with
    monkeypatch.setattr("os.environ", build_function_environment(CREATE, PORTS, REAL_LOOKING_SHELL))

    # When handler code creates clients the ordinary way
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb")
    events = session.client("events")
    s3 = session.client("s3")

    # Then they point at DynamoDB Local and moto with the fake key, never at AWS
    assert dynamodb.meta.endpoint_url == "http://127.0.0.1:8000"
    assert events.meta.endpoint_url == "http://127.0.0.1:5000"
    assert s3.meta.endpoint_url == "http://127.0.0.1:5000"
    assert dynamodb.meta.region_name == "us-east-1"
    assert session.get_credentials().access_key == "local"
    assert session.get_credentials().token is None


def test_each_function_gets_only_its_own_template_variables(tmp_path):
    # Given two functions that set the same variable differently
    path = tmp_path / "template.yaml"
    path.write_text(
        """\
Resources:
  A:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: a/, Handler: app.handler, Environment: {Variables: {MODE: fast}}}
  B:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: b/, Handler: app.handler, Environment: {Variables: {MODE: slow}}}
"""
    )
    template = load_template(path)

    # When their environments are built, as their worker processes get them
    first = build_function_environment(template.functions["A"], PORTS, {})
    second = build_function_environment(template.functions["B"], PORTS, {})

    # Then each sees its own value, as in Lambda
    assert (first["MODE"], second["MODE"]) == ("fast", "slow")
