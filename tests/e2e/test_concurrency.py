"""A freshly started stack under concurrent first traffic: every request is served by an execution
environment of its own, so no caller ever sees another caller's identity or session (issue 7: with
handlers as threads of one process, 11 of 96 sessions were stored under another user's id)."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.conftest import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

USERS = 96
AT_A_TIME = 12


@pytest.fixture(scope="module")
def fresh_stack() -> Iterator[Stack]:
    running = start_stack()
    yield running
    stop_stack(running)


def reports(stack: Stack, function_id: str) -> list[str]:
    return [line for line in stack.output if f"{function_id} REPORT RequestId:" in line]


def test_concurrent_first_creates_and_webhooks_each_belong_to_their_own_caller(fresh_stack):
    stack = fresh_stack
    users = [f"user-{index:03d}" for index in range(USERS)]
    amounts = {user: 1000 + index for index, user in enumerate(users)}

    # When 96 distinct users create a payment, 12 at a time, as the stack's very first traffic
    def create(user: str) -> requests.Response:
        return stack.create({"amount": amounts[user], "description": f"cart of {user}"}, user_id=user)

    with ThreadPoolExecutor(AT_A_TIME) as pool:
        created = dict(zip(users, pool.map(create, users), strict=True))

    # Then every create succeeded, and every session is stored under its creator with its amount
    assert {user: response.status_code for user, response in created.items()} == dict.fromkeys(users, 201)
    sessions = {user: response.json() for user, response in created.items()}
    assert len({session["session_id"] for session in sessions.values()}) == USERS
    dynamodb = stack.dynamodb_client()
    for user, session in sessions.items():
        item = dynamodb.get_item(
            TableName="SessionsTable", Key={"session_id": {"S": session["session_id"]}}, ConsistentRead=True
        )["Item"]
        assert item["user_id"]["S"] == user
        assert int(item["amount"]["N"]) == amounts[user] == session["amount"]

    # And each creator reads their own session back
    def read(user: str) -> requests.Response:
        return requests.get(
            f"{stack.api}/payments/{sessions[user]['session_id']}", headers=stack.headers(user), timeout=30
        )

    with ThreadPoolExecutor(AT_A_TIME) as pool:
        reads = dict(zip(users, pool.map(read, users), strict=True))
    assert {user: response.status_code for user, response in reads.items()} == dict.fromkeys(users, 200)
    assert all(reads[user].json()["amount"] == amounts[user] for user in users)

    # When QPay calls back for all 96 invoices, 12 callbacks at a time
    def pay(user: str) -> dict:
        return stack.pay(sessions[user]["invoice_id"])

    with ThreadPoolExecutor(AT_A_TIME) as pool:
        paid = dict(zip(users, pool.map(pay, users), strict=True))

    # Then every callback was acknowledged and fulfilled its own session, once
    assert {user: result["callback"]["status"] for user, result in paid.items()} == dict.fromkeys(users, 200)
    with ThreadPoolExecutor(AT_A_TIME) as pool:
        views = dict(zip(users, (response.json() for response in pool.map(read, users)), strict=True))
    assert {user: (view["status"], view["paid_amount"]) for user, view in views.items()} == {
        user: ("PROCESSED", amounts[user]) for user in users
    }
    orders = [
        item
        for page in dynamodb.get_paginator("scan").paginate(TableName="OrdersTable", ConsistentRead=True)
        for item in page["Items"]
        if item["pk"]["S"].startswith("order#")
    ]
    owners = {item["session_id"]["S"]: item["user_id"]["S"] for item in orders}
    assert len(orders) == USERS
    assert owners == {session["session_id"]: user for user, session in sessions.items()}

    # And the burst ran in several environments, each starting cold once and then reused warm
    creates = reports(stack, "CreatePaymentFunction")
    assert len(creates) == USERS
    # (SnapStart: the first environment initialised, the others were restored from it)
    cold = [line for line in creates if "Init Duration:" in line or "Restore Duration:" in line]
    assert len([line for line in cold if "Init Duration:" in line]) <= 1
    assert 2 <= len(cold) <= AT_A_TIME
