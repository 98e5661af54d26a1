"""AWS's own faults in the local runtime: DynamoDB transaction conflicts, throttling and internal
errors that outlast botocore's retries, timeouts, EventBridge and SQS batch entries that fail, and
execution environments killed mid-invocation. DynamoDB Local, moto and a local process never
produce them; AWS does, so the local stack does too when asked.

Set at `make run` with LOCAL_AWS_FAULTS (a JSON list of rules, or @path to a file holding one),
and changed while the stack runs through the invoke API (`PUT /_local/aws-faults` with the same
JSON; `GET` shows the rules, `DELETE` clears them). A rule:

    {"function": "QPayWebhookFunction",   # or "*" (default): which functions' calls it hits
     "service": "dynamodb",               # dynamodb | events | sqs | lambda (fault Kill)
     "operation": "writes",               # an operation (UpdateItem), "writes", "reads" or "*"
     "fault": "TransactionConflict",      # see FAULTS
     "rate": 0.2}                         # the share of matching calls that fail (0..1)

Injected into the handlers' real botocore clients through botocore's event hooks (installed by
local/botocore_hooks.py after local/iam.py's, so a refused call is refused before any fault is
drawn), so the code under test is the code that ships: a faulted call is answered
at `before-call` with the error AWS would return after botocore's own retries, and botocore raises
it through its own code path. Workers re-read the rules file when it changes, so a change made
while the stack runs reaches every execution environment at its next AWS call.

Standard library only: an execution environment (local/lambda_worker.py) loads this file by its
path before the handler.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
DYNAMODB_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})

# fault -> service -> (HTTP status, error code, message); None: a special answer (see _answer).
FAULTS: dict[str, dict[str, tuple[int, str, str] | None]] = {
    # The execution environment is killed (SIGKILL) at a random point of an invocation, as an
    # out-of-memory kill or a crash ends one in Lambda (local/lambda_worker.py draws it).
    "Kill": {"lambda": None},
    # A plain write meeting an in-flight transaction; a transaction meeting another write.
    "TransactionConflict": {"dynamodb": None},
    "Throttling": {
        "dynamodb": (
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
        "events": (400, "ThrottlingException", "Rate exceeded"),
        "sqs": (400, "RequestThrottled", "Request is throttled."),
    },
    "InternalServerError": {
        "dynamodb": (500, "InternalServerError", "Internal server error"),
        "events": (500, "InternalException", "Internal service error"),
        "sqs": (500, "InternalError", "We encountered an internal error. Please try again."),
    },
    "Timeout": {"dynamodb": None, "events": None, "sqs": None},
    # PutEvents answered 200 with every entry failed; SendMessageBatch 200 with every entry failed.
    "PartialFailure": {"events": None, "sqs": None},
}
_PARTIAL_OPERATIONS = {"events": "PutEvents", "sqs": "SendMessageBatch"}


class FaultSpecError(ValueError):
    """A fault rule that cannot be applied; the message says which rule and why."""


@dataclass(frozen=True)
class Rule:
    function: str
    service: str
    operation: str
    fault: str
    rate: float

    def matches(self, function: str, service: str, operation: str) -> bool:
        if self.function not in ("*", function) or self.service != service:
            return False
        if self.operation == "*":
            return True
        if self.operation == "writes":
            return operation in DYNAMODB_WRITES
        if self.operation == "reads":
            return operation in DYNAMODB_READS
        return self.operation == operation

    def as_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "service": self.service,
            "operation": self.operation,
            "fault": self.fault,
            "rate": self.rate,
        }


def parse_rules(document: Any, *, functions: set[str] | None = None) -> list[Rule]:
    """The rules of a fault spec (a JSON list), or FaultSpecError naming the first bad one."""
    if isinstance(document, Mapping) and "rules" in document:
        document = document["rules"]
    if not isinstance(document, list):
        raise FaultSpecError('a fault spec is a JSON list of rules (or {"rules": [...]})')
    rules = []
    for number, raw in enumerate(document, start=1):
        where = f"fault rule {number}"
        if not isinstance(raw, Mapping):
            raise FaultSpecError(f"{where}: must be an object")
        unknown = set(raw) - {"function", "service", "operation", "fault", "rate"}
        if unknown:
            raise FaultSpecError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
        fault = raw.get("fault")
        if fault not in FAULTS:
            raise FaultSpecError(f"{where}: fault must be one of {', '.join(FAULTS)}")
        service = raw.get("service", "lambda" if fault == "Kill" else "dynamodb")
        if service not in FAULTS[fault]:
            raise FaultSpecError(f"{where}: {fault} applies to {', '.join(FAULTS[fault])}, not {service!r}")
        operation = raw.get("operation", "*")
        if not isinstance(operation, str) or not operation:
            raise FaultSpecError(f"{where}: operation must be a name, writes, reads or *")
        if fault == "Kill":
            operation = "Invoke"
        if fault == "PartialFailure" and operation not in ("*", _PARTIAL_OPERATIONS[service]):
            raise FaultSpecError(f"{where}: PartialFailure applies to {_PARTIAL_OPERATIONS[service]} only")
        function = raw.get("function", "*")
        if not isinstance(function, str) or not function:
            raise FaultSpecError(f"{where}: function must be a function's logical id or *")
        if functions is not None and function != "*" and function not in functions:
            raise FaultSpecError(f"{where}: no function {function!r} in the template")
        rate = raw.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise FaultSpecError(f"{where}: rate must be a number from 0 to 1")
        rules.append(Rule(function, service, operation, fault, float(rate)))
    return rules


def load_spec(value: str, *, functions: set[str] | None = None) -> list[Rule]:
    """LOCAL_AWS_FAULTS: JSON, or @path to a file of JSON."""
    text = value.strip()
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise FaultSpecError(f"LOCAL_AWS_FAULTS: cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(text) if text else []
    except json.JSONDecodeError as exc:
        raise FaultSpecError(f"LOCAL_AWS_FAULTS is not JSON: {exc.msg} at character {exc.pos}") from None
    try:
        return parse_rules(document, functions=functions)
    except FaultSpecError as exc:
        raise FaultSpecError(f"LOCAL_AWS_FAULTS: {exc}") from None


def kill_rules(rates: Mapping[str, float]) -> list[Rule]:
    """LOCAL_LAMBDA_KILLS ({function or "*": rate}) as rules."""
    return [Rule(function, "lambda", "Invoke", "Kill", rate) for function, rate in rates.items() if rate > 0]


def write_rules(path: Path, rules: list[Rule]) -> None:
    """Where the workers read the rules; replaced atomically, so no worker reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps([rule.as_json() for rule in rules]))
    os.replace(temporary, path)


class Injector:
    """The faults of one execution environment: its function's rules, re-read when the file
    changes, and a random draw per matching call."""

    def __init__(self, function: str, path: Path, *, log: Callable[[str], None] = lambda line: None):
        self.function = function
        self.path = path
        self.log = log
        self.injected = 0
        self._random = random.SystemRandom()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._rules: list[Rule] = []

    def rules(self) -> list[Rule]:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._rules = parse_rules(json.loads(self.path.read_text())) if stamp else []
                except (OSError, ValueError):
                    self._rules = []  # being replaced: the previous rules are gone, the next come
            return self._rules

    def fault_for(self, service: str, operation: str) -> str | None:
        for rule in self.rules():
            if rule.matches(self.function, service, operation) and self._random.random() < rule.rate:
                return rule.fault
        return None

    # botocore event handlers: the draw at `before-parameter-build` (where the call's own
    # parameters are), the answer at `before-call` (where botocore takes one instead of sending).

    def before_parameter_build(self, params: Any, model: Any, context: Any, **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        fault = self.fault_for(service, model.name)
        if fault is not None:
            context["local_aws_fault"] = (fault, service, model.name, dict(params or {}))

    def before_call(self, context: Any, **_: Any) -> Any:
        drawn = context.pop("local_aws_fault", None) if context is not None else None
        if drawn is None:
            return None
        fault, service, operation, params = drawn
        with self._lock:
            self.injected += 1
        self.log(f"[AWS FAULT] {fault} on {service} {operation}")
        return _answer(fault, service, operation, params)

    def handlers(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("before-parameter-build", self.before_parameter_build), ("before-call", self.before_call)]


def _answer(fault: str, service: str, operation: str, params: Mapping[str, Any]) -> Any:
    from botocore.awsrequest import AWSResponse

    if fault == "Timeout":
        from botocore.exceptions import ReadTimeoutError

        raise ReadTimeoutError(endpoint_url=f"https://{service}.local-faults/")
    if fault == "PartialFailure":
        return AWSResponse("https://local-faults/", 200, {}, None), _failed_entries(service, params)
    if fault == "TransactionConflict":
        if operation == "TransactWriteItems":
            items = params.get("TransactItems") or []
            reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
            reasons += [{"Code": "None"} for _ in items[1:]]
            code, status = "TransactionCanceledException", 400
            message = (
                "Transaction cancelled, please refer cancellation reasons for specific reasons "
                "[TransactionConflict]"
            )
            error = {"Code": code, "Message": message}
            parsed = {
                "Error": error,
                "CancellationReasons": reasons,
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            return AWSResponse("https://local-faults/", status, {}, None), parsed
        status, code, message = 400, "TransactionConflictException", "Transaction is ongoing for the item"
    else:
        answer = FAULTS[fault][service]
        assert answer is not None
        status, code, message = answer
    parsed = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return AWSResponse("https://local-faults/", status, {}, None), parsed


def _failed_entries(service: str, params: Mapping[str, Any]) -> dict[str, Any]:
    entries = list(params.get("Entries") or [])
    if service == "events":
        failed = [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal failure"} for _ in entries]
        return {"FailedEntryCount": len(failed), "Entries": failed}
    return {
        "Successful": [],
        "Failed": [
            {
                "Id": entry.get("Id", str(number)),
                "SenderFault": False,
                "Code": "InternalError",
                "Message": "Internal error",
            }
            for number, entry in enumerate(entries)
        ],
    }
