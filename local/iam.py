"""IAM in the local runtime: every AWS call a handler makes is checked against its function's
policy (local/iam_policy.py builds it from template.yaml) before it is sent, and one the policy
does not allow fails as it fails in AWS: a botocore ClientError with the service's error code
(`AccessDeniedException`; SQS and CloudWatch say `AccessDenied`) and AWS's message, which names
the role, the action and the resource.

Standard library only: an execution environment (local/lambda_worker.py) loads this file by its
path before the handler, so nothing here may be on the handler's own import path. The check hangs
on botocore's event hooks, in every botocore session the handler creates (pynamodb's, boto3's,
Powertools'): local/botocore_hooks.py adds the guard's handlers to botocore's BUILTIN_HANDLERS,
which every Session registers. `before-parameter-build` works out the (action, resource) pairs
of the call from its parameters, the way the service authorizes them (DynamoDB checks each item
of a transaction with the item's own action, a query on an index names the index's ARN,
PutEvents each entry's bus); `before-call` then answers a refused call with the error response
instead of sending it, so botocore raises the error through its own code path.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# The IAM prefix of each service whose signing name differs from it.
_IAM_PREFIX = {"monitoring": "cloudwatch"}
# Query-protocol and older services answer a refused call with this code instead.
_ACCESS_DENIED_CODE = {"sqs": "AccessDenied", "cloudwatch": "AccessDenied"}
# SQS authorizes a batch call with its single action (its AccessDenied names that action).
_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_TRANSACT_WRITE_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
# Calls that need no permission at all.
_UNAUTHORIZED_CALLS = {("sts", "GetCallerIdentity")}


def _pattern(glob: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: `*` any run of characters, `?` one; nothing else is special."""
    body = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in glob)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _listed(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(item) for item in value)


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    has_condition: bool = False
    source: str = "inline"

    @classmethod
    def from_document(cls, statement: Mapping[str, Any], source: str = "inline") -> Statement:
        return cls(
            effect=str(statement.get("Effect", "Deny")),
            actions=_listed(statement.get("Action")),
            not_actions=_listed(statement.get("NotAction")),
            resources=_listed(statement.get("Resource")),
            not_resources=_listed(statement.get("NotResource")),
            has_condition=bool(statement.get("Condition")),
            source=str(statement.get("Source", source)),
        )

    def as_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"Effect": self.effect, "Source": self.source}
        for key, values in (
            ("Action", self.actions),
            ("NotAction", self.not_actions),
            ("Resource", self.resources),
            ("NotResource", self.not_resources),
        ):
            if values:
                document[key] = list(values)
        if self.has_condition:
            document["Condition"] = {"unevaluated": True}
        return document

    def matches(self, action: str, resource: str) -> bool:
        if self.actions:
            action_ok = any(_pattern(glob, ignore_case=True).match(action) for glob in self.actions)
        else:
            action_ok = not any(_pattern(glob, ignore_case=True).match(action) for glob in self.not_actions)
        if self.resources:
            resource_ok = any(_pattern(glob, ignore_case=False).match(resource) for glob in self.resources)
        else:
            resource_ok = not any(
                _pattern(glob, ignore_case=False).match(resource) for glob in self.not_resources
            )
        return action_ok and resource_ok


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit_deny: bool = False
    statement: Statement | None = None


@dataclass(frozen=True)
class Policy:
    """A role's identity-based policies, flattened into statements."""

    principal: str
    statements: tuple[Statement, ...]
    account: str = "123456789012"

    def decide(self, action: str, resource: str) -> Decision:
        """IAM's evaluation for one identity: an explicit Deny wins, else an Allow, else denied.
        A statement with a Condition is not evaluated here: it neither allows nor denies (no
        kinder than AWS, where the condition may well not hold)."""
        allowing = None
        for statement in self.statements:
            if statement.has_condition or not statement.matches(action, resource):
                continue
            if statement.effect == "Deny":
                return Decision(False, explicit_deny=True, statement=statement)
            if statement.effect == "Allow" and allowing is None:
                allowing = statement
        return Decision(allowing is not None, statement=allowing)

    def to_json(self) -> str:
        return json.dumps(
            {
                "principal": self.principal,
                "account": self.account,
                "statements": [statement.as_document() for statement in self.statements],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        return cls(
            principal=data["principal"],
            account=data.get("account", "123456789012"),
            statements=tuple(Statement.from_document(item) for item in data["statements"]),
        )


def iam_prefix(signing_name: str) -> str:
    return _IAM_PREFIX.get(signing_name, signing_name)


def _arn_or(value: str, build: Callable[[str], str]) -> str:
    return value if value.startswith("arn:") else build(value)


def authorizations(
    service: str, operation: str, params: Mapping[str, Any], region: str, account: str
) -> list[tuple[str, str]]:
    """The (action, resource ARN) pairs AWS checks for one call; empty when it checks none."""
    if (service, operation) in _UNAUTHORIZED_CALLS:
        return []
    if service == "dynamodb":
        return _dynamodb(operation, params, region, account)
    if service == "events":
        return _events(operation, params, region, account)
    if service == "sqs":
        return _sqs(operation, params, region, account)
    if service == "secretsmanager":
        secret = str(params.get("SecretId") or params.get("Name") or "*")
        arn = _arn_or(secret, lambda name: f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf")
        return [(f"secretsmanager:{operation}", arn if secret != "*" else "*")]
    if service == "ssm":
        names = _listed(params.get("Names")) or _listed(params.get("Name")) or _listed(params.get("Path"))
        arns = [
            _arn_or(name, lambda n: f"arn:aws:ssm:{region}:{account}:parameter/{n.lstrip('/')}")
            for name in names
        ]
        return [(f"ssm:{operation}", arn) for arn in arns] or [(f"ssm:{operation}", "*")]
    if service == "lambda" and params.get("FunctionName"):
        function = str(params["FunctionName"])
        arn = _arn_or(function, lambda name: f"arn:aws:lambda:{region}:{account}:function:{name}")
        action = "InvokeFunction" if operation in ("Invoke", "InvokeAsync") else operation
        return [(f"lambda:{action}", arn)]
    if service == "logs" and params.get("logGroupName"):
        group = f"arn:aws:logs:{region}:{account}:log-group:{params['logGroupName']}"
        stream = params.get("logStreamName")
        return [(f"logs:{operation}", f"{group}:log-stream:{stream}" if stream else f"{group}:*")]
    # CloudWatch's PutMetricData and the like name no resource: IAM checks them on "*".
    return [(f"{service}:{operation}", "*")]


def _table_arn(table: str, region: str, account: str) -> str:
    return _arn_or(table, lambda name: f"arn:aws:dynamodb:{region}:{account}:table/{name}")


def _dynamodb(operation: str, params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    if operation == "TransactWriteItems":
        pairs = []
        for item in params.get("TransactItems") or []:
            for kind, request in item.items():
                action = _TRANSACT_WRITE_ACTIONS.get(kind, kind)
                pairs.append((f"dynamodb:{action}", _table_arn(str(request["TableName"]), region, account)))
        return pairs
    if operation == "TransactGetItems":
        return [
            ("dynamodb:GetItem", _table_arn(str(item["Get"]["TableName"]), region, account))
            for item in params.get("TransactItems") or []
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [
            (f"dynamodb:{operation}", _table_arn(str(table), region, account))
            for table in (params.get("RequestItems") or {})
        ]
    table = params.get("TableName")
    if not table:
        return [(f"dynamodb:{operation}", "*")]
    arn = _table_arn(str(table), region, account)
    if params.get("IndexName"):
        arn = f"{arn}/index/{params['IndexName']}"
    return [(f"dynamodb:{operation}", arn)]


def _events(operation: str, params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    def bus_arn(name: str) -> str:
        return _arn_or(name, lambda bus: f"arn:aws:events:{region}:{account}:event-bus/{bus}")

    if operation == "PutEvents":
        buses = dict.fromkeys(
            str(entry.get("EventBusName") or "default") for entry in params.get("Entries") or []
        )
        return [("events:PutEvents", bus_arn(bus)) for bus in buses]
    bus = params.get("EventBusName") or params.get("Name")
    return [(f"events:{operation}", bus_arn(str(bus)) if bus else "*")]


def _sqs(operation: str, params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    action = f"sqs:{_SQS_BATCH_ACTIONS.get(operation, operation)}"
    url = params.get("QueueUrl")
    if url:
        # https://sqs.<region>.amazonaws.com/<account>/<name>
        parts = [part for part in urlsplit(str(url)).path.split("/") if part]
        owner, name = (parts[-2], parts[-1]) if len(parts) >= 2 else (account, parts[-1] if parts else "*")
        return [(action, f"arn:aws:sqs:{region}:{owner}:{name}")]
    if params.get("QueueName"):
        owner = str(params.get("QueueOwnerAWSAccountId") or account)
        return [(action, f"arn:aws:sqs:{region}:{owner}:{params['QueueName']}")]
    return [(action, "*")]


def denial_message(principal: str, action: str, resource: str, *, explicit: bool, service: str) -> str:
    """AWS's words, e.g. `User: arn:aws:sts::123456789012:assumed-role/<role>/<function> is not
    authorized to perform: dynamodb:Query on resource: arn:...:table/T/index/I because no
    identity-based policy allows the dynamodb:Query action` (SQS lower-cases the action)."""
    shown = action.lower() if service == "sqs" else action
    where = "" if resource == "*" else f" on resource: {resource}"
    reason = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {shown} action"
    )
    return f"User: {principal} is not authorized to perform: {shown}{where} {reason}"


def error_code(service: str) -> str:
    return _ACCESS_DENIED_CODE.get(service, "AccessDeniedException")


@dataclass
class Refusal:
    service: str
    action: str
    resource: str
    code: str
    message: str


@dataclass
class Guard:
    """The check of one execution environment; `used` and `refused` are read by the worker after
    each invocation (it reports them to the runtime) and emptied."""

    policy: Policy
    log: Callable[[str], None]
    used: set[tuple[str, str]] = field(default_factory=set)
    refused: list[Refusal] = field(default_factory=list)
    clients_created: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, service: str, operation: str, params: Mapping[str, Any], region: str) -> Refusal | None:
        for action, resource in authorizations(service, operation, params, region, self.policy.account):
            decision = self.policy.decide(action, resource)
            if decision.allowed:
                with self._lock:
                    self.used.add((action, resource))
                continue
            refusal = Refusal(
                service,
                action,
                resource,
                error_code(service),
                denial_message(
                    self.policy.principal, action, resource, explicit=decision.explicit_deny, service=service
                ),
            )
            with self._lock:
                self.refused.append(refusal)
            self.log(f"[IAM] {refusal.code} {operation}: {action} on {resource}: {refusal.message}")
            return refusal
        return None

    def drain(self) -> dict[str, Any]:
        with self._lock:
            report = {
                "used": sorted(self.used),
                "refused": [[refusal.action, refusal.resource] for refusal in self.refused],
                "clients_created": self.clients_created,
            }
            self.used.clear()
            self.refused.clear()
            self.clients_created = 0
        return report

    # botocore event handlers

    def before_parameter_build(self, params: Any, model: Any, context: Any, **_: Any) -> None:
        service = iam_prefix(model.service_model.signing_name or model.service_model.endpoint_prefix)
        region = str(context.get("client_region") or "us-east-1")
        refusal = self.check(service, model.name, params or {}, region)
        if refusal is not None:
            context["local_iam_refusal"] = refusal

    def before_call(self, context: Any, **_: Any) -> Any:
        refusal = context.get("local_iam_refusal")
        if refusal is None:
            return None
        from botocore.awsrequest import AWSResponse

        status = 403 if refusal.service in ("sqs", "cloudwatch") else 400
        http = AWSResponse("https://local-iam/", status, {}, None)
        parsed = {
            "Error": {"Code": refusal.code, "Message": refusal.message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        }
        return http, parsed

    def client_created(self, **_: Any) -> None:
        with self._lock:
            self.clients_created += 1

    def handlers(self) -> list[tuple[str, Callable[..., Any]]]:
        return [
            ("before-parameter-build", self.before_parameter_build),
            ("before-call", self.before_call),
            ("creating-client-class", self.client_created),
        ]


def granted_actions(statements: Iterable[Statement]) -> list[tuple[str, str, str]]:
    """(action, resource, source) for each Allow of the statements, one row per pair."""
    rows = []
    for statement in statements:
        if statement.effect != "Allow":
            continue
        for action in statement.actions:
            for resource in statement.resources or ("*",):
                rows.append((action, resource, statement.source))
    return rows


def used_by(grant: tuple[str, str, str], used: Iterable[tuple[str, str]]) -> bool:
    action, resource, _ = grant
    action_pattern = _pattern(action, ignore_case=True)
    resource_pattern = _pattern(resource, ignore_case=False)
    return any(action_pattern.match(a) and resource_pattern.match(r) for a, r in used)
