"""IAM in the local runtime: a handler's AWS calls, made with boto3 in a worker process, are
checked against its function's policy from the template before they are sent, and a refused one
is the ClientError AWS raises."""

import json
import os

import pytest

from local.endpoints import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY
from local.functions import FunctionRuntime, RuntimeSettings
from local.template import load_template

pytestmark = pytest.mark.integration

HANDLER = """\
import boto3
from botocore.exceptions import ClientError

CALLS = {
    "get": lambda db, sqs: db.get_item(TableName="Things", Key={"pk": {"S": "a"}}),
    "query_index": lambda db, sqs: db.query(
        TableName="Things", IndexName="by_owner", KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "a"}}),
    "transaction": lambda db, sqs: db.transact_write_items(TransactItems=[
        {"Put": {"TableName": "Things", "Item": {"pk": {"S": "b"}}}},
        {"ConditionCheck": {"TableName": "Things", "Key": {"pk": {"S": "a"}},
                            "ConditionExpression": "attribute_exists(pk)"}},
    ]),
    "send_batch": lambda db, sqs: sqs.send_message_batch(
        QueueUrl="https://sqs.us-east-1.amazonaws.com/123456789012/work",
        Entries=[{"Id": "1", "MessageBody": "x"}]),
}


def lambda_handler(event, context):
    db, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    try:
        CALLS[event["call"]](db, sqs)
    except ClientError as error:
        return {"code": error.response["Error"]["Code"], "message": error.response["Error"]["Message"],
                "type": type(error).__name__}
    return {"code": "sent"}
"""

TEMPLATE = """\
Resources:
  ThingsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: things/
      Handler: app.lambda_handler
      Timeout: 20
      Policies:
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:PutItem]
              Resource: arn:aws:dynamodb:us-east-1:123456789012:table/Things
"""
ROLE = "arn:aws:sts::123456789012:assumed-role/qpay-local-ThingsFunctionRole/ThingsFunction"


@pytest.fixture
def runtime_for(tmp_path, moto_events):
    (tmp_path / "things").mkdir()
    (tmp_path / "things" / "app.py").write_text(HANDLER)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    template = load_template(tmp_path / "template.yaml")
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_events,
        "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    started = []

    def start(iam: bool = True) -> FunctionRuntime:
        runtime = FunctionRuntime(
            template, environment_for=lambda function: environment, settings=RuntimeSettings(iam=iam)
        )
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


def test_a_granted_call_is_sent_and_recorded(runtime_for):
    runtime = runtime_for()

    result = runtime.invoke("ThingsFunction", {"call": "get"})

    # moto has no such table: the call reached the service, which is all IAM had to allow
    assert result.value["code"] == "ResourceNotFoundException"
    assert result.aws_calls == [("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Things")]
    assert ("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Things") in runtime.iam_usage[
        "ThingsFunction"
    ]


def test_a_query_on_an_index_the_policy_does_not_name_is_access_denied_as_in_aws(runtime_for, caplog):
    runtime = runtime_for()

    result = runtime.invoke("ThingsFunction", {"call": "query_index"})

    index = "arn:aws:dynamodb:us-east-1:123456789012:table/Things/index/by_owner"
    assert result.value == {
        "code": "AccessDeniedException",
        "type": "ClientError",
        "message": f"User: {ROLE} is not authorized to perform: dynamodb:Query on resource: {index} "
        "because no identity-based policy allows the dynamodb:Query action",
    }
    assert result.refused == [("dynamodb:Query", index)]
    assert f"ThingsFunction AccessDenied: dynamodb:Query on {index}" in caplog.text


def test_each_item_of_a_transaction_needs_its_own_action(runtime_for):
    result = runtime_for().invoke("ThingsFunction", {"call": "transaction"})

    assert result.value["code"] == "AccessDeniedException"
    assert "dynamodb:ConditionCheckItem on resource" in result.value["message"]


def test_sqs_refuses_with_its_own_code_and_lower_case_action(runtime_for):
    result = runtime_for().invoke("ThingsFunction", {"call": "send_batch"})

    assert result.value["code"] == "AccessDenied"
    assert (
        "not authorized to perform: sqs:sendmessage on resource: arn:aws:sqs:us-east-1:123456789012:work"
        in (result.value["message"])
    )


def test_with_local_iam_off_nothing_is_checked(runtime_for):
    result = runtime_for(iam=False).invoke("ThingsFunction", {"call": "query_index"})

    assert result.value["code"] == "ResourceNotFoundException"
    assert result.refused == []
    assert json.dumps(result.value).count("AccessDenied") == 0


def test_local_iam_is_on_unless_turned_off():
    assert RuntimeSettings.from_env({}).iam
    assert not RuntimeSettings.from_env({"LOCAL_IAM": "off"}).iam
