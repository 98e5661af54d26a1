"""Look inside a running local stack: captured EventBridge events, a session, its order.

    python -m local.inspect events [--session ps_...]
    python -m local.inspect session ps_...

Events are read from the CloudWatch Logs group moto copies every bus's events to (see
local.eventbridge); sessions and orders from DynamoDB Local. Addresses come from the same port
defaults and LOCAL_*_PORT variables as the stack. The functions are reused by the tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from local.endpoints import LocalPorts, local_client
from local.eventbridge import INSPECT_LOG_GROUP

DEFAULT_SESSIONS_TABLE = "SessionsTable"
DEFAULT_ORDERS_TABLE = "OrdersTable"
ORDER_KEY_PREFIX = "order#"
# Added by moto's delivery, not part of the EventBridge envelope a logs target receives.
_NOT_IN_ENVELOPE = ("ingestion-time",)

_deserializer = TypeDeserializer()


def to_plain(value: Any) -> Any:
    """DynamoDB values as plain JSON-able Python (Decimal -> int/float, sets -> sorted lists)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_plain(item) for item in value), key=str)
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode()
    return value


def plain_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: to_plain(_deserializer.deserialize(value)) for key, value in item.items()}


def _logs_client(logs_client_or_endpoint: Any) -> Any:
    if isinstance(logs_client_or_endpoint, str):
        return local_client("logs", logs_client_or_endpoint)
    return logs_client_or_endpoint


def read_events(
    logs_client_or_endpoint: Any,
    *,
    session_id: str | None = None,
    log_group: str = INSPECT_LOG_GROUP,
) -> list[dict[str, Any]]:
    """Every captured event (full EventBridge envelope), oldest first; optionally one session's."""
    logs = _logs_client(logs_client_or_endpoint)
    captured: list[tuple[int, dict[str, Any]]] = []
    request: dict[str, Any] = {"logGroupName": log_group}
    while True:
        try:
            page = logs.filter_log_events(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []
            raise
        for log_event in page.get("events", []):
            try:
                envelope = json.loads(log_event["message"])
            except (KeyError, json.JSONDecodeError):
                continue
            for key in _NOT_IN_ENVELOPE:
                envelope.pop(key, None)
            captured.append((int(log_event.get("timestamp", 0)), envelope))
        token = page.get("nextToken")
        if not token or token == request.get("nextToken"):
            break
        request["nextToken"] = token
    events = [envelope for _, envelope in sorted(captured, key=lambda pair: pair[0])]
    if session_id is not None:
        events = [event for event in events if (event.get("detail") or {}).get("session_id") == session_id]
    return events


def _hash_key(dynamodb_client: Any, table: str) -> str:
    schema = dynamodb_client.describe_table(TableName=table)["Table"]["KeySchema"]
    return next(part["AttributeName"] for part in schema if part["KeyType"] == "HASH")


def get_item(dynamodb_client: Any, table: str, key_value: str) -> dict[str, Any] | None:
    key = {_hash_key(dynamodb_client, table): {"S": key_value}}
    item = dynamodb_client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    return plain_item(item) if item else None


def orders_for_session(
    dynamodb_client: Any,
    session_id: str,
    *,
    table: str | None = None,
) -> list[dict[str, Any]]:
    """Order items (key `order#...`) whose session_id is `session_id`: a Scan, fine for local checks."""
    table = table or os.environ.get("ORDERS_TABLE") or DEFAULT_ORDERS_TABLE
    key_name = _hash_key(dynamodb_client, table)
    request: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "#sid = :sid AND begins_with(#key, :prefix)",
        "ExpressionAttributeNames": {"#sid": "session_id", "#key": key_name},
        "ExpressionAttributeValues": {":sid": {"S": session_id}, ":prefix": {"S": ORDER_KEY_PREFIX}},
        "ConsistentRead": True,
    }
    orders = []
    while True:
        page = dynamodb_client.scan(**request)
        orders.extend(plain_item(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return orders
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def session_report(dynamodb_client: Any, logs_client_or_endpoint: Any, session_id: str) -> dict[str, Any]:
    """The session item, its order, how many orders name it, and its events."""
    sessions_table = os.environ.get("SESSIONS_TABLE") or DEFAULT_SESSIONS_TABLE
    orders_table = os.environ.get("ORDERS_TABLE") or DEFAULT_ORDERS_TABLE
    session = get_item(dynamodb_client, sessions_table, session_id)
    order_id = (session or {}).get("order_id")
    order = get_item(dynamodb_client, orders_table, ORDER_KEY_PREFIX + str(order_id)) if order_id else None
    return {
        "session": session,
        "order": order,
        "orders_for_session": len(orders_for_session(dynamodb_client, session_id, table=orders_table)),
        "events": read_events(logs_client_or_endpoint, session_id=session_id),
    }


_DISPLAY_LIMIT = 160


def _shortened(value: Any) -> Any:
    """QR images and deeplink lists make a session unreadable on a terminal: cut long strings."""
    if isinstance(value, str) and len(value) > _DISPLAY_LIMIT:
        return f"{value[:60]}... ({len(value)} characters)"
    if isinstance(value, dict):
        return {key: _shortened(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shortened(item) for item in value]
    return value


def _print_json(value: Any) -> None:
    print(json.dumps(_shortened(value), indent=2, sort_keys=True, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.inspect", description="Inspect the running local stack."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    events_command = commands.add_parser("events", help="events captured from the event buses")
    events_command.add_argument("--session", help="only events whose detail.session_id is this")
    session_command = commands.add_parser("session", help="a session, its order and its events")
    session_command.add_argument("session_id")
    args = parser.parse_args(argv)

    ports = LocalPorts.from_env()
    try:
        if args.command == "events":
            events = read_events(ports.moto_url, session_id=args.session)
            for event in events:
                _print_json(event)
            print(f"{len(events)} event(s) in {INSPECT_LOG_GROUP}", file=sys.stderr)
            return 0

        report = session_report(local_client("dynamodb", ports.dynamodb_url), ports.moto_url, args.session_id)
    except EndpointConnectionError as error:
        print(f"cannot reach the local stack ({error}); is `make run` running?", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as error:
        print(f"inspection failed: {error}", file=sys.stderr)
        return 2

    if report["session"] is None:
        print(f"session {args.session_id} not found in {DEFAULT_SESSIONS_TABLE}", file=sys.stderr)
        return 1
    print("session:")
    _print_json(report["session"])
    print("order:")
    _print_json(report["order"])
    print(f"orders for this session: {report['orders_for_session']}")
    print(f"events for this session: {len(report['events'])}")
    for event in report["events"]:
        _print_json(event)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
