"""Handlers run in process: loaded per function without shadowing, with layers on the path, and with
Lambda's failure modes (import error, exception, timeout) reported instead of crashing the stack."""

import sys
import textwrap
from pathlib import Path

import pytest

from local.functions import FunctionRuntime, module_name_for
from local.template import load_template

pytestmark = pytest.mark.unit

TEMPLATE = """\
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/shared/
  FirstFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/first/
      Handler: app.lambda_handler
      Timeout: 1
      Layers: [!Ref Shared]
  SecondFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/second/
      Handler: app.lambda_handler
      Timeout: 1
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/broken/
      Handler: app.lambda_handler
  MissingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/missing/
      Handler: app.lambda_handler
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def runtime(tmp_path):
    # A layer module both functions could use, and two functions whose modules are both app.py.
    write(
        tmp_path / "layers" / "shared" / "shared_layer_for_local_tests.py",
        "GREETING = 'hello from the layer'\n",
    )
    write(
        tmp_path / "lambdas" / "first" / "app.py",
        """\
        import time
        import shared_layer_for_local_tests

        def lambda_handler(event, context):
            if event.get("sleep"):
                time.sleep(event["sleep"])
            if event.get("fail"):
                raise ValueError("first failed")
            return {"function": "first", "layer": shared_layer_for_local_tests.GREETING}
        """,
    )
    write(
        tmp_path / "lambdas" / "second" / "app.py",
        """\
        def lambda_handler(event, context):
            return {"function": "second", "name": __name__}
        """,
    )
    write(tmp_path / "lambdas" / "broken" / "app.py", "raise ImportError('no module named nonsense')\n")
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    loaded = FunctionRuntime(load_template(tmp_path / "template.yaml"))
    failures = loaded.load_all()
    yield loaded, failures
    for name in [name for name in sys.modules if name.startswith("lambdas.")]:
        del sys.modules[name]


def test_each_function_gets_its_own_module(runtime):
    loaded, _ = runtime

    first = loaded.invoke("FirstFunction", {})
    second = loaded.invoke("SecondFunction", {})

    assert first.value == {"function": "first", "layer": "hello from the layer"}
    assert second.value == {"function": "second", "name": "lambdas.second.app"}


def test_module_names_come_from_the_code_folder():
    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    function = template.functions["CreatePaymentFunction"]

    assert module_name_for(function, template.root) == "functions.create_payment.app"


def test_import_failures_are_reported_per_function_not_fatal(runtime):
    loaded, failures = runtime

    assert set(failures) == {"BrokenFunction", "MissingFunction"}
    broken = loaded.invoke("BrokenFunction", {})
    missing = loaded.invoke("MissingFunction", {})

    assert broken.failed
    assert broken.error_payload()["errorType"] == "Runtime.ImportModuleError"
    assert "nonsense" in broken.error_payload()["errorMessage"]
    assert missing.error_payload()["errorType"] == "Runtime.ImportModuleError"
    assert loaded.invoke("SecondFunction", {}).value["function"] == "second"


def test_a_fixed_import_is_picked_up_on_the_next_invocation(runtime, tmp_path):
    loaded, _ = runtime
    write(
        tmp_path / "lambdas" / "broken" / "app.py",
        "def lambda_handler(event, context):\n    return 'fixed'\n",
    )

    assert loaded.invoke("BrokenFunction", {}).value == "fixed"


def test_handler_exception_becomes_lambda_error_document(runtime):
    loaded, _ = runtime

    result = loaded.invoke("FirstFunction", {"fail": True})

    payload = result.error_payload()
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "first failed"
    assert any("lambda_handler" in frame for frame in payload["stackTrace"])
    assert payload["requestId"] == result.request_id


def test_a_handler_past_its_wait_is_reported_as_timed_out(runtime):
    loaded, _ = runtime

    result = loaded.invoke("FirstFunction", {"sleep": 0.5}, wait_s=0.1)

    assert result.timed_out
    assert result.error_payload()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out" in result.error_payload()["errorMessage"]


@pytest.mark.parametrize(
    ("requested", "resolved"),
    [
        ("SecondFunction", "SecondFunction"),
        ("SecondFunction:$LATEST", "SecondFunction"),
        ("arn:aws:lambda:us-east-1:123456789012:function:SecondFunction", "SecondFunction"),
        ("arn:aws:lambda:us-east-1:123456789012:function:SecondFunction:live", "SecondFunction"),
        ("123456789012:function:SecondFunction", "SecondFunction"),
        ("Nope", None),
    ],
)
def test_function_names_resolve_like_lambda(runtime, requested, resolved):
    loaded, _ = runtime

    assert loaded.resolve_function_name(requested) == resolved
