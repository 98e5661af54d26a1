"""Hostile requests against every route of the running local stack, over real HTTP.

Each case states what a client must see: the status, the contract's error shape (the handler's
`{"error": {...}}`, or API Gateway's `{"message": ...}` where the gateway answers), and that
nothing happened: no item written or changed in DynamoDB Local, no event on the bus, no call to
the QPay simulator.
"""

import base64
import json
import time
from dataclasses import dataclass, field

import pytest
import requests

from local.dev_token import mint_token
from local.endpoints import local_client
from local.inspect import read_events
from tests.e2e.conftest import Stack

CONTRACT = "contract"
GATEWAY = "gateway"


@dataclass(frozen=True)
class Hostile:
    method: str
    # Placeholders: {session} (alice's PENDING session), {bobs} (bob's), {token} (the callback
    # token of alice's session). Kept verbatim otherwise, so percent-escapes reach the wire as written.
    target: str
    expected_status: int
    shape: str
    code: str | None = None
    body: bytes | None = None
    # Values in bytes go on the wire as they are (requests would refuse non-Latin-1 text).
    headers: dict[str, str | bytes] = field(default_factory=dict)
    # The caller's JWT: alice's unless a case sends none or its own.
    authorization: str | None = "alice"
    # A `details[].type` the answer must name.
    detail_type: str | None = None


def json_bytes(text: str) -> bytes:
    return text.encode()


JSON = {"Content-Type": "application/json"}
DEEP_METADATA = '{"amount": 100, "metadata": ' + '{"a": ' * 500 + "1" + "}" * 500 + "}"
FORGED_CURSOR = base64.urlsafe_b64encode(
    json.dumps({"user_id": {"S": "alice"}, "session_id": {"S": ""}, "created_at": {"S": ""}}).encode()
).decode()
BOBS_CURSOR = base64.urlsafe_b64encode(
    json.dumps(
        {
            "user_id": {"S": "bob"},
            "session_id": {"S": "ps_" + "0" * 32},
            "created_at": {"S": "2026-01-01T00:00:00.000Z"},
        }
    ).encode()
).decode()

CASES: dict[str, Hostile] = {
    # POST /payments: bodies
    "create: body not UTF-8": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        b'{"amount": 100, "description": "\xff"}',
        JSON,
        detail_type="body_encoding",
    ),
    "create: body in Latin-1": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        '{"amount": 100, "description": "Café crème"}'.encode("latin-1"),
        JSON,
        detail_type="body_encoding",
    ),
    "create: body in Windows-1251": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        '{"amount": 100, "description": "Цай"}'.encode("cp1251"),
        JSON,
        detail_type="body_encoding",
    ),
    "create: lone surrogate escape": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json_bytes('{"amount": 100, "description": "\\ud800"}'),
        JSON,
        detail_type="body_encoding",
    ),
    "create: metadata nested 500 deep": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json_bytes(DEEP_METADATA),
        JSON,
        detail_type="json_too_deep",
    ),
    "create: 30,000 nested arrays": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json_bytes("[" * 30_000 + "]" * 30_000),
        JSON,
        detail_type="json_too_deep",
    ),
    "create: amount of 5,000 digits": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json_bytes('{"amount": ' + "9" * 5000 + "}"),
        JSON,
        detail_type="number_too_long",
    ),
    "create: amount 1e999": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json_bytes('{"amount": 1e999}'),
        JSON,
        detail_type="number_out_of_range",
    ),
    "create: NaN amount": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json_bytes('{"amount": NaN}'),
        JSON,
    ),
    "create: duplicate amount keys": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json_bytes('{"amount": 1, "amount": 100000}'),
        JSON,
        detail_type="duplicate_key",
    ),
    "create: 10,000-character description": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json.dumps({"amount": 100, "description": "ж" * 10_000}).encode(),
        JSON,
    ),
    "create: metadata over 4 KB": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json.dumps({"amount": 100, "metadata": {"note": "x" * 5000}}).encode(),
        JSON,
        detail_type="metadata_too_large",
    ),
    "create: items not summing to the amount": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        json.dumps({"amount": 100, "items": [{"name": "Tea", "quantity": 1, "unit_price": 99}]}).encode(),
        JSON,
        detail_type="items_total_mismatch",
    ),
    "create: body is a JSON array": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        b"[1, 2, 3]",
        JSON,
    ),
    "create: truncated JSON": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        b'{"amount": 100',
        JSON,
        detail_type="json_invalid",
    ),
    "create: body over 64 KB": Hostile(
        "POST",
        "/payments",
        413,
        CONTRACT,
        "PAYLOAD_TOO_LARGE",
        json.dumps({"amount": 100, "description": "x" * 70_000}).encode(),
        JSON,
    ),
    # POST /payments: content types
    "create: text/plain": Hostile(
        "POST",
        "/payments",
        415,
        CONTRACT,
        "UNSUPPORTED_MEDIA_TYPE",
        b'{"amount": 100}',
        {"Content-Type": "text/plain"},
    ),
    "create: form-encoded": Hostile(
        "POST",
        "/payments",
        415,
        CONTRACT,
        "UNSUPPORTED_MEDIA_TYPE",
        b"amount=100&description=x",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "create: multipart without a boundary": Hostile(
        "POST",
        "/payments",
        415,
        CONTRACT,
        "UNSUPPORTED_MEDIA_TYPE",
        b'{"amount": 100}',
        {"Content-Type": "multipart/form-data"},
    ),
    "create: JSON declared as Latin-1": Hostile(
        "POST",
        "/payments",
        415,
        CONTRACT,
        "UNSUPPORTED_MEDIA_TYPE",
        b'{"amount": 100}',
        {"Content-Type": "application/json; charset=iso-8859-1"},
    ),
    "create: two content types": Hostile(
        "POST",
        "/payments",
        415,
        CONTRACT,
        "UNSUPPORTED_MEDIA_TYPE",
        b'{"amount": 100}',
        {"Content-Type": "application/json, text/html"},
    ),
    # POST /payments: headers
    "create: empty Idempotency-Key": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        b'{"amount": 100}',
        {**JSON, "Idempotency-Key": ""},
    ),
    "create: 10 KB Idempotency-Key": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        b'{"amount": 100}',
        {**JSON, "Idempotency-Key": "k" * 10_000},
    ),
    "create: non-ASCII Idempotency-Key": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        b'{"amount": 100}',
        {**JSON, "Idempotency-Key": "ключ-ñ".encode()},
    ),
    "create: no Authorization": Hostile(
        "POST",
        "/payments",
        401,
        GATEWAY,
        "Unauthorized",
        b'{"amount": 100}',
        JSON,
        authorization=None,
    ),
    "create: empty bearer token": Hostile(
        "POST",
        "/payments",
        401,
        GATEWAY,
        "Unauthorized",
        b'{"amount": 100}',
        {**JSON, "Authorization": "Bearer "},
        authorization=None,
    ),
    "create: unsigned (alg none) token": Hostile(
        "POST",
        "/payments",
        401,
        GATEWAY,
        "Unauthorized",
        b'{"amount": 100}',
        {
            **JSON,
            "Authorization": "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
            "eyJzdWIiOiJhbGljZSIsImlzcyI6InFwYXktbG9jYWwiLCJhdWQiOiJxcGF5LWxvY2FsIiwiZXhwIjo5OTk5OTk5OTk5fQ.",
        },
        authorization=None,
    ),
    "create: a 20 KB header passes through to the body check": Hostile(
        "POST",
        "/payments",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        b'{"amount": 0}',
        {**JSON, "X-Padding": "p" * 20_000},
    ),
    "create: header line over 64 KB": Hostile(
        "POST",
        "/payments",
        431,
        GATEWAY,
        "Request Header Fields Too Large",
        b'{"amount": 100}',
        {**JSON, "X-Padding": "p" * 70_000},
    ),
    # GET /payments
    "list: limit is not a number": Hostile("GET", "/payments?limit=abc", 400, CONTRACT, "VALIDATION_ERROR"),
    "list: limit given twice": Hostile("GET", "/payments?limit=1&limit=2", 400, CONTRACT, "VALIDATION_ERROR"),
    "list: limit of 30 digits": Hostile(
        "GET", "/payments?limit=" + "9" * 30, 400, CONTRACT, "VALIDATION_ERROR"
    ),
    "list: forged cursor with empty keys": Hostile(
        "GET",
        f"/payments?cursor={FORGED_CURSOR.rstrip('=')}",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        detail_type="cursor_not_issued",
    ),
    "list: another user's cursor": Hostile(
        "GET",
        f"/payments?cursor={BOBS_CURSOR.rstrip('=')}",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        detail_type="cursor_not_issued",
    ),
    "list: non-ASCII cursor": Hostile(
        "GET", "/payments?cursor=%C3%B1%C3%B1", 400, CONTRACT, "VALIDATION_ERROR"
    ),
    "list: cursor that is not UTF-8": Hostile(
        "GET", "/payments?cursor=%FF%FE", 400, CONTRACT, "VALIDATION_ERROR"
    ),
    "list: expired token": Hostile("GET", "/payments", 401, GATEWAY, "Unauthorized", authorization="expired"),
    # GET /payments/{session_id}
    "read: someone else's session": Hostile("GET", "/payments/{bobs}", 404, CONTRACT, "NOT_FOUND"),
    "read: 300-character id": Hostile("GET", "/payments/ps_" + "a" * 297, 404, CONTRACT, "NOT_FOUND"),
    "read: non-ASCII id": Hostile("GET", "/payments/ps_%C3%B1%C3%B1", 404, CONTRACT, "NOT_FOUND"),
    "read: id that is not UTF-8": Hostile("GET", "/payments/%FF%FE", 404, CONTRACT, "NOT_FOUND"),
    "read: id with an encoded slash": Hostile("GET", "/payments/ps_a%2F..%2Fb", 404, CONTRACT, "NOT_FOUND"),
    "read: no Authorization": Hostile(
        "GET", "/payments/{session}", 401, GATEWAY, "Unauthorized", authorization=None
    ),
    # POST /payments/{session_id}/cancel
    "cancel: someone else's session": Hostile("POST", "/payments/{bobs}/cancel", 404, CONTRACT, "NOT_FOUND"),
    "cancel: 300-character id": Hostile(
        "POST", "/payments/" + "x" * 300 + "/cancel", 404, CONTRACT, "NOT_FOUND"
    ),
    "cancel: someone else's session, with a body that is not UTF-8": Hostile(
        "POST",
        "/payments/{bobs}/cancel",
        404,
        CONTRACT,
        "NOT_FOUND",
        b"\xff\xfe\xfd",
        JSON,
    ),
    # GET and POST /webhooks/qpay
    "webhook: non-ASCII token": Hostile(
        "GET",
        "/webhooks/qpay?session_id={session}&token=" + "%C3%B1" * 43,
        401,
        CONTRACT,
        "UNAUTHORIZED",
        authorization=None,
    ),
    "webhook: non-ASCII token, POST": Hostile(
        "POST",
        "/webhooks/qpay?session_id={session}&token=%C3%B1%C3%B1",
        401,
        CONTRACT,
        "UNAUTHORIZED",
        b"{}",
        JSON,
        authorization=None,
    ),
    "webhook: 10 KB token": Hostile(
        "GET",
        "/webhooks/qpay?session_id={session}&token=" + "A" * 10_000,
        401,
        CONTRACT,
        "UNAUTHORIZED",
        authorization=None,
    ),
    "webhook: token that is not UTF-8": Hostile(
        "GET",
        "/webhooks/qpay?session_id={session}&token=%FF%FE",
        401,
        CONTRACT,
        "UNAUTHORIZED",
        authorization=None,
    ),
    "webhook: non-ASCII session id": Hostile(
        "GET",
        "/webhooks/qpay?session_id=%C3%B1&token={token}",
        401,
        CONTRACT,
        "UNAUTHORIZED",
        authorization=None,
    ),
    "webhook: 10 KB session id": Hostile(
        "GET",
        "/webhooks/qpay?session_id=" + "s" * 10_000 + "&token={token}",
        401,
        CONTRACT,
        "UNAUTHORIZED",
        authorization=None,
    ),
    "webhook: the right token given twice": Hostile(
        "GET",
        "/webhooks/qpay?session_id={session}&token={token}&token={token}",
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        authorization=None,
    ),
    "webhook: another session's id with this token": Hostile(
        "GET",
        "/webhooks/qpay?session_id={bobs}&token={token}",
        401,
        CONTRACT,
        "UNAUTHORIZED",
        authorization=None,
    ),
    "webhook: no query at all": Hostile(
        "GET", "/webhooks/qpay", 401, CONTRACT, "UNAUTHORIZED", authorization=None
    ),
    "webhook: POST, wrong token, body not UTF-8": Hostile(
        "POST",
        "/webhooks/qpay?session_id={session}&token=wrong",
        401,
        CONTRACT,
        "UNAUTHORIZED",
        b"\xff\xfe" + b"{" * 1000,
        JSON,
        authorization=None,
    ),
    "webhook: POST, wrong token, form body": Hostile(
        "POST",
        "/webhooks/qpay?session_id={session}&token=wrong",
        401,
        CONTRACT,
        "UNAUTHORIZED",
        b"payment_id=1&status=PAID",
        {"Content-Type": "application/x-www-form-urlencoded"},
        authorization=None,
    ),
    "webhook: 300-character payment id": Hostile(
        "GET",
        "/webhooks/qpay?session_id={session}&token={token}&qpay_payment_id=" + "9" * 300,
        400,
        CONTRACT,
        "VALIDATION_ERROR",
        authorization=None,
    ),
    # GET /openapi.json and the methods no route serves
    "openapi: POST": Hostile("POST", "/openapi.json", 405, CONTRACT, "METHOD_NOT_ALLOWED", b"{}", JSON),
    "openapi: GET with a 70 KB body": Hostile(
        "GET",
        "/openapi.json",
        413,
        CONTRACT,
        "PAYLOAD_TOO_LARGE",
        b"x" * 70_000,
        {"Content-Type": "text/plain"},
    ),
    "method: TRACE /payments": Hostile("TRACE", "/payments", 405, CONTRACT, "METHOD_NOT_ALLOWED"),
    "method: DELETE a session": Hostile("DELETE", "/payments/{session}", 405, CONTRACT, "METHOD_NOT_ALLOWED"),
    "method: PATCH the webhook": Hostile(
        "PATCH",
        "/webhooks/qpay?session_id={session}&token={token}",
        405,
        CONTRACT,
        "METHOD_NOT_ALLOWED",
        authorization=None,
    ),
    "path: TRACE to no route": Hostile("TRACE", "/admin/../etc/passwd", 404, GATEWAY, "Not Found"),
    "path: unknown path": Hostile("GET", "/payments/{session}/refund", 404, GATEWAY, "Not Found"),
}


@dataclass(frozen=True)
class Fixtures:
    session_id: str
    bobs_session_id: str
    callback_token: str


@pytest.fixture(scope="module")
def sessions(stack: Stack) -> Fixtures:
    alice = stack.create({"amount": 1000}).json()
    bob = stack.create({"amount": 2000}, user_id="bob").json()
    callback = stack.sim_invoice(alice["invoice_id"])["callback_url"]
    token = callback.split("token=")[1].split("&")[0]
    return Fixtures(alice["session_id"], bob["session_id"], token)


@dataclass(frozen=True)
class Stored:
    """Every item of every table (each with the time its TTL ends it, if any), the number of
    events on the bus, and every call the QPay simulator counted."""

    items: dict[tuple[str, str], float | None]
    events: int
    qpay_calls: dict[str, int]

    def changes_since(self, before: "Stored") -> list[str]:
        """What was written: an item added, changed or deleted, an event, a QPay call. An item
        gone only because its TTL passed (DynamoDB Local deletes those in the background) is no
        write. A changed item shows as one item gone and another added."""
        now = time.time()
        changes = [f"{table}: {item} written" for table, item in self.items.keys() - before.items.keys()]
        for (table, item), expires_at in before.items.items():
            if (table, item) not in self.items and (expires_at is None or expires_at > now):
                changes.append(f"{table}: {item} changed or deleted")
        if self.events != before.events:
            changes.append(f"{self.events - before.events} events published")
        if self.qpay_calls != before.qpay_calls:
            changes.append(f"QPay asked: {before.qpay_calls} -> {self.qpay_calls}")
        return changes


@pytest.fixture(scope="module")
def everything_stored(stack: Stack):
    dynamodb = stack.dynamodb_client()
    logs = local_client("logs", stack.moto)
    tables = dynamodb.list_tables()["TableNames"]
    ttl_attributes = {
        table: dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"].get("AttributeName")
        for table in tables
    }

    def snapshot() -> Stored:
        items = {}
        for table in tables:
            for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                for item in page["Items"]:
                    ttl = item.get(ttl_attributes[table] or "", {}).get("N")
                    items[(table, json.dumps(item, sort_keys=True))] = float(ttl) if ttl else None
        return Stored(
            items=items,
            events=len(read_events(logs)),
            qpay_calls=requests.get(f"{stack.sim}/_sim/stats", timeout=10).json()["calls"],
        )

    return snapshot


def send(stack: Stack, case: Hostile, fixtures: Fixtures) -> requests.Response:
    target = (
        case.target.replace("{session}", fixtures.session_id)
        .replace("{bobs}", fixtures.bobs_session_id)
        .replace("{token}", fixtures.callback_token)
    )
    headers = dict(case.headers)
    if case.authorization == "expired":
        headers["Authorization"] = f"Bearer {mint_token('alice', -1)}"
    elif case.authorization is not None:
        headers["Authorization"] = f"Bearer {mint_token(case.authorization, 10)}"
    # A prepared request sends the target exactly as written (requests would re-quote it).
    request = requests.Request(case.method, stack.api + "/", headers=headers, data=case.body).prepare()
    request.url = stack.api + target
    with requests.Session() as session:
        return session.send(request, timeout=60)


def test_the_table_covers_every_route_and_enough_cases():
    routes = {label.split(":")[0] for label in CASES}
    assert {"create", "list", "read", "cancel", "webhook", "openapi", "method", "path"} <= routes
    assert len(CASES) >= 25


@pytest.mark.parametrize("label", list(CASES))
def test_hostile_input_is_a_4xx_in_the_contracts_shape_and_changes_nothing(
    stack, sessions, everything_stored, label
):
    case = CASES[label]
    before = everything_stored()

    response = send(stack, case, sessions)

    assert response.status_code == case.expected_status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    if case.shape == GATEWAY:
        assert body == {"message": case.code}
    else:
        assert set(body) == {"error"}
        assert set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == case.code
        assert isinstance(body["error"]["message"], str)
        assert body["error"]["message"]
        assert isinstance(body["error"]["details"], list)
        if case.detail_type is not None:
            assert case.detail_type in {detail["type"] for detail in body["error"]["details"]}
    # No answer echoes the callback secret, or what a hostile body carried.
    assert sessions.callback_token not in response.text
    assert "Цай" not in response.text
    assert everything_stored().changes_since(before) == []
