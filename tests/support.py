"""Shared test helpers: HTTP API events from events/*.json, a Lambda context, and handler calls.

Tests import handlers as `functions.<name>.app`, the module names the local stack uses too.
"""

import copy
import importlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


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


def invoke(function_dir: str, event: dict[str, Any]) -> tuple[int, Any]:
    """Call a handler; returns (status, parsed JSON body or text)."""
    response = handler(function_dir).lambda_handler(event, LambdaContext(function_name=function_dir))
    body = response.get("body", "")
    content_type = {k.lower(): v for k, v in (response.get("headers") or {}).items()}.get("content-type", "")
    if "json" in content_type and body:
        body = json.loads(body)
    return response["statusCode"], body


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
