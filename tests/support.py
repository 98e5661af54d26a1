"""Shared test helpers: HTTP API events from events/*.json, a Lambda context, handler calls,
creating a payment, overriding a handler's use case, and the QPay simulator's control API.

Tests import handlers as `functions.<name>.app`.
"""

import copy
import importlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"


@dataclass
class LambdaContext:
    """Lambda's context object. The remaining time counts down from `remaining_ms` (the API
    functions' 29 s timeout by default) as Lambda's does."""

    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "test"
    remaining_ms: int = 29_000
    _ends_at: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        self._ends_at = time.monotonic() + self.remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends_at - time.monotonic()) * 1000))


def sample_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def handler(function_dir: str) -> ModuleType:
    return importlib.import_module(f"functions.{function_dir}.app")


def with_user(event: dict[str, Any], user_id: str | None) -> dict[str, Any]:
    event = copy.deepcopy(event)
    if user_id is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = user_id
    return event


def create_event(
    body: Any, *, user_id: str = "alice", raw: bool = False, headers: dict[str, str] | None = None
):
    event = with_user(sample_event("create_payment"), user_id)
    event["body"] = body if raw else json.dumps(body)
    event["headers"].update(headers or {})
    return event


def get_event(session_id: str, *, user_id: str = "alice") -> dict[str, Any]:
    event = with_user(sample_event("get_payment"), user_id)
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/payments/{session_id}"
    event["pathParameters"] = {"session_id": session_id}
    return event


def webhook_event(callback_url: str, *, method: str = "GET", body: Any = None, **extra_query: str):
    """The event API Gateway would build when QPay calls `callback_url` (plus extra query)."""
    event = sample_event("qpay_webhook_get" if method == "GET" else "qpay_webhook_post")
    query = dict(parse_qsl(urlsplit(callback_url).query))
    query.update(extra_query)
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = query or None
    if not query:
        del event["queryStringParameters"]
    if method == "POST":
        event["body"] = json.dumps(body if body is not None else {})
    return event


def invoke(function_dir: str, event: dict[str, Any], *, remaining_ms: int = 29_000) -> tuple[int, Any]:
    """Call a handler; returns (status, parsed JSON body or text). One at a time: Powertools shares
    the current event between every resolver of a process (BaseRouter.current_event)."""
    context = LambdaContext(function_name=function_dir, remaining_ms=remaining_ms)
    response = handler(function_dir).lambda_handler(event, context)
    body = response.get("body", "")
    content_type = {k.lower(): v for k, v in (response.get("headers") or {}).items()}.get("content-type", "")
    if "json" in content_type and body:
        body = json.loads(body)
    return response["statusCode"], body


def create_payment(
    amount: int = 15000,
    *,
    user_id: str = "alice",
    headers: dict[str, str] | None = None,
    expected: tuple[int, ...] = (201,),
    **fields: Any,
) -> dict[str, Any]:
    """POST /payments through the handler; the created session's body."""
    status, body = invoke(
        "create_payment", create_event({"amount": amount, **fields}, user_id=user_id, headers=headers)
    )
    assert status in expected, body
    return body


@contextmanager
def overridden(function_dir: str, dependency: Callable[[], Any], replacement: Any) -> Iterator[None]:
    """Serve one handler with another use case object (Powertools dependency_overrides)."""
    resolver = handler(function_dir).lambda_handler.resolver
    resolver.dependency_overrides[dependency] = lambda: replacement
    try:
        yield
    finally:
        resolver.dependency_overrides.pop(dependency, None)


def settlement_with(**seams: Any) -> Any:
    """The Settlement of the current environment's graph, built anew with test seams (fault_hook,
    emit_lease_seconds) around the same adapters."""
    from qpay_common import composition

    return composition.graph().sharing(**seams).settlement


class SimulatorControl:
    """The QPay simulator's control API (/_sim/...), as tests drive it."""

    def __init__(self, base_url: str, *, callback_by_default: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.callback_by_default = callback_by_default

    def post(self, path: str, body: Any = None, timeout: float = 60) -> Any:
        response = requests.post(
            f"{self.base_url}{path}", json=body if body is not None else {}, timeout=timeout
        )
        response.raise_for_status()
        return response.json()

    def pay(self, invoice_id: str, **options: Any) -> dict[str, Any]:
        """The customer pays (and QPay calls back, unless callback=False)."""
        options.setdefault("callback", self.callback_by_default)
        return self.post("/_sim/pay", {"invoice_id": invoice_id, **options})

    def faults(self, *rules: dict[str, Any]) -> None:
        self.post("/_sim/faults", {"rules": list(rules)})

    def reset(self) -> None:
        self.post("/_sim/reset")

    def calls(self, key: str) -> int:
        stats = requests.get(f"{self.base_url}/_sim/stats", timeout=10).json()
        return int(stats["calls"].get(key, 0))

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        return requests.get(f"{self.base_url}/_sim/invoices/{invoice_id}", timeout=10).json()

    def callback_url(self, invoice_id: str) -> str:
        return str(self.invoice(invoice_id)["callback_url"])


def cancel_event(session_id: str, *, user_id: str = "alice") -> dict[str, Any]:
    event = with_user(sample_event("cancel_payment"), user_id)
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/payments/{session_id}/cancel"
    event["pathParameters"] = {"session_id": session_id}
    return event


def list_event(*, user_id: str = "alice", **query: str) -> dict[str, Any]:
    event = with_user(sample_event("list_payments"), user_id)
    event["rawQueryString"] = urlencode(query)
    event.pop("queryStringParameters", None)
    if query:
        event["queryStringParameters"] = dict(query)
    return event


class _Summaries(logging.Handler):
    """The `summary` of the log lines a job writes at the end of each invocation."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
        self.summaries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message and isinstance(getattr(record, "summary", None), dict):
            self.summaries.append(record.summary)  # type: ignore[attr-defined]


@contextmanager
def job_summaries(job: str) -> Iterator[list[dict[str, Any]]]:
    from qpay_common.observability import logger

    capture = _Summaries(f"{job} run")
    logging.getLogger(logger.name).addHandler(capture)
    try:
        yield capture.summaries
    finally:
        logging.getLogger(logger.name).removeHandler(capture)


def _sqs_client() -> Any:
    import boto3

    return boto3.client(
        "sqs", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ.get("AWS_ENDPOINT_URL_SQS")
    )


def sqs_event_from(messages: list[dict[str, Any]], queue_url: str) -> dict[str, Any]:
    """The event the SQS event source mapping would pass the worker (local/sqs.py builds it)."""
    from local.sqs import sqs_event
    from local.template import QueueSpec

    name = queue_url.rsplit("/", 1)[-1]
    return sqs_event(messages, QueueSpec(logical_id=name, name=name))


def drain_reconcile_queues(*, remaining_ms: int = 60_000, max_batches: int = 1000) -> Counter[str]:
    """ReconcileWorkerFunction over every message waiting, priority queue first, one batch (of up
    to 10) per invocation and one invocation at a time, deleting what the partial batch response
    does not name (as the event source mapping does); the workers' outcomes, summed."""
    sqs = _sqs_client()
    urls = [os.environ["RECONCILE_PRIORITY_QUEUE_URL"], os.environ["RECONCILE_QUEUE_URL"]]
    outcomes: Counter[str] = Counter()
    worker = handler("reconcile_worker")
    with job_summaries("reconcile_worker") as summaries:
        for _ in range(max_batches):
            url, messages = next(
                (
                    (url, found)
                    for url in urls
                    if (found := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"))
                ),
                (None, []),
            )
            if url is None:
                break
            context = LambdaContext(function_name="ReconcileWorkerFunction", remaining_ms=remaining_ms)
            try:
                response = worker.lambda_handler(sqs_event_from(messages, url), context)
                failed = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
            except Exception:
                # A failed invocation (every message failed): the whole batch returns.
                outcomes["failed_invocation"] += 1
                failed = {message["MessageId"] for message in messages}
            done = [message for message in messages if message["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)],
                )
        for summary in summaries:
            outcomes.update(summary["outcomes"])
    return outcomes


def run_reconcile(*, remaining_ms: int = 60_000) -> dict[str, Any]:
    """One run of ReconcileFunction (the dispatcher), then the worker over what it queued: the
    dispatcher's summary, with `outcomes` the workers' (what happened to each session) and
    `dispatched` the dispatcher's own (queued, claimed elsewhere...)."""
    context = LambdaContext(function_name="ReconcileFunction", remaining_ms=remaining_ms)
    dispatched = handler("reconcile").lambda_handler(sample_event("reconcile"), context)
    outcomes = drain_reconcile_queues()
    return {**dispatched, "dispatched": dispatched["outcomes"], "outcomes": dict(outcomes)}


ADMIN_SCOPE = "payments/admin"


def admin_event(
    method: str,
    path: str,
    *,
    user_id: str | None = "ops",
    scopes: str | None = ADMIN_SCOPE,
    query: dict[str, str] | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """An /admin/... event as API Gateway builds it; `scopes` is the token's `scope` claim (None:
    no scope claim at all)."""
    event = with_user(sample_event("admin"), user_id)
    template_path = "/" + "/".join(
        "{session_id}" if part.startswith("ps_") else part for part in path.strip("/").split("/")
    )
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {template_path}"
    event["requestContext"]["http"]["method"] = method
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = urlencode(query or {})
    event.pop("queryStringParameters", None)
    if query:
        event["queryStringParameters"] = dict(query)
    session_id = next((part for part in path.split("/") if part.startswith("ps_")), None)
    event.pop("pathParameters", None)
    if session_id:
        event["pathParameters"] = {"session_id": session_id}
    if user_id is not None:
        jwt = event["requestContext"]["authorizer"]["jwt"]
        jwt["claims"].pop("scope", None)
        jwt["scopes"] = None
        if scopes is not None:
            jwt["claims"]["scope"] = scopes
            jwt["scopes"] = scopes.split()
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
        event["headers"]["content-type"] = "application/json"
    return event


def admin(method: str, path: str, **options: Any) -> tuple[int, Any]:
    """Call the admin handler."""
    return invoke("admin", admin_event(method, path, **options))
