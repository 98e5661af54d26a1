"""`make invoke` and the env-vars file for `sam local invoke`, against the running local stack."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.endpoints import free_port
from local.template import load_template
from tests.support import EVENTS, ROOT, TEMPLATE

# Which function each file of events/ is for.
EVENT_FUNCTIONS = {
    "admin": "AdminFunction",
    "cancel_payment": "CancelPaymentFunction",
    "checkout": "CheckoutFunction",
    "checkout_asset": "CheckoutFunction",
    "create_payment": "CreatePaymentFunction",
    "ebarimt": "EbarimtFunction",
    "expire": "ExpireFunction",
    "get_payment": "GetPaymentFunction",
    "list_payments": "ListPaymentsFunction",
    "openapi": "OpenApiFunction",
    "qpay_webhook_get": "QPayWebhookFunction",
    "qpay_webhook_post": "QPayWebhookFunction",
    "reconcile": "ReconcileFunction",
    "reconcile_worker": "ReconcileWorkerFunction",
}


def worker_environments(stack_pid: int) -> dict[str, dict[str, str]]:
    """The environment each running execution environment (a worker process of the stack) was
    started with, by function: what the handlers read."""
    found: dict[str, dict[str, str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != stack_pid or b"lambda_worker.py" not in (proc / "cmdline").read_bytes():
                continue
            raw = (proc / "environ").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        variables = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        found[variables["AWS_LAMBDA_FUNCTION_NAME"]] = variables
    return found


def invoke(stack, function: str, event: Path, port: int | None = None) -> subprocess.CompletedProcess[str]:
    port = port or int(stack.invoke.rsplit(":", 1)[1])
    return subprocess.run(
        [sys.executable, "-m", "local.invoke", function, str(event)],
        cwd=ROOT,
        env={**os.environ, "LOCAL_INVOKE_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_event_file_has_its_function_and_every_function_an_event():
    functions = set(load_template(TEMPLATE).functions)

    assert {path.stem for path in EVENTS.glob("*.json")} == set(EVENT_FUNCTIONS)
    assert set(EVENT_FUNCTIONS.values()) == functions


def test_the_sam_env_file_gives_each_function_what_its_local_workers_get(stack):
    # Given the file the stack wrote and the environments its workers run with (one per function
    # is started with the stack)
    files = json.loads(stack.sam_env_file.read_text())
    workers = worker_environments(stack.process.pid)
    template = load_template(TEMPLATE)

    assert set(files) == set(template.functions)
    assert set(workers) == set(template.functions)
    for function_id, variables in files.items():
        worker = workers[function_id]
        # Then every variable the template declares for the function is there, with the worker's value
        assert set(variables) == set(template.functions[function_id].environment), function_id
        for name, value in variables.items():
            assert worker.get(name) == value, (function_id, name)
        # And what points it at the local parts is among them: tables, DynamoDB Local, the bus
        # on moto, the simulator, local credentials instead of Secrets Manager
        assert variables["AWS_ENDPOINT_URL_DYNAMODB"].startswith("http://127.0.0.1:")
        assert variables["AWS_ENDPOINT_URL_EVENTBRIDGE"] == stack.moto
        assert variables["QPAY_BASE_URL"] == f"{stack.sim}/v2"
        assert variables["SESSIONS_TABLE"]
        assert variables["QPAY_CLIENT_ID"] == "TEST_MERCHANT"
        assert variables.get("QPAY_SECRET_ARN", "") == ""


@pytest.mark.parametrize("event_name", sorted(EVENT_FUNCTIONS))
def test_make_invoke_returns_the_functions_answer_for_each_event_file(stack, event_name):
    # When one event file is invoked through the stack's runtime
    finished = invoke(stack, EVENT_FUNCTIONS[event_name], EVENTS / f"{event_name}.json")

    # Then the function answered (not a Lambda error) with what the function answers
    assert finished.returncode == 0, finished.stdout + finished.stderr
    answer = json.loads(finished.stdout)
    if "statusCode" in answer:
        assert 200 <= answer["statusCode"] < 500, answer
    else:
        assert isinstance(answer, dict), answer


def test_make_invoke_says_plainly_when_there_is_no_such_function_or_no_stack(stack, tmp_path):
    event = EVENTS / "reconcile.json"

    missing = invoke(stack, "NoSuchFunction", event)
    assert missing.returncode == 2
    assert "no function NoSuchFunction" in missing.stderr

    unreadable = invoke(stack, "ReconcileFunction", tmp_path / "absent.json")
    assert unreadable.returncode == 2
    assert "cannot read the event" in unreadable.stderr

    no_stack = invoke(stack, "ReconcileFunction", event, port=free_port())
    assert no_stack.returncode == 2
    assert "make run" in no_stack.stderr
