"""Read template.yaml the way the local stack needs it.

The SAM template is the single source of truth for what runs locally: functions, their routes and
schedules, tables and event buses. This module loads it (CloudFormation short tags included),
expands its Fn::ForEach loops (AWS::LanguageExtensions), resolves the intrinsic functions with
local pseudo parameters, applies SAM Globals, and exposes plain dataclasses. Nothing here knows
today's function list, so new functions, routes, schedules, tables and GSIs are served without
code changes.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local.iam import Policy
from local.iam_policy import function_policy

logger = logging.getLogger(__name__)

LOCAL_STACK_NAME = "qpay-local"
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"

PSEUDO_PARAMETERS: dict[str, Any] = {
    "AWS::StackName": LOCAL_STACK_NAME,
    "AWS::Region": LOCAL_REGION,
    "AWS::AccountId": LOCAL_ACCOUNT_ID,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::Partition": "aws",
    "AWS::StackId": (
        f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stack/{LOCAL_STACK_NAME}/"
        "00000000-0000-0000-0000-000000000000"
    ),
    "AWS::NotificationARNs": [],
}

# Lambda's own defaults, which SAM leaves to the service when the template does not say.
LAMBDA_DEFAULT_TIMEOUT_S = 3
LAMBDA_DEFAULT_MEMORY_MB = 128
# HTTP API integrations give up after 30 s whatever the function's timeout.
HTTP_API_MAX_INTEGRATION_TIMEOUT_MS = 30_000


class TemplateError(Exception):
    """template.yaml cannot be read or uses something the local stack cannot resolve."""


class _NoValue:
    """AWS::NoValue: the property is removed, as CloudFormation does."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that turns short tags (!Ref, !Sub, ...) into their long JSON form."""


def _construct_short_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]

    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # "!GetAtt Resource.Attribute.With.Dots" splits at the first dot only.
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_short_tag)


def load_yaml(path: str | Path, *, expand: bool = True) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template file (YAML or JSON) into plain data, with its
    Fn::ForEach loops expanded as CloudFormation expands them before SAM's transform runs
    (`expand=False`: as written)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=CloudFormationLoader)
    except FileNotFoundError as error:
        raise TemplateError(f"template not found: {path}") from error
    except yaml.YAMLError as error:
        raise TemplateError(f"cannot parse {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return expand_language_extensions(data) if expand else data


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
_FOR_EACH = "Fn::ForEach::"
# Fn::ForEach is allowed in these sections (and inside a resource's properties), nowhere else.
_FOR_EACH_SECTIONS = ("Conditions", "Resources", "Outputs")


def expand_language_extensions(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The template after the AWS::LanguageExtensions transform's Fn::ForEach expansion.

    As CloudFormation documents it (intrinsic-function-reference-foreach): the loop
    `"Fn::ForEach::Name": [Identifier, [values], {OutputKey: OutputValue}]` is replaced by one
    copy of the fragment per value, `${Identifier}` and `&{Identifier}` (the value without its
    non-alphanumeric characters) replaced in every key and string, and `{"Ref": Identifier}` by
    the value. Loops nest. The collection must be a literal list here: the local stack does not
    resolve a parameter or a mapping into one. The other intrinsics are left for the Resolver.
    """
    transforms = raw.get("Transform")
    listed = transforms if isinstance(transforms, list) else [transforms]
    if LANGUAGE_EXTENSIONS not in listed:
        return dict(raw)
    expanded = dict(raw)
    for section in _FOR_EACH_SECTIONS:
        if isinstance(raw.get(section), dict):
            expanded[section] = _expand_loops(raw[section], section)
    return expanded


def _expand_loops(node: Any, where: str) -> Any:
    if isinstance(node, list):
        return [_expand_loops(item, where) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(key, str) and key.startswith(_FOR_EACH):
            copies = _loop_copies(key, value, where)
        else:
            copies = {key: _expand_loops(value, f"{where}.{key}")}
        for name, copy in copies.items():
            if name in result:
                raise TemplateError(f"{where}: {name} is declared twice (Fn::ForEach makes it again)")
            result[name] = copy
    return result


def _loop_copies(key: str, loop: Any, where: str) -> dict[str, Any]:
    if not (isinstance(loop, list) and len(loop) == 3 and isinstance(loop[0], str)):
        raise TemplateError(f"{where}.{key} must be [Identifier, Collection, {{OutputKey: OutputValue}}]")
    identifier, collection, fragment = loop
    if not isinstance(collection, list) or not all(isinstance(item, str) for item in collection):
        raise TemplateError(
            f"{where}.{key}: the local stack expands Fn::ForEach over a literal list of strings"
        )
    if not isinstance(fragment, dict):
        raise TemplateError(f"{where}.{key}: the fragment must be a mapping of OutputKey to OutputValue")
    copies: dict[str, Any] = {}
    for value in collection:
        expanded = _expand_loops(_substitute(fragment, identifier, value), where)
        for name, copy in expanded.items():
            if name in copies:
                raise TemplateError(f"{where}.{key}: {name} is made twice")
            copies[name] = copy
    return copies


def _substitute(node: Any, identifier: str, value: str) -> Any:
    if isinstance(node, str):
        stripped = re.sub(r"[^A-Za-z0-9]", "", value)
        return node.replace("${" + identifier + "}", value).replace("&{" + identifier + "}", stripped)
    if isinstance(node, list):
        return [_substitute(item, identifier, value) for item in node]
    if isinstance(node, dict):
        if node == {"Ref": identifier}:
            return value
        return {_substitute(k, identifier, value): _substitute(v, identifier, value) for k, v in node.items()}
    return node


def _stringify(value: Any) -> str:
    """CloudFormation turns scalars into strings wherever a string is expected (env, Sub)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key,) = value
    return key == "Ref" or key.startswith("Fn::") or (key == "Condition" and isinstance(value[key], str))


class Resolver:
    """Evaluates intrinsic functions against local values.

    Local naming rules: a table's name is its logical id, an event bus's name is its resolved Name,
    any other Ref gives the logical id. GetAtt gives plausible fake ARNs.
    """

    _SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")

    def __init__(self, raw: Mapping[str, Any], parameter_overrides: Mapping[str, Any] | None = None):
        self.raw = raw
        self.resources: dict[str, Any] = raw.get("Resources") or {}
        self.parameter_specs: dict[str, Any] = raw.get("Parameters") or {}
        self.mappings: dict[str, Any] = raw.get("Mappings") or {}
        self.condition_specs: dict[str, Any] = raw.get("Conditions") or {}
        self.overrides = dict(parameter_overrides or {})
        unknown = set(self.overrides) - set(self.parameter_specs)
        if unknown:
            raise TemplateError(f"parameter overrides for unknown parameters: {sorted(unknown)}")
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    def parameter(self, name: str) -> Any:
        spec = self.parameter_specs[name] or {}
        if name in self.overrides:
            value = self.overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no Default; pass it as an override")
        param_type = str(spec.get("Type", "String"))
        if param_type == "CommaDelimitedList" or param_type.startswith("List<"):
            return value if isinstance(value, list) else [part.strip() for part in str(value).split(",")]
        # CloudFormation hands every scalar parameter over as a string, numbers included.
        return _stringify(value)

    def condition(self, name: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        if name not in self.condition_specs:
            raise TemplateError(f"unknown condition {name}")
        if name in self._evaluating:
            raise TemplateError(f"condition {name} refers to itself")
        self._evaluating.add(name)
        try:
            result = bool(self.resolve(self.condition_specs[name]))
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = result
        return result

    def resource_enabled(self, logical_id: str) -> bool:
        condition = (self.resources.get(logical_id) or {}).get("Condition")
        return True if condition is None else self.condition(condition)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if _is_intrinsic(value):
            ((key, argument),) = value.items()
            return self._intrinsic(key, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _intrinsic(self, key: str, argument: Any) -> Any:
        handlers = {
            "Ref": self._ref,
            "Condition": self.condition,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::If": self._if,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::Equals": self._equals,
            "Fn::Not": lambda arg: not self._single_bool(arg),
            "Fn::And": lambda arg: all(bool(self.resolve(item)) for item in arg),
            "Fn::Or": lambda arg: any(bool(self.resolve(item)) for item in arg),
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": lambda arg: base64.b64encode(_stringify(self.resolve(arg)).encode()).decode(),
            "Fn::GetAZs": lambda arg: [f"{self.resolve(arg) or LOCAL_REGION}{zone}" for zone in "abc"],
            "Fn::ImportValue": self._import_value,
            "Fn::Length": lambda arg: len(self.resolve(arg)),
            "Fn::ToJsonString": lambda arg: json.dumps(self.resolve(arg), separators=(",", ":")),
            "Fn::Cidr": lambda arg: ["10.0.0.0/24"] * int(self.resolve(arg)[1]),
        }
        handler = handlers.get(key)
        if handler is None:
            raise TemplateError(f"{key} is not supported by the local stack")
        return handler(argument)

    def _ref(self, name: Any) -> Any:
        name = self.resolve(name)
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameter_specs:
            return self.parameter(name)
        if name in self.resources:
            resource_type = (self.resources[name] or {}).get("Type", "")
            if resource_type == "AWS::SQS::Queue":
                # A queue's Ref is its URL; boto3 pointed at moto accepts this AWS-shaped one.
                return fake_attribute(name, resource_type, "QueueUrl", self)
            if resource_type in ("AWS::SecretsManager::Secret", "AWS::SNS::Topic"):
                return fake_attribute(name, resource_type, "Arn", self)
            return self.resource_name(name)
        raise TemplateError(f"Ref to unknown name {name!r}")

    def resource_name(self, logical_id: str) -> str:
        resource = self.resources[logical_id] or {}
        named_by = {"AWS::Events::EventBus": "Name", "AWS::SQS::Queue": "QueueName"}.get(
            resource.get("Type", "")
        )
        if named_by is not None:
            name = (resource.get("Properties") or {}).get(named_by)
            return _stringify(self.resolve(name)) if name is not None else logical_id
        return logical_id

    def _get_att(self, argument: Any) -> Any:
        argument = self.resolve(argument)
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        logical_id, attribute = argument[0], argument[1]
        if logical_id not in self.resources:
            raise TemplateError(f"GetAtt on unknown resource {logical_id!r}")
        return fake_attribute(logical_id, self.resources[logical_id].get("Type", ""), attribute, self)

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in (argument[1] or {}).items()}
        else:
            text, variables = argument, {}

        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return _stringify(variables[expression])
            if "." in expression and not expression.startswith("AWS::"):
                return _stringify(self._get_att(expression.split(".", 1)))
            return _stringify(self._ref(expression))

        return self._SUB_VARIABLE.sub(substitute, text)

    def _join(self, argument: Any) -> str:
        delimiter, items = argument[0], self.resolve(argument[1])
        return delimiter.join(_stringify(item) for item in items)

    def _if(self, argument: Any) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _select(self, argument: Any) -> Any:
        index, items = self.resolve(argument[0]), self.resolve(argument[1])
        return items[int(index)]

    def _split(self, argument: Any) -> list[str]:
        delimiter, text = argument[0], self.resolve(argument[1])
        return _stringify(text).split(delimiter)

    def _equals(self, argument: Any) -> bool:
        left, right = (self.resolve(item) for item in argument)
        return _stringify(left) == _stringify(right)

    def _single_bool(self, argument: Any) -> bool:
        return bool(self.resolve(argument[0] if isinstance(argument, list) else argument))

    def _find_in_map(self, argument: Any) -> Any:
        map_name, top, second = (self.resolve(item) for item in argument[:3])
        try:
            return self.mappings[map_name][top][second]
        except KeyError as error:
            if len(argument) > 3 and isinstance(argument[3], dict) and "DefaultValue" in argument[3]:
                return self.resolve(argument[3]["DefaultValue"])
            raise TemplateError(f"FindInMap {map_name}/{top}/{second} not found") from error

    def _import_value(self, argument: Any) -> str:
        name = _stringify(self.resolve(argument))
        # Another stack's export does not exist locally; a recognisable placeholder beats failing.
        logger.warning("Fn::ImportValue %s has no local value; using 'imported-%s'", name, name)
        return f"imported-{name}"


def fake_attribute(logical_id: str, resource_type: str, attribute: str, resolver: Resolver) -> str:
    """A plausible value for GetAtt: ARNs in the local account and region."""
    region, account = LOCAL_REGION, LOCAL_ACCOUNT_ID
    name = resolver.resource_name(logical_id)
    if resource_type in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
        table_arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        if attribute == "StreamArn":
            return f"{table_arn}/stream/1970-01-01T00:00:00.000"
        return table_arn
    if resource_type == "AWS::Events::EventBus":
        return f"arn:aws:events:{region}:{account}:event-bus/{name}" if attribute == "Arn" else name
    if resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
        return f"arn:aws:lambda:{region}:{account}:function:{name}"
    if resource_type == "AWS::SQS::Queue":
        if attribute == "QueueUrl":
            return f"https://sqs.{region}.amazonaws.com/{account}/{name}"
        return f"arn:aws:sqs:{region}:{account}:{name}" if attribute == "Arn" else name
    if resource_type == "AWS::SNS::Topic":
        return f"arn:aws:sns:{region}:{account}:{name}"
    if resource_type == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf"
    if resource_type == "AWS::IAM::Role":
        return f"arn:aws:iam::{account}:role/{name}"
    if resource_type == "AWS::Logs::LogGroup":
        return f"arn:aws:logs:{region}:{account}:log-group:{name}"
    service = resource_type.split("::")[1].lower() if resource_type.count("::") >= 2 else "unknown"
    kind = resource_type.split("::")[-1].lower() if resource_type else "resource"
    if attribute in ("Arn", ""):
        return f"arn:aws:{service}:{region}:{account}:{kind}/{name}"
    return f"{name}.{attribute}"


@dataclass(frozen=True)
class CorsSpec:
    """An HttpApi's CorsConfiguration, as API Gateway applies it."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    def allows(self, origin: str) -> bool:
        return "*" in self.allow_origins or origin in self.allow_origins


@dataclass(frozen=True)
class LayerSpec:
    logical_id: str
    content_uri: Path


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str
    runtime: str | None
    timeout_s: int
    memory_size_mb: int
    environment: dict[str, str]
    layers: tuple[str, ...] = ()
    # ReservedConcurrentExecutions: also the most environments the local runtime starts.
    reserved_concurrency: int | None = None
    # The role's policy as SAM builds it (local/iam_policy.py); None for a role from elsewhere.
    policy: Policy | None = None
    # SnapStart on published versions: later environments are restored from the first one's.
    snap_start: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.logical_id}"

    @property
    def module_and_attribute(self) -> tuple[str, str]:
        module, _, attribute = self.handler.rpartition(".")
        return module, attribute


@dataclass(frozen=True)
class HttpRoute:
    """One HttpApi event: `method` is upper case or ANY; `path` keeps `{param}` placeholders."""

    method: str
    path: str
    function_id: str
    event_id: str
    api_id: str
    authorizer: str | None
    authorization_scopes: tuple[str, ...] = ()
    identity_header: str = "authorization"
    payload_format_version: str = "2.0"
    timeout_ms: int = HTTP_API_MAX_INTEGRATION_TIMEOUT_MS

    @property
    def auth_required(self) -> bool:
        return self.authorizer is not None

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class ScheduleSpec:
    function_id: str
    event_id: str
    event_type: str  # Schedule (EventBridge rule) or ScheduleV2 (EventBridge Scheduler)
    expression: str
    enabled: bool
    rule_name: str
    input: str | None = None

    @property
    def rule_arn(self) -> str:
        if self.event_type == "ScheduleV2":
            return f"arn:aws:scheduler:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:schedule/default/{self.rule_name}"
        return f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:rule/{self.rule_name}"


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    attribute_definitions: list[dict[str, Any]]
    key_schema: list[dict[str, Any]]
    global_secondary_indexes: list[dict[str, Any]] = field(default_factory=list)
    local_secondary_indexes: list[dict[str, Any]] = field(default_factory=list)
    billing_mode: str = "PAY_PER_REQUEST"
    time_to_live_specification: dict[str, Any] | None = None
    stream_specification: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.logical_id

    @property
    def ttl_attribute(self) -> str | None:
        spec = self.time_to_live_specification or {}
        enabled = spec.get("Enabled") in (True, "true", "True")
        return spec.get("AttributeName") if enabled else None


@dataclass(frozen=True)
class EventBusSpec:
    logical_id: str
    name: str


# AWS::SQS::Queue properties that are queue attributes of CreateQueue (the rest are AWS-side:
# encryption, policies, tags).
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
)


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    name: str
    # CreateQueue attributes, strings as SQS wants them; RedrivePolicy as JSON naming its DLQ's ARN.
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{self.name}"

    @property
    def url(self) -> str:
        return f"https://sqs.{LOCAL_REGION}.amazonaws.com/{LOCAL_ACCOUNT_ID}/{self.name}"

    @property
    def dead_letter_queue_name(self) -> str | None:
        redrive = self.attributes.get("RedrivePolicy")
        if not redrive:
            return None
        return str(json.loads(redrive)["deadLetterTargetArn"]).rsplit(":", 1)[-1]

    @property
    def visibility_timeout_s(self) -> int:
        return int(self.attributes.get("VisibilityTimeout", "30"))


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event of a function: an event source mapping that polls the queue and invokes."""

    function_id: str
    event_id: str
    queue_name: str
    batch_size: int = 10
    maximum_batching_window_s: int = 0
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class RuleTarget:
    """One target of an EventBridge rule: an SQS queue of the template, or an API destination
    (an HTTP endpoint, with the retry policy and dead-letter queue EventBridge would use)."""

    target_id: str
    kind: str  # "sqs", "api-destination" or "other"
    arn: str
    queue_name: str | None = None
    endpoint: str | None = None
    http_method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    api_key_header: str | None = None
    maximum_retry_attempts: int = 185
    maximum_event_age_s: int = 86400
    dead_letter_queue_name: str | None = None


@dataclass(frozen=True)
class EventRuleSpec:
    logical_id: str
    bus_name: str
    event_pattern: dict[str, Any]
    targets: list[RuleTarget]
    enabled: bool = True


@dataclass(frozen=True)
class Template:
    path: Path
    root: Path
    parameters: dict[str, Any]
    functions: dict[str, FunctionSpec]
    routes: list[HttpRoute]
    schedules: list[ScheduleSpec]
    tables: dict[str, TableSpec]
    event_buses: list[EventBusSpec]
    layers: list[LayerSpec]
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    sqs_event_sources: list[SqsEventSource] = field(default_factory=list)
    cors: CorsSpec | None = None
    event_rules: list[EventRuleSpec] = field(default_factory=list)

    def function(self, logical_id: str) -> FunctionSpec:
        return self.functions[logical_id]


def _sam_merge(global_value: Any, local_value: Any) -> Any:
    """SAM Globals semantics: maps merge, lists append (globals first), anything else is replaced."""
    if _is_intrinsic(global_value) or _is_intrinsic(local_value):
        return local_value
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _sam_merge(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _as_int(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise TemplateError(f"{what} must be a number, got {value!r}") from error


def _identity_header(authorizer_config: Mapping[str, Any]) -> str:
    source = authorizer_config.get("IdentitySource") or "$request.header.Authorization"
    if isinstance(source, list):
        source = source[0] if source else "$request.header.Authorization"
    prefix = "$request.header."
    if isinstance(source, str) and source.startswith(prefix):
        return source[len(prefix) :].lower()
    logger.warning("identity source %r is not a header; the local front door reads Authorization", source)
    return "authorization"


class _TemplateReader:
    def __init__(self, path: Path, raw: dict[str, Any], resolver: Resolver):
        self.path = path
        self.root = path.parent
        self.raw = raw
        self.resolver = resolver
        self.globals: dict[str, Any] = raw.get("Globals") or {}

    def enabled_resources(self, *types: str) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for logical_id, resource in self.resolver.resources.items():
            resource = resource or {}
            if resource.get("Type") in types and self.resolver.resource_enabled(logical_id):
                found.append((logical_id, resource))
        return found

    def function_properties(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        merged = _sam_merge(self.globals.get("Function") or {}, resource.get("Properties") or {})
        return merged

    def layers(self) -> list[LayerSpec]:
        layers = []
        for logical_id, resource in self.enabled_resources("AWS::Serverless::LayerVersion"):
            content_uri = self.resolver.resolve((resource.get("Properties") or {}).get("ContentUri"))
            if not isinstance(content_uri, str):
                logger.warning("layer %s has no local ContentUri; it is not put on sys.path", logical_id)
                continue
            layers.append(LayerSpec(logical_id, (self.root / content_uri).resolve()))
        return layers

    def functions(self) -> dict[str, tuple[FunctionSpec, dict[str, Any]]]:
        functions: dict[str, tuple[FunctionSpec, dict[str, Any]]] = {}
        for logical_id, resource in self.enabled_resources("AWS::Serverless::Function"):
            raw_properties = self.function_properties(resource)
            if raw_properties.get("PackageType") == "Image" or "InlineCode" in raw_properties:
                logger.warning("function %s is not a zip function with local code; not served", logical_id)
                continue
            code_uri = self.resolver.resolve(raw_properties.get("CodeUri"))
            handler = self.resolver.resolve(raw_properties.get("Handler"))
            if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
                logger.warning("function %s has no local CodeUri/Handler; not served", logical_id)
                continue
            variables = self.resolver.resolve(
                (raw_properties.get("Environment") or {}).get("Variables") or {}
            )
            layers = self.resolver.resolve(raw_properties.get("Layers") or [])
            reserved = self.resolver.resolve(raw_properties.get("ReservedConcurrentExecutions"))
            spec = FunctionSpec(
                logical_id=logical_id,
                code_uri=(self.root / code_uri).resolve(),
                handler=handler,
                runtime=self.resolver.resolve(raw_properties.get("Runtime")),
                timeout_s=_as_int(
                    self.resolver.resolve(raw_properties.get("Timeout")),
                    LAMBDA_DEFAULT_TIMEOUT_S,
                    f"{logical_id}.Timeout",
                ),
                memory_size_mb=_as_int(
                    self.resolver.resolve(raw_properties.get("MemorySize")),
                    LAMBDA_DEFAULT_MEMORY_MB,
                    f"{logical_id}.MemorySize",
                ),
                environment={key: _stringify(value) for key, value in variables.items()},
                layers=tuple(_stringify(layer) for layer in layers),
                reserved_concurrency=(
                    None
                    if reserved is None or reserved is NO_VALUE
                    else _as_int(reserved, 0, f"{logical_id}.ReservedConcurrentExecutions")
                ),
                policy=function_policy(
                    self.resolver,
                    logical_id,
                    raw_properties,
                    stack_name=LOCAL_STACK_NAME,
                    region=LOCAL_REGION,
                    account=LOCAL_ACCOUNT_ID,
                ),
                snap_start=(
                    (self.resolver.resolve(raw_properties.get("SnapStart")) or {}).get("ApplyOn")
                    == "PublishedVersions"
                ),
            )
            functions[logical_id] = (spec, raw_properties.get("Events") or {})
        return functions

    def api_auth(self, api_id: str) -> dict[str, Any]:
        api_globals = self.globals.get("HttpApi") or {}
        resource = self.resolver.resources.get(api_id) or {}
        properties = _sam_merge(api_globals, resource.get("Properties") or {})
        return self.resolver.resolve(properties.get("Auth") or {})

    def http_route(self, function_id: str, event_id: str, properties: dict[str, Any]) -> HttpRoute:
        properties = self.resolver.resolve(properties)
        # Without ApiId SAM attaches the route to its implicit API, configured by Globals.HttpApi.
        api_id = _stringify(properties.get("ApiId") or "ServerlessHttpApi")
        api_auth = self.api_auth(api_id)
        event_auth = properties.get("Auth") or {}
        authorizer = event_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
        if authorizer in (None, "NONE"):
            authorizer = None
        authorizer_config = (api_auth.get("Authorizers") or {}).get(authorizer, {}) if authorizer else {}
        if authorizer and "JwtConfiguration" not in authorizer_config:
            logger.warning(
                "route %s/%s uses authorizer %s which is not a JWT authorizer; checking the local JWT",
                function_id,
                event_id,
                authorizer,
            )
        scopes = event_auth.get("AuthorizationScopes") or authorizer_config.get("AuthorizationScopes") or []
        path, method = properties.get("Path"), properties.get("Method")
        if path is None and method is None:
            path, method = "$default", "ANY"
        payload_format = _stringify(properties.get("PayloadFormatVersion", "2.0"))
        if payload_format != "2.0":
            logger.warning(
                "route %s %s asks for payload format %s; the local front door builds 2.0 events",
                method,
                path,
                payload_format,
            )
        timeout_ms = _as_int(
            properties.get("TimeoutInMillis"),
            HTTP_API_MAX_INTEGRATION_TIMEOUT_MS,
            f"{function_id}.{event_id}.TimeoutInMillis",
        )
        return HttpRoute(
            method=_stringify(method or "ANY").upper(),
            path=_stringify(path or "/"),
            function_id=function_id,
            event_id=event_id,
            api_id=api_id,
            authorizer=authorizer,
            authorization_scopes=tuple(scopes),
            identity_header=_identity_header(authorizer_config) if authorizer else "authorization",
            payload_format_version="2.0",
            timeout_ms=min(timeout_ms, HTTP_API_MAX_INTEGRATION_TIMEOUT_MS),
        )

    def schedule(
        self, function_id: str, event_id: str, event_type: str, properties: dict[str, Any]
    ) -> ScheduleSpec:
        properties = self.resolver.resolve(properties)
        expression = properties.get("Schedule" if event_type == "Schedule" else "ScheduleExpression")
        state = _stringify(properties.get("State", "ENABLED")).upper()
        enabled = properties.get("Enabled", True) in (True, "true", "True") and state != "DISABLED"
        default_name = f"{LOCAL_STACK_NAME}-{function_id}{event_id}"[:64]
        input_value = properties.get("Input")
        return ScheduleSpec(
            function_id=function_id,
            event_id=event_id,
            event_type=event_type,
            expression=_stringify(expression or ""),
            enabled=enabled,
            rule_name=_stringify(properties.get("Name") or default_name),
            input=None if input_value is None else _stringify(input_value),
        )

    def tables(self) -> dict[str, TableSpec]:
        tables: dict[str, TableSpec] = {}
        for logical_id, resource in self.enabled_resources("AWS::DynamoDB::Table"):
            properties = self.resolver.resolve(resource.get("Properties") or {})
            tables[logical_id] = TableSpec(
                logical_id=logical_id,
                attribute_definitions=properties.get("AttributeDefinitions") or [],
                key_schema=properties.get("KeySchema") or [],
                global_secondary_indexes=properties.get("GlobalSecondaryIndexes") or [],
                local_secondary_indexes=properties.get("LocalSecondaryIndexes") or [],
                billing_mode=properties.get("BillingMode", "PROVISIONED"),
                time_to_live_specification=properties.get("TimeToLiveSpecification"),
                stream_specification=properties.get("StreamSpecification"),
            )
        type_codes = {"String": "S", "Number": "N", "Binary": "B"}
        for logical_id, resource in self.enabled_resources("AWS::Serverless::SimpleTable"):
            properties = self.resolver.resolve(resource.get("Properties") or {})
            primary_key = properties.get("PrimaryKey") or {"Name": "id", "Type": "String"}
            tables[logical_id] = TableSpec(
                logical_id=logical_id,
                attribute_definitions=[
                    {"AttributeName": primary_key["Name"], "AttributeType": type_codes[primary_key["Type"]]}
                ],
                key_schema=[{"AttributeName": primary_key["Name"], "KeyType": "HASH"}],
                billing_mode="PAY_PER_REQUEST",
            )
        return tables

    def cors(self, api_ids: list[str]) -> CorsSpec | None:
        """The CorsConfiguration of the (first) HttpApi the routes use, or of Globals.HttpApi."""
        api_globals = self.globals.get("HttpApi") or {}
        for api_id in api_ids or [""]:
            resource = self.resolver.resources.get(api_id) or {}
            properties = _sam_merge(api_globals, resource.get("Properties") or {})
            config = self.resolver.resolve(properties.get("CorsConfiguration"))
            if not config or config is NO_VALUE:
                continue
            if config is True:
                return CorsSpec(allow_origins=("*",), allow_methods=("*",), allow_headers=("*",))

            def listed(key: str, values: dict[str, Any] = config) -> tuple[str, ...]:
                return tuple(_stringify(item) for item in values.get(key) or ())

            max_age = config.get("MaxAge")
            return CorsSpec(
                allow_origins=listed("AllowOrigins"),
                allow_methods=tuple(method.upper() for method in listed("AllowMethods")),
                allow_headers=tuple(header.lower() for header in listed("AllowHeaders")),
                expose_headers=listed("ExposeHeaders"),
                max_age=None if max_age is None else _as_int(max_age, 0, "CorsConfiguration.MaxAge"),
                allow_credentials=config.get("AllowCredentials") in (True, "true"),
            )
        return None

    def event_buses(self) -> list[EventBusSpec]:
        return [
            EventBusSpec(logical_id, self.resolver.resource_name(logical_id))
            for logical_id, _ in self.enabled_resources("AWS::Events::EventBus")
        ]

    def queues(self) -> dict[str, QueueSpec]:
        queues: dict[str, QueueSpec] = {}
        for logical_id, resource in self.enabled_resources("AWS::SQS::Queue"):
            properties = self.resolver.resolve(resource.get("Properties") or {})
            attributes = {
                name: _stringify(properties[name]) for name in _QUEUE_ATTRIBUTES if name in properties
            }
            redrive = properties.get("RedrivePolicy")
            if redrive:
                redrive = json.loads(redrive) if isinstance(redrive, str) else redrive
                attributes["RedrivePolicy"] = json.dumps(
                    {
                        "deadLetterTargetArn": redrive["deadLetterTargetArn"],
                        "maxReceiveCount": int(redrive["maxReceiveCount"]),
                    }
                )
            name = self.resolver.resource_name(logical_id)
            queues[logical_id] = QueueSpec(logical_id=logical_id, name=name, attributes=attributes)
        return queues

    def event_rules(self, buses: list[EventBusSpec]) -> list[EventRuleSpec]:
        """The rules on the template's buses, with their targets told apart by what they point at."""
        bus_names = {bus.name for bus in buses}
        arns = {
            fake_attribute(logical_id, (resource or {}).get("Type", ""), "Arn", self.resolver): logical_id
            for logical_id, resource in self.resolver.resources.items()
            if self.resolver.resource_enabled(logical_id)
        }
        rules = []
        for logical_id, resource in self.enabled_resources("AWS::Events::Rule"):
            properties = self.resolver.resolve(resource.get("Properties") or {})
            bus = _stringify(properties.get("EventBusName") or "default")
            if bus not in bus_names or not properties.get("EventPattern"):
                continue
            targets = [self._rule_target(target, arns) for target in properties.get("Targets") or []]
            rules.append(
                EventRuleSpec(
                    logical_id=logical_id,
                    bus_name=bus,
                    event_pattern=properties["EventPattern"],
                    targets=targets,
                    enabled=properties.get("State", "ENABLED") == "ENABLED",
                )
            )
        return rules

    def _rule_target(self, target: Mapping[str, Any], arns: Mapping[str, str]) -> RuleTarget:
        arn = _stringify(target.get("Arn"))
        logical_id = arns.get(arn)
        resource_type = (self.resolver.resources.get(logical_id or "") or {}).get("Type")
        retry = target.get("RetryPolicy") or {}
        dead_letter = _stringify((target.get("DeadLetterConfig") or {}).get("Arn") or "")
        common = {
            "target_id": _stringify(target.get("Id")),
            "arn": arn,
            "maximum_retry_attempts": _as_int(retry.get("MaximumRetryAttempts"), 185, "RetryPolicy"),
            "maximum_event_age_s": _as_int(retry.get("MaximumEventAgeInSeconds"), 86400, "RetryPolicy"),
            "dead_letter_queue_name": dead_letter.rsplit(":", 1)[-1] if dead_letter else None,
        }
        if resource_type == "AWS::SQS::Queue" and logical_id is not None:
            return RuleTarget(kind="sqs", queue_name=self.resolver.resource_name(logical_id), **common)
        if resource_type == "AWS::Events::ApiDestination" and logical_id is not None:
            destination = self.resolver.resolve(self.resolver.resources[logical_id].get("Properties") or {})
            headers = ((target.get("HttpParameters") or {}).get("HeaderParameters")) or {}
            return RuleTarget(
                kind="api-destination",
                endpoint=_stringify(destination.get("InvocationEndpoint")),
                http_method=_stringify(destination.get("HttpMethod") or "POST"),
                headers={_stringify(k): _stringify(v) for k, v in headers.items()},
                api_key_header=self._api_key_header(destination.get("ConnectionArn"), arns),
                **common,
            )
        return RuleTarget(kind="other", **common)

    def _api_key_header(self, connection_arn: Any, arns: Mapping[str, str]) -> str | None:
        connection = arns.get(_stringify(connection_arn or ""))
        if connection is None:
            return None
        properties = self.resolver.resolve(self.resolver.resources[connection].get("Properties") or {})
        api_key = ((properties.get("AuthParameters") or {}).get("ApiKeyAuthParameters")) or {}
        name = api_key.get("ApiKeyName")
        return _stringify(name) if name else None

    def sqs_event_source(self, function_id: str, event_id: str, properties: dict[str, Any]) -> SqsEventSource:
        properties = self.resolver.resolve(properties)
        queue = _stringify(properties.get("Queue") or "")
        if not queue.startswith("arn:aws:sqs:"):
            raise TemplateError(f"{function_id}/{event_id}: Queue must be a queue ARN, got {queue!r}")
        scaling = properties.get("ScalingConfig") or {}
        concurrency = scaling.get("MaximumConcurrency")
        return SqsEventSource(
            function_id=function_id,
            event_id=event_id,
            queue_name=queue.rsplit(":", 1)[-1],
            batch_size=_as_int(properties.get("BatchSize"), 10, f"{function_id}.{event_id}.BatchSize"),
            maximum_batching_window_s=_as_int(
                properties.get("MaximumBatchingWindowInSeconds"), 0, f"{function_id}.{event_id}.window"
            ),
            report_batch_item_failures="ReportBatchItemFailures"
            in (properties.get("FunctionResponseTypes") or []),
            maximum_concurrency=None
            if concurrency is None
            else _as_int(concurrency, 2, f"{function_id}.{event_id}.MaximumConcurrency"),
            enabled=properties.get("Enabled", True) in (True, "true", "True"),
        )


def parameters_bound_to_variables(path: str | Path) -> dict[str, tuple[str, str | None]]:
    """{variable: (parameter, separator)} for every function environment variable that is
    `!Ref Parameter`, or `!Join [separator, !Ref ListParameter]` (Globals included), so a setting
    given to `make run` can set the parameter too."""
    raw = load_yaml(Path(path))
    parameters = raw.get("Parameters") or {}
    sources = [((raw.get("Globals") or {}).get("Function") or {})]
    sources += [
        (resource or {}).get("Properties") or {}
        for resource in (raw.get("Resources") or {}).values()
        if (resource or {}).get("Type") == "AWS::Serverless::Function"
    ]
    bound: dict[str, tuple[str, str | None]] = {}
    for properties in sources:
        variables = ((properties.get("Environment") or {}).get("Variables")) or {}
        for variable, value in variables.items():
            if not isinstance(value, dict):
                continue
            if set(value) == {"Ref"} and value["Ref"] in parameters:
                bound[variable] = (value["Ref"], None)
            joined = value.get("Fn::Join") if set(value) == {"Fn::Join"} else None
            if isinstance(joined, list) and len(joined) == 2 and isinstance(joined[1], dict):
                reference = joined[1].get("Ref")
                if set(joined[1]) == {"Ref"} and reference in parameters:
                    bound[variable] = (reference, str(joined[0]))
    return bound


def load_template(path: str | Path, parameter_overrides: Mapping[str, Any] | None = None) -> Template:
    """Load and resolve a SAM template for local serving."""
    path = Path(path).resolve()
    raw = load_yaml(path)
    resolver = Resolver(raw, parameter_overrides)
    reader = _TemplateReader(path, raw, resolver)

    functions: dict[str, FunctionSpec] = {}
    routes: list[HttpRoute] = []
    schedules: list[ScheduleSpec] = []
    sqs_event_sources: list[SqsEventSource] = []
    for function_id, (spec, events) in reader.functions().items():
        functions[function_id] = spec
        for event_id, event in events.items():
            event_type = (event or {}).get("Type")
            properties = (event or {}).get("Properties") or {}
            if event_type == "HttpApi":
                routes.append(reader.http_route(function_id, event_id, properties))
            elif event_type in ("Schedule", "ScheduleV2"):
                schedules.append(reader.schedule(function_id, event_id, event_type, properties))
            elif event_type == "SQS":
                sqs_event_sources.append(reader.sqs_event_source(function_id, event_id, properties))
            else:
                logger.info("event %s/%s of type %s is not served locally", function_id, event_id, event_type)

    _reject_duplicate_routes(routes)
    api_ids = sorted({route.api_id for route in routes})
    if len(api_ids) > 1:
        logger.warning("the routes of %s are all served on the one local front door port", ", ".join(api_ids))
    parameters = {
        name: resolver.parameter(name) for name in resolver.parameter_specs if _has_value(resolver, name)
    }
    return Template(
        path=path,
        root=path.parent,
        parameters=parameters,
        functions=functions,
        routes=routes,
        schedules=schedules,
        tables=reader.tables(),
        event_buses=reader.event_buses(),
        layers=reader.layers(),
        queues=reader.queues(),
        sqs_event_sources=sqs_event_sources,
        cors=reader.cors(api_ids),
        event_rules=reader.event_rules(reader.event_buses()),
    )


def _has_value(resolver: Resolver, name: str) -> bool:
    return name in resolver.overrides or "Default" in (resolver.parameter_specs[name] or {})


def _reject_duplicate_routes(routes: list[HttpRoute]) -> None:
    seen: dict[tuple[str, str, str], HttpRoute] = {}
    for route in routes:
        key = (route.api_id, route.method, route.path)
        if key in seen:
            other = seen[key]
            raise TemplateError(
                f"route {route.route_key} is declared twice: {other.function_id}/{other.event_id} "
                f"and {route.function_id}/{route.event_id}"
            )
        seen[key] = route


def create_tables(dynamodb_client: Any, template: Template | str | Path) -> list[str]:
    """Create every table of the template that does not exist yet; return the names created.

    Used against DynamoDB Local by the stack and against moto by the test suites, so both build
    their tables from template.yaml. Tables are always on-demand locally. TTL is enabled only when
    it is not already on (DynamoDB Local rejects enabling it twice).
    """
    if not isinstance(template, Template):
        template = load_template(template)
    existing = set(_list_table_names(dynamodb_client))
    created = []
    for table in template.tables.values():
        _check_projections(table)
        if table.name not in existing:
            dynamodb_client.create_table(**_create_table_request(table))
            created.append(table.name)
        _wait_active(dynamodb_client, table.name)
        if table.ttl_attribute:
            _ensure_ttl(dynamodb_client, table.name, table.ttl_attribute)
    return created


def _list_table_names(client: Any) -> list[str]:
    names: list[str] = []
    request: dict[str, Any] = {}
    while True:
        page = client.list_tables(**request)
        names.extend(page.get("TableNames", []))
        if not page.get("LastEvaluatedTableName"):
            return names
        request["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]


# DynamoDB's limits on INCLUDE projections, which DynamoDB Local does not enforce: at most 20
# attributes per index, 100 over all of a table's indexes (each index counts its own).
MAX_PROJECTED_PER_INDEX = 20
MAX_PROJECTED_PER_TABLE = 100


def _check_projections(table: TableSpec) -> None:
    indexes = [*table.global_secondary_indexes, *table.local_secondary_indexes]
    total = 0
    for index in indexes:
        projected = (index.get("Projection") or {}).get("NonKeyAttributes") or []
        total += len(projected)
        if len(projected) > MAX_PROJECTED_PER_INDEX:
            raise TemplateError(
                f"{table.name}: index {index.get('IndexName')} projects {len(projected)} NonKeyAttributes; "
                f"DynamoDB allows at most {MAX_PROJECTED_PER_INDEX} per index"
            )
    if total > MAX_PROJECTED_PER_TABLE:
        raise TemplateError(
            f"{table.name}: its indexes project {total} NonKeyAttributes; DynamoDB allows at most "
            f"{MAX_PROJECTED_PER_TABLE} per table"
        )


def _create_table_request(table: TableSpec) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": table.name,
        "AttributeDefinitions": table.attribute_definitions,
        "KeySchema": table.key_schema,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.global_secondary_indexes:
        # Throughput and warm-throughput settings are AWS-side capacity knobs, meaningless locally.
        request["GlobalSecondaryIndexes"] = [
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
            for index in table.global_secondary_indexes
        ]
    if table.local_secondary_indexes:
        request["LocalSecondaryIndexes"] = [
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
            for index in table.local_secondary_indexes
        ]
    stream = table.stream_specification
    if stream and stream.get("StreamViewType"):
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return request


def _wait_active(client: Any, table_name: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.describe_table(TableName=table_name)["Table"].get("TableStatus")
        if status == "ACTIVE" or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _ensure_ttl(client: Any, table_name: str, attribute: str) -> None:
    description = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
    if description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if description.get("AttributeName") != attribute:
            logger.warning(
                "table %s already has TTL on %s, template says %s",
                table_name,
                description.get("AttributeName"),
                attribute,
            )
        return
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )


if __name__ == "__main__":
    # `python -m local.template template.yaml`: the template with its Fn::ForEach loops expanded,
    # as JSON (what checkov scans: it does not expand the loops itself and would skip them).
    import sys

    json.dump(load_yaml(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"), sys.stdout, indent=1)
