"""What the handlers tell CloudWatch beyond their own metrics: a ColdStart count on an execution
environment's first invocation (the dashboard's cold starts; a SnapStart restore is one too)."""

import json

import pytest
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.metrics.provider import cold_start

from qpay_common.http.resolver import http_handler
from tests.support import LambdaContext, sample_event

pytestmark = pytest.mark.unit


def cold_start_lines(output: str) -> list[dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    return [line for line in lines if "ColdStart" in line]


def test_the_first_invocation_of_an_environment_counts_one_cold_start(capsys, monkeypatch):
    router = Router()

    @router.get("/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    handler = http_handler(router)
    event = sample_event("get_payment")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/ping"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /ping"
    # A fresh environment, as after a cold init or a restore from a snapshot
    monkeypatch.setattr(cold_start, "is_cold_start", True)
    capsys.readouterr()

    first = handler(event, LambdaContext(function_name="qpay-GetPaymentFunction-abc"))
    second = handler(event, LambdaContext(function_name="qpay-GetPaymentFunction-abc"))

    assert first["statusCode"] == second["statusCode"] == 200
    [line] = cold_start_lines(capsys.readouterr().out)
    assert line["function_name"] == "qpay-GetPaymentFunction-abc"
    assert line["service"] == "qpay-payments"
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "QPayPayments"
