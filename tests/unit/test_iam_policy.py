"""Each function's IAM policy as the local stack builds it is the policy SAM gives its role: the
same (effect, action, resource) triples, once SAM's translation is resolved with the same local
values. Checked for template.yaml and for a template using the policy templates, managed policies
and event sources the local stack knows."""

import json

import pytest

from local.iam import Statement
from local.iam_policy import MANAGED_POLICIES, POLICY_TEMPLATES
from local.template import Resolver, load_template, load_yaml
from tests.support import ROOT
from tests.unit.test_template import sam_transform

pytestmark = pytest.mark.unit

KNOWN_POLICIES = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Tracing: Active
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Queue:
    Type: AWS::SQS::Queue
  DeadLetters:
    Type: AWS::SQS::Queue
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: bus}
  Secret:
    Type: AWS::SecretsManager::Secret
  EveryTemplateFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/checkout/
      Handler: app.lambda_handler
      DeadLetterQueue: {Type: SQS, TargetArn: !GetAtt DeadLetters.Arn}
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref Table}
        - DynamoDBReadPolicy: {TableName: !Ref Table}
        - DynamoDBWritePolicy: {TableName: !Ref Table}
        - SQSPollerPolicy: {QueueName: !GetAtt Queue.QueueName}
        - SQSSendMessagePolicy: {QueueName: !GetAtt Queue.QueueName}
        - EventBridgePutEventsPolicy: {EventBusName: !Ref Bus}
        - AWSSecretsManagerGetSecretValuePolicy: {SecretArn: !Ref Secret}
        - CloudWatchPutMetricPolicy: {}
        - SSMParameterReadPolicy: {ParameterName: app/config}
        - LambdaInvokePolicy: {FunctionName: other}
        - AWSXrayWriteOnlyAccess
        - Statement:
            - Effect: Deny
              Action: dynamodb:DeleteItem
              Resource: !Sub ${Table.Arn}
  PollingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/checkout/
      Handler: app.lambda_handler
      Tracing: Disabled
      Events:
        Work: {Type: SQS, Properties: {Queue: !GetAtt Queue.Arn}}
"""


def triples(statements):
    found = set()
    for statement in statements:
        document = statement if isinstance(statement, dict) else statement.as_document()
        actions = document.get("Action")
        resources = document.get("Resource")
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in [resources] if isinstance(resources, str) else resources:
                found.add((document["Effect"], action, resource))
    return found


def sam_roles(template_path):
    """{function: triples} of the roles SAM's translator makes for the functions, resolved locally."""
    translated = sam_transform(template=template_path)
    functions = {name for name, resource in translated.items() if resource["Type"] == "AWS::Lambda::Function"}
    resolver = Resolver(load_yaml(template_path))
    roles = {}
    for logical_id, resource in translated.items():
        if resource["Type"] != "AWS::IAM::Role" or logical_id.removesuffix("Role") not in functions:
            continue
        properties = resource["Properties"]
        statements = []
        for arn in properties.get("ManagedPolicyArns", []):
            statements += MANAGED_POLICIES[arn.split(":policy/", 1)[1]]
        for policy in properties.get("Policies", []):
            statements += resolver.resolve(policy["PolicyDocument"]["Statement"])
        roles[logical_id.removesuffix("Role")] = triples(statements)
    return roles


def local_roles(template_path):
    template = load_template(template_path)
    return {name: triples(function.policy.statements) for name, function in template.functions.items()}


def test_every_function_of_template_yaml_gets_the_policy_sam_gives_its_role():
    sam, local = sam_roles(ROOT / "template.yaml"), local_roles(ROOT / "template.yaml")

    assert set(local) == set(sam)
    for function, expected in sam.items():
        assert local[function] == expected, function


def test_policy_templates_managed_policies_and_event_sources_expand_as_sam_expands_them(tmp_path):
    # The template must sit where its CodeUri resolves for the local reader
    path = ROOT / f".iam-policy-test-{tmp_path.name}.yaml"
    path.write_text(KNOWN_POLICIES)
    try:
        sam, local = sam_roles(path), local_roles(path)
    finally:
        path.unlink()

    assert local == sam
    every_template = json.dumps(sorted(local["EveryTemplateFunction"]))
    assert ("Deny", "dynamodb:DeleteItem", "arn:aws:dynamodb:us-east-1:123456789012:table/Table") in local[
        "EveryTemplateFunction"
    ]
    assert "sqs:ReceiveMessage" in json.dumps(sorted(local["PollingFunction"]))
    assert "ssm:GetParameter" in every_template
    assert "parameter/app/config" in every_template
    # Every policy template the local stack knows is in the test template
    assert set(POLICY_TEMPLATES) <= set(KNOWN_POLICIES.replace(":", " ").split())


def test_an_unknown_policy_template_grants_nothing(tmp_path, caplog):
    path = ROOT / f".iam-policy-test-{tmp_path.name}.yaml"
    path.write_text(
        KNOWN_POLICIES.replace("- CloudWatchPutMetricPolicy: {}", "- KinesisCrudPolicy: {StreamName: s}")
    )
    try:
        policy = load_template(path).functions["EveryTemplateFunction"].policy
    finally:
        path.unlink()

    assert not any("kinesis" in action for statement in policy.statements for action in statement.actions)
    assert "KinesisCrudPolicy" in caplog.text
    assert isinstance(policy.statements[0], Statement)
