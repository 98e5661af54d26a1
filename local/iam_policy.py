"""Each function's IAM policy, read from template.yaml as SAM builds the function's role.

SAM gives an AWS::Serverless::Function without `Role` a role of its own with:
- the managed policy AWSLambdaBasicExecutionRole (logs), AWSXrayWriteOnlyAccess with any `Tracing`
  but Disabled, and one per event source that Lambda polls with the role (AWSLambdaSQSQueueExecutionRole
  for an SQS event);
- `sqs:SendMessage` (or `sns:Publish`) on its `DeadLetterQueue`;
- each item of `Policies`: an inline document (`Statement`), a SAM policy template
  (`DynamoDBCrudPolicy: {TableName: !Ref T}`) or a managed policy by name or ARN.
Intrinsics are resolved with the local stack's resolver, so ARNs are the local ones the handlers'
calls name. tests/unit/test_iam_policy.py checks the result against SAM's own translator.

The managed policies' documents are AWS's (the IAM console shows them); a managed policy or a
policy template not known here is logged and grants nothing, which is the safe way to be wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from local.iam import Policy, Statement

if TYPE_CHECKING:
    from local.template import Resolver

logger = logging.getLogger(__name__)

_LOGS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
_XRAY = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
]
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "service-role/AWSLambdaBasicExecutionRole": [{"Effect": "Allow", "Action": _LOGS, "Resource": "*"}],
    "AWSXrayWriteOnlyAccess": [{"Effect": "Allow", "Action": _XRAY, "Resource": "*"}],
    "AWSXRayDaemonWriteAccess": [{"Effect": "Allow", "Action": _XRAY, "Resource": "*"}],
    "service-role/AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", *_LOGS],
            "Resource": "*",
        }
    ],
}
# Managed policies the Lambda service itself uses with the role (logs, traces): no handler call
# needs them, so the unused-grants report leaves them out.
SERVICE_ONLY_POLICIES = frozenset(
    {"service-role/AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSXRayDaemonWriteAccess"}
)
_EVENT_SOURCE_POLICIES = {"SQS": "service-role/AWSLambdaSQSQueueExecutionRole"}
_DEAD_LETTER_ACTIONS = {"SQS": "sqs:SendMessage", "SNS": "sns:Publish"}

_DYNAMODB_CRUD = [
    "dynamodb:GetItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:ConditionCheckItem",
]
_DYNAMODB_READ = [
    "dynamodb:GetItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
]
_DYNAMODB_WRITE = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"]


def _table(actions: list[str]) -> Callable[[Mapping[str, str], str, str], list[dict[str, Any]]]:
    def build(values: Mapping[str, str], region: str, account: str) -> list[dict[str, Any]]:
        table = f"arn:aws:dynamodb:{region}:{account}:table/{values['TableName']}"
        return [{"Effect": "Allow", "Action": actions, "Resource": [table, f"{table}/index/*"]}]

    return build


def _sqs(actions: list[str]) -> Callable[[Mapping[str, str], str, str], list[dict[str, Any]]]:
    def build(values: Mapping[str, str], region: str, account: str) -> list[dict[str, Any]]:
        return [
            {
                "Effect": "Allow",
                "Action": actions,
                "Resource": f"arn:aws:sqs:{region}:{account}:{values['QueueName']}",
            }
        ]

    return build


def _ssm_read(values: Mapping[str, str], region: str, account: str) -> list[dict[str, Any]]:
    return [
        {"Effect": "Allow", "Action": ["ssm:DescribeParameters"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["ssm:GetParameters", "ssm:GetParameter", "ssm:GetParametersByPath"],
            "Resource": f"arn:aws:ssm:{region}:{account}:parameter/{values['ParameterName']}",
        },
    ]


# The SAM policy templates the local stack knows (SAM's policy_templates.json defines them; the
# unit test compares each with SAM's expansion): name -> (parameters, statements).
POLICY_TEMPLATES: dict[
    str, tuple[tuple[str, ...], Callable[[Mapping[str, str], str, str], list[dict[str, Any]]]]
] = {
    "DynamoDBCrudPolicy": (("TableName",), _table(_DYNAMODB_CRUD)),
    "DynamoDBReadPolicy": (("TableName",), _table(_DYNAMODB_READ)),
    "DynamoDBWritePolicy": (("TableName",), _table(_DYNAMODB_WRITE)),
    "SQSPollerPolicy": (
        ("QueueName",),
        _sqs(
            [
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ]
        ),
    ),
    "SQSSendMessagePolicy": (("QueueName",), _sqs(["sqs:SendMessage*"])),
    "EventBridgePutEventsPolicy": (
        ("EventBusName",),
        lambda values, region, account: [
            {
                "Effect": "Allow",
                "Action": "events:PutEvents",
                "Resource": f"arn:aws:events:{region}:{account}:event-bus/{values['EventBusName']}",
            }
        ],
    ),
    "AWSSecretsManagerGetSecretValuePolicy": (
        ("SecretArn",),
        lambda values, region, account: [
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": values["SecretArn"]}
        ],
    ),
    "CloudWatchPutMetricPolicy": (
        (),
        lambda values, region, account: [
            {"Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*"}
        ],
    ),
    "SSMParameterReadPolicy": (("ParameterName",), _ssm_read),
    "LambdaInvokePolicy": (
        ("FunctionName",),
        lambda values, region, account: [
            {
                "Effect": "Allow",
                "Action": ["lambda:InvokeFunction"],
                "Resource": f"arn:aws:lambda:{region}:{account}:function:{values['FunctionName']}*",
            }
        ],
    ),
}


def role_name(stack_name: str, function_id: str) -> str:
    return f"{stack_name}-{function_id}Role"


def function_policy(
    resolver: Resolver,
    function_id: str,
    properties: Mapping[str, Any],
    *,
    stack_name: str,
    region: str,
    account: str,
) -> Policy | None:
    """The policy of the function's role (its Globals merged into `properties`); None when the
    function names a role this template does not define (nothing to check it against)."""
    statements: list[Statement] = []

    def add(documents: list[dict[str, Any]], source: str) -> None:
        for document in documents:
            statements.append(Statement.from_document(document, source))

    role = resolver.resolve(properties.get("Role"))
    if role:
        principal = _own_role(resolver, function_id, role, stack_name=stack_name, account=account, add=add)
        return None if principal is None else Policy(principal, tuple(statements), account)

    managed = ["service-role/AWSLambdaBasicExecutionRole"]
    # SAM adds it for any Tracing but Disabled (PassThrough included).
    if str(resolver.resolve(properties.get("Tracing")) or "Disabled") != "Disabled":
        managed.append("AWSXrayWriteOnlyAccess")
    for event in (properties.get("Events") or {}).values():
        policy_name = _EVENT_SOURCE_POLICIES.get(str((event or {}).get("Type")))
        if policy_name and policy_name not in managed:
            managed.append(policy_name)
    for name in managed:
        add(MANAGED_POLICIES[name], f"managed:{name}")

    dead_letter = resolver.resolve(properties.get("DeadLetterQueue")) or {}
    if dead_letter:
        action = _DEAD_LETTER_ACTIONS[str(dead_letter.get("Type"))]
        add(
            [{"Effect": "Allow", "Action": action, "Resource": dead_letter.get("TargetArn")}],
            "DeadLetterQueue",
        )

    policies = properties.get("Policies") or []
    if not isinstance(policies, list):
        policies = [policies]
    for index, item in enumerate(policies):
        if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in POLICY_TEMPLATES:
            ((name, values),) = item.items()
            parameters, build = POLICY_TEMPLATES[name]
            resolved = {key: str(resolver.resolve(value)) for key, value in (values or {}).items()}
            missing = [parameter for parameter in parameters if parameter not in resolved]
            if missing:
                raise ValueError(f"{function_id}: policy template {name} needs {', '.join(missing)}")
            add(build(resolved, region, account), f"template:{name}")
            continue
        resolved_item = resolver.resolve(item)
        if isinstance(resolved_item, dict) and "Statement" in resolved_item:
            documents = resolved_item["Statement"]
            add(documents if isinstance(documents, list) else [documents], f"Policies[{index}]")
        elif isinstance(resolved_item, str):
            _add_managed(resolved_item, function_id, add)
        else:
            logger.warning(
                "%s: Policies[%d] (%s) is not known to the local stack; it grants nothing here",
                function_id,
                index,
                next(iter(resolved_item))
                if isinstance(resolved_item, dict) and resolved_item
                else resolved_item,
            )
    principal = f"arn:aws:sts::{account}:assumed-role/{role_name(stack_name, function_id)}/{function_id}"
    return Policy(principal=principal, statements=tuple(statements), account=account)


def _add_managed(
    name_or_arn: str, function_id: str, add: Callable[[list[dict[str, Any]], str], None]
) -> None:
    name = name_or_arn.split(":policy/", 1)[1] if ":policy/" in name_or_arn else name_or_arn
    known = MANAGED_POLICIES.get(name) or MANAGED_POLICIES.get(f"service-role/{name}")
    if known is None:
        logger.warning(
            "%s: managed policy %s is not known to the local stack; it grants nothing here", function_id, name
        )
        return
    add(known, f"managed:{name}")


def _own_role(
    resolver: Resolver,
    function_id: str,
    role: Any,
    *,
    stack_name: str,
    account: str,
    add: Callable[[list[dict[str, Any]], str], None],
) -> str | None:
    """A function whose `Role` is an AWS::IAM::Role of this template: that role's policies added,
    and the principal of its sessions."""
    role_id = next(
        (
            logical_id
            for logical_id, resource in resolver.resources.items()
            if (resource or {}).get("Type") == "AWS::IAM::Role"
            and str(role) in (f"arn:aws:iam::{account}:role/{logical_id}", logical_id)
        ),
        None,
    )
    if role_id is None:
        logger.warning(
            "%s uses role %s, which is not in the template: its calls are not checked", function_id, role
        )
        return None
    properties = resolver.resolve(resolver.resources[role_id].get("Properties") or {})
    for arn in properties.get("ManagedPolicyArns") or []:
        _add_managed(str(arn), function_id, add)
    for policy in properties.get("Policies") or []:
        documents = (policy.get("PolicyDocument") or {}).get("Statement") or []
        add(
            documents if isinstance(documents, list) else [documents], f"{role_id}.{policy.get('PolicyName')}"
        )
    return f"arn:aws:sts::{account}:assumed-role/{stack_name}-{role_id}/{function_id}"
