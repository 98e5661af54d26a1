"""The whole local stack as `make run` starts it (DynamoDB Local, moto, a simulator process, handlers
behind the front door, the invoke API and schedules), serving a small temporary template: what a
user notices from the outside, and a clean exit on SIGTERM with every child process gone.

The real QPay simulator is exercised by its own tests and the e2e suite; a stand-in answering
/_sim/health keeps this test about the stack's wiring."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests

from local.dev_token import mint_token
from local.endpoints import LocalPorts, free_port, local_client, port_is_free
from local.inspect import read_events
from local.jwt_auth import JwtSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = """\
Parameters:
  Greeting:
    Type: String
    Default: hello-from-the-template
Globals:
  HttpApi:
    Auth:
      DefaultAuthorizer: Jwt
      Authorizers:
        Jwt:
          IdentitySource: $request.header.Authorization
          JwtConfiguration: {issuer: https://issuer.example.com, audience: [items]}
  Function:
    Timeout: 10
    Environment:
      Variables:
        ITEMS_TABLE: !Ref ItemsTable
        BUS_NAME: !Ref ItemsBus
        GREETING: !Ref Greeting
Resources:
  ItemsBus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub ${AWS::StackName}-items
  ItemsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: owner, AttributeType: S}
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      GlobalSecondaryIndexes:
        - IndexName: by_owner
          KeySchema: [{AttributeName: owner, KeyType: HASH}]
          Projection: {ProjectionType: KEYS_ONLY}
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
  ItemsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: stackfns/items/
      Handler: app.lambda_handler
      # As in AWS, the function may call only what its role allows (the local stack checks it).
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref ItemsTable}
        - EventBridgePutEventsPolicy: {EventBusName: !Ref ItemsBus}
      Events:
        Create: {Type: HttpApi, Properties: {Path: /items, Method: POST}}
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: stackfns/tick/
      Handler: app.lambda_handler
      Events:
        EveryMinute: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}
"""

ITEMS_HANDLER = """\
import json
import os

import boto3

# Created at import, as real handlers do: the stack must have set the environment before.
DYNAMODB = boto3.client("dynamodb")
EVENTS = boto3.client("events")


def lambda_handler(event, context):
    owner = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    item_id = json.loads(event["body"])["id"]
    DYNAMODB.put_item(
        TableName=os.environ["ITEMS_TABLE"],
        Item={"pk": {"S": item_id}, "owner": {"S": owner}},
        ConditionExpression="attribute_not_exists(pk)",
    )
    EVENTS.put_events(
        Entries=[
            {
                "Source": "local.test",
                "DetailType": "ItemCreated",
                "Detail": json.dumps({"session_id": item_id, "owner": owner}),
                "EventBusName": os.environ["BUS_NAME"],
            }
        ]
    )
    names = ("GREETING", "SESSION_EXPIRY_MINUTES", "AWS_ACCESS_KEY_ID", "QPAY_BASE_URL", "AWS_PROFILE")
    return {"statusCode": 201, "body": json.dumps({name: os.environ.get(name) for name in names})}
"""

TICK_HANDLER = """\
from pathlib import Path


def lambda_handler(event, context):
    with Path(__file__).with_name("ticks.log").open("a") as log:
        log.write(event["detail-type"] + "\\n")
    return {"ticked": True}
"""

FAKE_SIMULATOR = """\
import http.server
import json
import os
import sys
from pathlib import Path

Path(sys.argv[2]).write_text(str(os.getpid()))
names = ("QPAY_SIM_CLIENT_SECRET", "QPAY_SIM_INVOICE_CODE", "AWS_PROFILE")
seen = {name: os.environ.get(name) for name in names}
Path(sys.argv[2]).with_suffix(".env.json").write_text(json.dumps(seen))


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/_sim/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""

RUNNER = """\
import json
import sys

from local.endpoints import LocalPorts
from local.stack import LocalStack, configure_logging, run

template, ports_json, simulator_script, pid_file = sys.argv[1:5]
ports = LocalPorts(**json.loads(ports_json))
configure_logging()
command = [sys.executable, simulator_script, str(ports.simulator), pid_file]
raise SystemExit(run(LocalStack(template, ports, simulator_command=command)))
"""


def pid_alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return stat.read_text().split()[2] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def worker_pids(parent_pid: int) -> list[int]:
    """The stack's execution environments: its children running local/lambda_worker.py."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == parent_pid and b"lambda_worker.py" in command:
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    for name, code in (("items", ITEMS_HANDLER), ("tick", TICK_HANDLER)):
        (root / "stackfns" / name).mkdir(parents=True)
        (root / "stackfns" / name / "app.py").write_text(code)
    (root / "template.yaml").write_text(TEMPLATE)
    (root / "fake_simulator.py").write_text(FAKE_SIMULATOR)
    (root / "runner.py").write_text(RUNNER)
    ports = LocalPorts(
        api=free_port(), invoke=free_port(), dynamodb=free_port(), moto=free_port(), simulator=free_port()
    )
    ports_json = json.dumps(
        {name: getattr(ports, name) for name in ("api", "invoke", "dynamodb", "moto", "simulator")}
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "LOCAL_SCHEDULE_SPEEDUP": "600",
        "LOCAL_JWT_SECRET": "stack-test-secret",
        # What a user's shell may hold: settings must reach the handlers, AWS settings must not.
        "SESSION_EXPIRY_MINUTES": "2",
        "AWS_ACCESS_KEY_ID": "AKIAREALACCOUNTKEY00",
        "AWS_SECRET_ACCESS_KEY": "real-secret",
        "AWS_PROFILE": "production",
        "QPAY_CLIENT_SECRET": "secret-from-the-shell",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            str(root / "runner.py"),
            str(root / "template.yaml"),
            ports_json,
            str(root / "fake_simulator.py"),
            str(root / "sim.pid"),
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def pump():
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if line.strip() == "LOCAL STACK READY":
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the stack did not start:\n" + "\n".join(output[-40:]))
    yield {"ports": ports, "process": process, "output": output, "root": root}
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def token(user: str = "alice") -> str:
    return mint_token(user, 5, settings=JwtSettings(secret="stack-test-secret"))


def test_banner_lists_every_address_then_ready_once(stack):
    ports, output = stack["ports"], stack["output"]
    text = "\n".join(output)

    assert output.count("LOCAL STACK READY") == 1
    for url in (ports.api_url, ports.invoke_url, ports.dynamodb_url, ports.moto_url, ports.simulator_url):
        assert url in text
    assert "POST /items" in text
    assert "ItemsTable" in text
    assert "qpay-local-items" in text
    assert "make -s token USER=alice" in text


def test_the_simulator_accepts_what_the_handlers_send(stack):
    seen = json.loads((stack["root"] / "sim.env.json").read_text())

    assert seen == {
        "QPAY_SIM_CLIENT_SECRET": "secret-from-the-shell",
        "QPAY_SIM_INVOICE_CODE": None,
        "AWS_PROFILE": None,
    }


def test_request_reaches_the_handler_which_writes_to_dynamodb_local_and_the_bus(stack):
    ports = stack["ports"]

    response = requests.post(
        f"{ports.api_url}/items",
        json={"id": "it_1"},
        headers={"Authorization": f"Bearer {token('alice')}"},
        timeout=10,
    )

    assert response.status_code == 201, response.text
    seen = response.json()
    assert seen["GREETING"] == "hello-from-the-template"
    assert seen["SESSION_EXPIRY_MINUTES"] == "2"
    assert seen["AWS_ACCESS_KEY_ID"] == "local"
    assert seen["AWS_PROFILE"] is None
    assert seen["QPAY_BASE_URL"] == f"{ports.simulator_url}/v2"
    item = local_client("dynamodb", ports.dynamodb_url).get_item(
        TableName="ItemsTable", Key={"pk": {"S": "it_1"}}
    )
    assert item["Item"]["owner"] == {"S": "alice"}
    events = read_events(ports.moto_url, session_id="it_1")
    assert [event["detail-type"] for event in events] == ["ItemCreated"]
    assert events[0]["detail"]["owner"] == "alice"


def test_the_table_has_its_gsi_and_ttl(stack):
    dynamodb = local_client("dynamodb", stack["ports"].dynamodb_url)

    table = dynamodb.describe_table(TableName="ItemsTable")["Table"]

    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by_owner"]
    assert (
        dynamodb.describe_time_to_live(TableName="ItemsTable")["TimeToLiveDescription"]["TimeToLiveStatus"]
        == "ENABLED"
    )


def test_second_create_of_one_item_fails_in_the_handler_and_is_a_500(stack):
    ports = stack["ports"]
    headers = {"Authorization": f"Bearer {token()}"}
    first = requests.post(f"{ports.api_url}/items", json={"id": "it_dup"}, headers=headers, timeout=10)

    second = requests.post(f"{ports.api_url}/items", json={"id": "it_dup"}, headers=headers, timeout=10)

    assert first.status_code == 201
    assert second.status_code == 500
    assert second.json() == {"message": "Internal Server Error"}


def test_missing_token_is_401(stack):
    response = requests.post(f"{stack['ports'].api_url}/items", json={"id": "it_2"}, timeout=10)

    assert response.status_code == 401


def test_invoke_api_serves_every_function(stack):
    client = boto3.client(
        "lambda",
        endpoint_url=stack["ports"].invoke_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )

    response = client.invoke(
        FunctionName="TickFunction", Payload=json.dumps({"detail-type": "Manual"}).encode()
    )

    assert json.loads(response["Payload"].read()) == {"ticked": True}


def test_schedules_fire_with_the_speed_up(stack):
    log = stack["root"] / "stackfns" / "tick" / "ticks.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not log.exists() or "Scheduled Event" not in log.read_text()):
        time.sleep(0.05)

    assert "Scheduled Event" in log.read_text()


def test_sigterm_stops_everything_and_exits_0(stack):
    # Runs last in this module: it ends the stack.
    process, ports = stack["process"], stack["ports"]
    simulator_pid = int((stack["root"] / "sim.pid").read_text())
    workers = worker_pids(process.pid)
    assert workers, "the stack runs its functions in worker processes"

    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(timeout=20)

    assert exit_code == 0
    assert not pid_alive(simulator_pid)
    assert not [pid for pid in workers if pid_alive(pid)]
    for port in (ports.api, ports.invoke, ports.dynamodb, ports.moto, ports.simulator):
        assert port_is_free(port), f"port {port} still in use"
