"""The front door and the Lambda Invoke API over real HTTP: what curl, requests, boto3 and the AWS CLI
see. Handlers come from a temporary template; servers listen on free ports."""

import http.client
import json
import socket
import textwrap
import threading
import time

import boto3
import pytest
import requests
from botocore.config import Config

from local.dev_token import mint_token
from local.endpoints import free_port
from local.front_door import FrontDoor
from local.functions import FunctionRuntime
from local.jwt_auth import JwtSettings
from local.lambda_invoke import LambdaInvokeApi
from local.template import load_template

pytestmark = pytest.mark.integration

SETTINGS = JwtSettings(secret="servers-secret", issuer="servers-issuer", audience="servers-audience")

TEMPLATE = """\
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: servers/echo/
      Handler: app.lambda_handler
      Timeout: 2
      Events:
        Echo: {Type: HttpApi, Properties: {Path: /echo, Method: POST, Auth: {Authorizer: NONE}}}
        Private:
          Type: HttpApi
          Properties: {Path: /private, Method: GET, Auth: {Authorizer: Jwt}}
  FailingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: servers/failing/
      Handler: app.lambda_handler
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: servers/slow/
      Handler: app.lambda_handler
      Timeout: 1
  SingleFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: servers/single/
      Handler: app.lambda_handler
      ReservedConcurrentExecutions: 1
      Events:
        Single: {Type: HttpApi, Properties: {Path: /single, Method: GET, Auth: {Authorizer: NONE}}}
"""

HANDLERS = {
    "echo": """\
        from pathlib import Path

        MARKER = Path(__file__).with_name("called")


        def lambda_handler(event, context):
            MARKER.write_text(context.aws_request_id)
            return {"received": event, "request_id": context.aws_request_id}
        """,
    "failing": """\
        def lambda_handler(event, context):
            raise KeyError("order_id")
        """,
    "slow": """\
        import time


        def lambda_handler(event, context):
            time.sleep(10)
        """,
    "single": """\
        import time
        from pathlib import Path

        RUNS = Path(__file__).with_name("runs")


        def lambda_handler(event, context):
            time.sleep(float(event.get("sleep", 0)))
            with RUNS.open("a") as runs:
                runs.write(context.aws_request_id + "\\n")
            return {"statusCode": 200, "body": "done"}
        """,
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("servers")
    for name, code in HANDLERS.items():
        folder = root / "servers" / name
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(textwrap.dedent(code))
    (root / "template.yaml").write_text(TEMPLATE)
    template = load_template(root / "template.yaml")
    runtime = FunctionRuntime(template)
    front_door = FrontDoor(template, runtime, port=free_port(), jwt_settings=SETTINGS)
    invoke_api = LambdaInvokeApi(runtime, port=free_port())
    front_door.start()
    invoke_api.start()
    yield front_door, invoke_api, root
    front_door.stop()
    invoke_api.stop()
    runtime.stop()


@pytest.fixture
def lambda_client(servers):
    _, invoke_api, _ = servers
    return boto3.client(
        "lambda",
        endpoint_url=invoke_api.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}, read_timeout=10),
    )


def test_boto3_invoke_returns_the_handler_result(lambda_client):
    response = lambda_client.invoke(FunctionName="EchoFunction", Payload=b'{"ping": 1}')

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    result = json.loads(response["Payload"].read())
    assert result["received"] == {"ping": 1}
    assert result["request_id"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_empty_payload_is_an_empty_event_and_an_arn_names_the_function(lambda_client):
    arn = "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"

    response = lambda_client.invoke(FunctionName=arn)

    assert json.loads(response["Payload"].read())["received"] == {}


def test_handler_error_is_reported_like_lambda(lambda_client):
    response = lambda_client.invoke(FunctionName="FailingFunction", Payload=b"{}")

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "KeyError"
    assert error["errorMessage"] == "'order_id'"
    assert isinstance(error["stackTrace"], list)
    assert error["stackTrace"]


def test_a_handler_past_its_timeout_is_a_timeout_error(lambda_client):
    started = time.monotonic()

    response = lambda_client.invoke(FunctionName="SlowFunction", Payload=b"{}")

    # Stopped at its 1 s timeout, long before its 10 s sleep (cold start and kill included)
    assert time.monotonic() - started < 5
    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in json.loads(response["Payload"].read())["errorMessage"]


def test_event_invocation_is_accepted_and_runs_in_the_background(lambda_client, servers):
    _, _, root = servers
    marker = root / "servers" / "echo" / "called"
    marker.unlink(missing_ok=True)

    response = lambda_client.invoke(FunctionName="EchoFunction", InvocationType="Event", Payload=b"{}")

    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists()


def test_dry_run_does_not_call_the_handler(lambda_client, servers):
    _, _, root = servers
    marker = root / "servers" / "echo" / "called"
    marker.unlink(missing_ok=True)

    response = lambda_client.invoke(FunctionName="EchoFunction", InvocationType="DryRun")

    assert response["StatusCode"] == 204
    time.sleep(0.1)
    assert not marker.exists()


def test_unknown_function_is_resource_not_found(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as raised:
        lambda_client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")

    assert "Function not found: arn:aws:lambda:us-east-1:123456789012:function:NoSuchFunction" in str(
        raised.value
    )


def test_payload_that_is_not_json_is_rejected(lambda_client):
    with pytest.raises(lambda_client.exceptions.InvalidRequestContentException):
        lambda_client.invoke(FunctionName="EchoFunction", Payload=b"{not json")


def test_curl_style_invocation_without_signature(servers):
    _, invoke_api, _ = servers

    response = requests.post(
        f"{invoke_api.url}/2015-03-31/functions/EchoFunction/invocations", data="{}", timeout=5
    )

    assert response.status_code == 200
    assert response.json()["received"] == {}


def test_front_door_over_http_joins_repeated_headers(servers):
    front_door, _, _ = servers
    connection = http.client.HTTPConnection("127.0.0.1", front_door.server.port, timeout=5)
    connection.putrequest("POST", "/echo?a=1&a=2")
    connection.putheader("X-Repeated", "first")
    connection.putheader("X-Repeated", "second")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", "2")
    connection.endheaders(b"{}")

    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()

    assert response.status == 200
    event = body["received"]
    assert event["headers"]["x-repeated"] == "first,second"
    assert event["queryStringParameters"] == {"a": "1,2"}
    assert event["body"] == "{}"
    assert event["requestContext"]["domainName"] == f"127.0.0.1:{front_door.server.port}"
    assert response.getheader("Apigw-Requestid")


def test_front_door_keeps_connections_alive_and_checks_tokens(servers):
    front_door, _, _ = servers
    good = mint_token("carol", 5, settings=SETTINGS)

    with requests.Session() as session:
        refused = session.get(f"{front_door.url}/private", timeout=5)
        allowed = session.get(
            f"{front_door.url}/private", headers={"Authorization": f"Bearer {good}"}, timeout=5
        )

    assert refused.status_code == 401
    assert refused.json() == {"message": "Unauthorized"}
    assert allowed.status_code == 200
    assert allowed.json()["received"]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "carol"


def test_bodies_over_10_mb_are_refused_before_they_are_sent(servers):
    front_door, _, _ = servers
    with socket.create_connection(("127.0.0.1", front_door.server.port), timeout=5) as raw:
        raw.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10485761\r\nExpect: 100-continue\r\n\r\n"
        )
        # The gateway answers and closes the connection without waiting for the body.
        reply = b""
        while chunk := raw.recv(4096):
            reply += chunk

    assert reply.startswith(b"HTTP/1.1 413")
    assert reply.endswith(b'{"message": "Request Entity Too Large"}')


def test_a_body_of_exactly_10_mb_is_accepted(servers):
    front_door, _, _ = servers

    response = requests.post(
        f"{front_door.url}/echo",
        data=b"a" * (10 * 1024 * 1024),
        headers={"Content-Type": "text/plain"},
        timeout=30,
    )

    assert response.status_code == 200
    assert len(response.json()["received"]["body"]) == 10 * 1024 * 1024


def busy_single_function(lambda_client) -> threading.Thread:
    """Occupy SingleFunction's only environment (ReservedConcurrentExecutions: 1) for ~1.5 s."""
    busy = threading.Thread(
        target=lambda_client.invoke, kwargs={"FunctionName": "SingleFunction", "Payload": b'{"sleep": 1.5}'}
    )
    busy.start()
    time.sleep(0.7)
    return busy


def test_beyond_reserved_concurrency_boto3_gets_too_many_requests(lambda_client, servers):
    _, invoke_api, _ = servers
    no_retries = boto3.client(
        "lambda",
        endpoint_url=invoke_api.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=10),
    )
    busy = busy_single_function(lambda_client)

    with pytest.raises(no_retries.exceptions.TooManyRequestsException) as throttled:
        no_retries.invoke(FunctionName="SingleFunction", Payload=b"{}")

    busy.join()
    assert throttled.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    # Once the environment is free again, the function answers
    assert lambda_client.invoke(FunctionName="SingleFunction", Payload=b"{}")["StatusCode"] == 200


def test_beyond_reserved_concurrency_the_front_door_answers_429(lambda_client, servers):
    front_door, _, _ = servers
    busy = busy_single_function(lambda_client)

    response = requests.get(f"{front_door.url}/single", timeout=10)

    busy.join()
    assert response.status_code == 429
    assert response.json() == {"message": "Too Many Requests"}
    assert requests.get(f"{front_door.url}/single", timeout=10).status_code == 200


def test_an_event_beyond_reserved_concurrency_waits_and_then_runs(lambda_client, servers):
    _, _, root = servers
    runs = root / "servers" / "single" / "runs"
    runs.unlink(missing_ok=True)
    busy = busy_single_function(lambda_client)

    response = lambda_client.invoke(FunctionName="SingleFunction", InvocationType="Event", Payload=b"{}")

    assert response["StatusCode"] == 202
    busy.join()
    deadline = time.monotonic() + 5
    while len(runs.read_text().splitlines() if runs.exists() else []) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(runs.read_text().splitlines()) == 2
