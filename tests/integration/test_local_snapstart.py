"""SnapStart in the local runtime: a SnapStart function's first environment initialises and is
the snapshot; every later one starts from it (its `random` state included, as a restored snapshot
has), runs the after-restore hooks, and reports a Restore Duration instead of an Init Duration.
And the application's own hooks: restored environments draw their own random numbers, and a
restored environment's first request builds no SDK client."""

import logging
import os

import pytest

from local.endpoints import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY
from local.functions import FunctionRuntime
from local.template import load_template
from tests.support import ROOT, sample_event

pytestmark = pytest.mark.integration

PLAIN = """\
import os
import random

from snapshot_restore_py import register_after_restore, register_before_snapshot

HOOKS = []
register_before_snapshot(HOOKS.append, "before snapshot")
register_after_restore(HOOKS.append, "after restore")


def lambda_handler(event, context):
    return {"random": random.random(), "hooks": HOOKS, "pid": os.getpid(),
            "initialization": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""
WITH_APP_HOOKS = """\
import random

from qpay_common import snapstart

snapstart.register([])


def lambda_handler(event, context):
    return {"random": random.random()}
"""
TEMPLATE = f"""\
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: {ROOT / "layers" / "qpay_common"}
  PlainFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: plain/
      Handler: app.lambda_handler
      AutoPublishAlias: live
      SnapStart: {{ApplyOn: PublishedVersions}}
  HookedFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hooked/
      Handler: app.lambda_handler
      Layers: [!Ref Layer]
      AutoPublishAlias: live
      SnapStart: {{ApplyOn: PublishedVersions}}
"""


def environments(runtime, function_id, count):
    """`count` environments of the function, started now; the newest serves the next call."""
    pool = runtime.pool(function_id)
    started = []
    for index in range(count):
        environment = pool.make_environment()
        environment.initialise(f"start-{index}")
        started.append(environment)
    return started


def serve_by(runtime, function_id, environment, event=None):
    runtime.pool(function_id).add_idle(environment)
    return runtime.invoke(function_id, event or {})


@pytest.fixture
def runtime(tmp_path):
    for name, code in (("plain", PLAIN), ("hooked", WITH_APP_HOOKS)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(code)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    started = FunctionRuntime(load_template(tmp_path / "template.yaml"))
    yield started
    started.stop()


def test_later_environments_are_restored_from_the_first_and_report_a_restore_duration(runtime, caplog):
    caplog.set_level(logging.INFO, logger="local.functions")
    first, second, third = environments(runtime, "PlainFunction", 3)

    results = [serve_by(runtime, "PlainFunction", environment) for environment in (first, second, third)]

    values = [result.value for result in results]
    assert len({value["pid"] for value in values}) == 3
    # The first environment initialised: before-snapshot hooks only, an Init Duration
    assert values[0]["hooks"] == ["before snapshot"]
    assert results[0].init_duration_ms is not None
    assert results[0].restore_duration_ms is None
    # The others were restored: after-restore hooks too, a Restore Duration and no Init Duration
    for restored in results[1:]:
        assert restored.value["hooks"] == ["before snapshot", "after restore"]
        assert restored.init_duration_ms is None
        assert restored.restore_duration_ms > 0
    # Without a reseed, every environment resumes the snapshot's generator: the same draws
    assert values[1]["random"] == values[2]["random"] == values[0]["random"]
    assert {value["initialization"] for value in values} == {"snap-start"}
    reports = [
        record.getMessage() for record in caplog.records if "PlainFunction REPORT" in record.getMessage()
    ]
    assert "Init Duration: " in reports[0]
    assert all("Restore Duration: " in report and "Init Duration" not in report for report in reports[1:])
    assert all("Billed Restore Duration: " in report for report in reports[1:])


def test_the_applications_after_restore_hook_gives_each_restored_environment_its_own_random_numbers(runtime):
    _, second, third = environments(runtime, "HookedFunction", 3)

    draws = [
        serve_by(runtime, "HookedFunction", environment).value["random"] for environment in (second, third)
    ]

    assert draws[0] != draws[1]


def test_a_dead_snapshot_is_made_again_and_its_first_environment_initialises(runtime):
    (first,) = environments(runtime, "PlainFunction", 1)
    runtime.pool("PlainFunction").add_idle(first)
    runtime.invoke("PlainFunction", {})
    first.snapshot.stop()
    first.kill()

    again = runtime.invoke("PlainFunction", {})

    assert again.init_duration_ms is not None
    assert again.value["hooks"] == ["before snapshot"]


def test_a_restored_environments_first_request_builds_no_sdk_client(dynamodb_local):
    # Given the real GetPaymentFunction of template.yaml, served by the local runtime
    template = load_template(ROOT / "template.yaml")
    function = template.functions["GetPaymentFunction"]
    environment = {
        **os.environ,
        **function.environment,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local,
        "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "QPAY_BASE_URL": "http://127.0.0.1:9/v2",
        "QPAY_SECRET_ARN": "",
        "QPAY_CLIENT_ID": "x",
        "QPAY_CLIENT_SECRET": "x",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    runtime = FunctionRuntime(template, environment_for=lambda spec: environment)
    try:
        _, restored = environments(runtime, "GetPaymentFunction", 2)

        # When a restored environment serves its first request (a session that does not exist)
        result = serve_by(runtime, "GetPaymentFunction", restored, sample_event("get_payment"))
    finally:
        runtime.stop()

    # Then it read DynamoDB with the client built before the snapshot, and built none itself
    assert result.value["statusCode"] == 404, result.value
    assert result.restore_duration_ms is not None
    assert (
        "dynamodb:GetItem",
        "arn:aws:dynamodb:us-east-1:123456789012:table/SessionsTable",
    ) in result.aws_calls
    assert result.clients_created == 0
