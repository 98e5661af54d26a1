"""`make chaos`: the promise (no paid payment lost, none fulfilled twice) checked from outside, under
faults, on this machine.

It starts the local stack as `make run` does, with AWS's faults (DynamoDB transaction conflicts,
throttling, internal errors, failed event entries), environments killed mid-invocation and QPay's
own faults (5xx, timeouts, expired tokens) on. CHAOS_PAYMENTS payments (default 1000) are made by
CHAOS_CLIENTS concurrent clients (default 8), each with a random plan: pay, pay without a callback,
duplicate callbacks, under-pay, over-pay, cancel then pay, cancel, abandon, a card payment then a
refund. Clients behave as the contract asks: they retry a create with the same Idempotency-Key
(following Retry-After) and poll the status.

Then the faults go off and the scheduled functions are driven until nothing is due (time is moved
on: a session due later is made due now), and the invariants are checked from DynamoDB, the bus's
captured events and the simulator's own record:

- every fully paid session has exactly one order, and PaymentCompleted for that order only;
- no order without enough money paid at QPay;
- no session left in CREATING or PAID, no Idempotency-Key left in progress;
- every session belongs to the client that created it;
- every refund was made once at QPay, and only for a refunded session.

It prints a table of plans x outcomes and exits 1 on any violation. CHAOS_SEED repeats a run's
plans; CHAOS_FAULTS=off runs without faults.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests

from local.dev_token import mint_token
from local.inspect import plain_item, read_events
from local.launch import Stack, start_stack, stop_stack

PLANS = (
    "pay",
    "pay_without_callback",
    "duplicate_callbacks",
    "under_pay",
    "over_pay",
    "cancel_then_pay",
    "cancel",
    "abandon",
    "card_then_refund",
)
USERS = 25
TIMEOUT_S = 30
CREATE_GIVE_UP_S = 120

# AWS's faults while the clients run (local/aws_faults.py): rare enough that retries recover, common
# enough that every flow meets them over a run.
AWS_FAULTS = [
    {"service": "dynamodb", "operation": "UpdateItem", "fault": "TransactionConflict", "rate": 0.05},
    {"service": "dynamodb", "operation": "TransactWriteItems", "fault": "TransactionConflict", "rate": 0.05},
    {"service": "dynamodb", "operation": "writes", "fault": "Throttling", "rate": 0.01},
    {"service": "dynamodb", "operation": "reads", "fault": "InternalServerError", "rate": 0.01},
    {"service": "events", "operation": "PutEvents", "fault": "PartialFailure", "rate": 0.03},
    {"service": "lambda", "fault": "Kill", "rate": 0.02},
]
QPAY_FAULTS = [
    {"path": "/v2/payment/check", "status": 503, "rate": 0.05},
    {"path": "/v2/invoice", "method": "POST", "status": 502, "rate": 0.03},
    {"path": "/v2/invoice/*", "method": "DELETE", "delay_ms": 1500, "rate": 0.05},
    {"path": "/v2/auth/token", "expires_in": 5, "rate": 0.2},
]


@dataclass
class Payment:
    number: int
    plan: str
    user_id: str
    amount: int
    key: str = field(default_factory=lambda: str(uuid.uuid4()))
    session_id: str | None = None
    invoice_id: str | None = None
    steps: list[str] = field(default_factory=list)
    five_xx: Counter[str] = field(default_factory=Counter)


class Clients:
    """What the shop's clients and QPay do, over HTTP."""

    def __init__(self, stack: Stack, seed: int) -> None:
        self.stack = stack
        self.seed = seed
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self.ops = mint_token("chaos-ops", 600, extra_claims={"scope": "payments/admin"})

    def headers(self, user_id: str) -> dict[str, str]:
        with self._lock:
            if user_id not in self._tokens:
                self._tokens[user_id] = mint_token(user_id, 600)
            return {"Authorization": f"Bearer {self._tokens[user_id]}"}

    def create(self, payment: Payment) -> bool:
        """POST /payments until it answers the session, as a client with an Idempotency-Key does."""
        deadline = time.monotonic() + CREATE_GIVE_UP_S
        body = {"amount": payment.amount, "description": f"chaos {payment.number} {payment.plan}"}
        while time.monotonic() < deadline:
            try:
                response = requests.post(
                    f"{self.stack.api}/payments",
                    json=body,
                    headers={**self.headers(payment.user_id), "Idempotency-Key": payment.key},
                    timeout=TIMEOUT_S,
                )
            except requests.RequestException:
                time.sleep(0.5)
                continue
            if response.status_code in (200, 201):
                answer = response.json()
                payment.session_id, payment.invoice_id = answer["session_id"], answer["invoice_id"]
                return True
            if response.status_code >= 500:
                payment.five_xx["create"] += 1
            wait = float(response.headers.get("Retry-After") or 0.5)
            time.sleep(min(wait, 35))
        payment.steps.append("create_gave_up")
        return False

    def pay(self, payment: Payment, **options: Any) -> None:
        assert payment.invoice_id is not None
        response = requests.post(
            f"{self.stack.sim}/_sim/pay", json={"invoice_id": payment.invoice_id, **options}, timeout=60
        )
        payment.steps.append(f"pay:{response.status_code}")
        callback = response.json().get("callback") if response.ok else None
        if callback and (callback.get("status") or 0) >= 500:
            payment.five_xx["webhook"] += 1

    def repeat_callback(self, payment: Payment) -> None:
        assert payment.invoice_id is not None
        invoice = requests.get(f"{self.stack.sim}/_sim/invoices/{payment.invoice_id}", timeout=10).json()
        paid = [p for p in invoice.get("payments", []) if p["status"] == "PAID"]
        if not paid:
            return
        separator = "&" if "?" in invoice["callback_url"] else "?"
        url = f"{invoice['callback_url']}{separator}qpay_payment_id={paid[0]['payment_id']}"
        response = requests.get(url, timeout=TIMEOUT_S)
        payment.steps.append(f"callback:{response.status_code}")
        if response.status_code >= 500:
            payment.five_xx["webhook"] += 1

    def poll(self, payment: Payment) -> None:
        response = requests.get(
            f"{self.stack.api}/payments/{payment.session_id}",
            headers=self.headers(payment.user_id),
            timeout=TIMEOUT_S,
        )
        if response.status_code >= 500:
            payment.five_xx["status"] += 1

    def cancel(self, payment: Payment) -> None:
        response = requests.post(
            f"{self.stack.api}/payments/{payment.session_id}/cancel",
            headers=self.headers(payment.user_id),
            timeout=TIMEOUT_S,
        )
        payment.steps.append(f"cancel:{response.status_code}")

    def refund(self, payment: Payment) -> int:
        response = requests.post(
            f"{self.stack.api}/admin/payments/{payment.session_id}/refund",
            json={"note": "chaos refund"},
            headers={"Authorization": f"Bearer {self.ops}"},
            timeout=TIMEOUT_S,
        )
        payment.steps.append(f"refund:{response.status_code}")
        return response.status_code

    def run(self, payment: Payment) -> Payment:
        if not self.create(payment):
            return payment
        plan = payment.plan
        self.poll(payment)
        if plan == "pay":
            self.pay(payment)
        elif plan == "pay_without_callback":
            self.pay(payment, callback=False)
        elif plan == "duplicate_callbacks":
            self.pay(payment)
            self.repeat_callback(payment)
            self.repeat_callback(payment)
        elif plan == "under_pay":
            self.pay(payment, amount=payment.amount - 1)
        elif plan == "over_pay":
            self.pay(payment, amount=payment.amount + 1)
        elif plan == "cancel_then_pay":
            self.cancel(payment)
            self.pay(payment)
        elif plan == "cancel":
            self.cancel(payment)
        elif plan == "card_then_refund":
            self.pay(payment, payment_type="CARD")
        self.poll(payment)
        return payment


def set_faults(stack: Stack, aws: list[dict[str, Any]], qpay: list[dict[str, Any]]) -> None:
    requests.put(f"{stack.invoke}/_local/aws-faults", json=aws, timeout=10).raise_for_status()
    requests.delete(f"{stack.sim}/_sim/faults", timeout=10).raise_for_status()
    if qpay:
        requests.post(f"{stack.sim}/_sim/faults", json={"rules": qpay}, timeout=10).raise_for_status()


def table_items(stack: Stack, table: str) -> list[dict[str, Any]]:
    client = stack.dynamodb_client()
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**request)
        items += [plain_item(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def sessions(stack: Stack) -> dict[str, dict[str, Any]]:
    return {item["session_id"]: item for item in table_items(stack, "SessionsTable")}


def invoke(stack: Stack, function: str) -> dict[str, Any]:
    result = stack.lambda_client().invoke(FunctionName=function, Payload=b"{}")
    return json.loads(result["Payload"].read() or b"{}")


def drive_jobs(stack: Stack, rounds: int = 40) -> int:
    """Reconcile and expire, as EventBridge starts them, with time moved on, until no session is
    PAID or PENDING; the rounds it took."""
    client = stack.dynamodb_client()
    past = str(int(time.time()) - 7200)
    for round_number in range(1, rounds + 1):
        unsettled = {
            session_id: item
            for session_id, item in sessions(stack).items()
            if item["status"] in ("PAID", "PENDING")
        }
        if not unsettled:
            return round_number - 1
        for session_id, item in unsettled.items():
            if item["status"] == "PENDING":
                # Time travel: the session's payment window is over.
                client.update_item(
                    TableName="SessionsTable",
                    Key={"session_id": {"S": session_id}},
                    UpdateExpression="SET expires_at = :past",
                    ExpressionAttributeValues={":past": {"S": "2026-01-01T00:00:00.000Z"}},
                )
            if "reconcile_shard" in item:
                client.update_item(
                    TableName="SessionsTable",
                    Key={"session_id": {"S": session_id}},
                    UpdateExpression="SET next_check_at = :now",
                    ExpressionAttributeValues={":now": {"N": past}},
                )
        invoke(stack, "ExpireFunction")
        invoke(stack, "ReconcileFunction")
        # Reconcile's workers take the queued sessions from SQS on their own.
        time.sleep(2)
        for session_id, item in unsettled.items():
            if item["status"] == "PENDING":
                # A read past expires_at expires the session (the expire job's index is by creation).
                requests.get(
                    f"{stack.api}/payments/{session_id}",
                    headers={"Authorization": f"Bearer {mint_token(item['user_id'], 10)}"},
                    timeout=TIMEOUT_S,
                )
    return rounds


def check(stack: Stack, payments: list[Payment], *, users: str) -> tuple[list[str], dict[str, Counter[str]]]:
    """The invariants, from DynamoDB, the captured events and the simulator, over the sessions of
    the users whose ids start with `users`; and plan x outcome."""
    violations: list[str] = []
    stored = {key: item for key, item in sessions(stack).items() if str(item["user_id"]).startswith(users)}
    orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in table_items(stack, "OrdersTable"):
        if item.get("kind") == "order":
            orders[item["session_id"]].append(item)
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in read_events(stack.moto):
        events[event["detail"].get("session_id")].append(event)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    by_session = {payment.session_id: payment for payment in payments if payment.session_id}
    for payment in payments:
        if payment.session_id is None:
            outcomes[payment.plan]["no session (create gave up)"] += 1
            continue
        session = stored.get(payment.session_id)
        if session is None:
            violations.append(
                f"{payment.session_id} ({payment.plan}): answered to the client, missing in DynamoDB"
            )
            continue
        status = session["status"]
        outcomes[payment.plan][status] += 1
        for where, count in payment.five_xx.items():
            if count and status in ("PROCESSED", "REFUNDED"):
                outcomes[payment.plan][f"5xx from {where} (ended {status})"] += count
        if session["user_id"] != payment.user_id:
            violations.append(
                f"{payment.session_id}: belongs to {session['user_id']}, created by {payment.user_id}"
            )
        invoice = requests.get(f"{stack.sim}/_sim/invoices/{payment.invoice_id}", timeout=10).json()
        qpay_payments = invoice.get("payments", [])
        paid = sum(p["amount"] for p in qpay_payments if p["status"] in ("PAID", "REFUNDED"))
        session_orders = orders.get(payment.session_id, [])
        order_ids = {
            event["detail"].get("order_id")
            for event in events.get(payment.session_id, [])
            if event["detail-type"] == "PaymentCompleted"
        }
        if paid >= session["amount"]:
            if len(session_orders) != 1:
                violations.append(
                    f"{payment.session_id} ({payment.plan}): paid {paid}, {len(session_orders)} orders"
                )
            elif order_ids != {session_orders[0]["order_id"]}:
                violations.append(
                    f"{payment.session_id} ({payment.plan}): PaymentCompleted for "
                    f"{sorted(map(str, order_ids))}"
                )
        elif session_orders:
            violations.append(
                f"{payment.session_id} ({payment.plan}): an order with {paid} of {session['amount']} paid"
            )
        if status in ("CREATING", "PAID"):
            violations.append(f"{payment.session_id} ({payment.plan}): left {status}")
        refunded_at_qpay = [p for p in qpay_payments if p["status"] == "REFUNDED"]
        if status == "REFUNDED" and len(refunded_at_qpay) != 1:
            violations.append(f"{payment.session_id}: REFUNDED with {len(refunded_at_qpay)} refunds at QPay")
        if status != "REFUNDED" and refunded_at_qpay:
            violations.append(f"{payment.session_id}: refunded at QPay, {status} here")
    for session_id, session in stored.items():
        if session_id not in by_session and session["status"] not in ("CREATING",):
            violations.append(f"{session_id}: a {session['status']} session no client was given")
        if session["status"] == "CREATING":
            violations.append(f"{session_id}: left CREATING")
    now = time.time()
    for item in table_items(stack, "CacheTable"):
        if not str(item.get("pk", "")).startswith(f"idem#{users}") or item.get("expires_at", 0) <= now:
            continue
        data = item.get("data") or {}
        if isinstance(data, str):  # pynamodb keeps a JSONAttribute as a JSON string
            data = json.loads(data)
        claimed = stored.get(str(data.get("session_id")))
        if claimed is None or claimed["status"] == "CREATING":
            violations.append(f"{item['pk']}: Idempotency-Key left in progress")
    return violations, outcomes


def print_table(outcomes: dict[str, Counter[str]]) -> None:
    columns = sorted({outcome for counter in outcomes.values() for outcome in counter})
    width = max(len(plan) for plan in PLANS)
    print("plan".ljust(width), *(column for column in columns), sep=" | ")
    for plan in PLANS:
        row = outcomes.get(plan, Counter())
        print(
            plan.ljust(width), *(str(row.get(column, 0)).rjust(len(column)) for column in columns), sep=" | "
        )


@dataclass
class ChaosRun:
    seed: int
    payments: list[Payment]
    violations: list[str]
    outcomes: dict[str, Counter[str]]
    made_s: float
    rounds: int

    def five_xx(self, where: str) -> int:
        """5xx answers `where` (create, webhook, status) gave for payments that ended correctly."""
        return sum(
            count
            for plan in self.outcomes.values()
            for outcome, count in plan.items()
            if outcome.startswith(f"5xx from {where} ")
        )


def run_chaos(
    stack: Stack,
    count: int,
    *,
    clients: int = 8,
    seed: int | None = None,
    aws_faults: list[dict[str, Any]] | None = None,
    qpay_faults: list[dict[str, Any]] | None = None,
) -> ChaosRun:
    """`count` payments with random plans against `stack` under the faults given, then the jobs
    driven until nothing is due, then the invariants."""
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 10**6)
    planner = random.Random(seed)
    # This run's users: a stack that served other runs before holds their sessions too.
    run_id = uuid.uuid4().hex[:8]
    payments = [
        Payment(
            number,
            planner.choice(PLANS),
            f"chaos-{run_id}-user-{planner.randrange(USERS)}",
            planner.randrange(100, 500_000),
        )
        for number in range(count)
    ]
    started = time.monotonic()
    runner = Clients(stack, seed)
    set_faults(stack, aws_faults or [], qpay_faults or [])
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(runner.run, payments))
    made_s = time.monotonic() - started
    set_faults(stack, [], [])
    rounds = drive_jobs(stack)
    for payment in payments:
        if payment.plan == "card_then_refund" and payment.session_id:
            for _ in range(5):
                if runner.refund(payment) in (200, 409):
                    break
                time.sleep(1)
    violations, outcomes = check(stack, payments, users=f"chaos-{run_id}-")
    return ChaosRun(seed, payments, violations, outcomes, made_s, rounds)


def main() -> int:
    count = int(os.environ.get("CHAOS_PAYMENTS", "1000"))
    clients = int(os.environ.get("CHAOS_CLIENTS", "8"))
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
    faults_on = os.environ.get("CHAOS_FAULTS", "on").lower() not in ("off", "0", "false", "no")
    print(
        f"chaos: {count} payments, {clients} clients, CHAOS_SEED={seed}, "
        f"faults {'on' if faults_on else 'off'}",
        flush=True,
    )
    started = time.monotonic()
    stack = start_stack({"LOCAL_SCHEDULES": "off"})
    try:
        run = run_chaos(
            stack,
            count,
            clients=clients,
            seed=seed,
            aws_faults=AWS_FAULTS if faults_on else None,
            qpay_faults=QPAY_FAULTS if faults_on else None,
        )
    finally:
        stop_stack(stack)
    print(
        f"\npayments made in {run.made_s:.1f} s; jobs driven for {run.rounds} rounds; "
        f"{time.monotonic() - started:.1f} s in all\n"
    )
    print_table(run.outcomes)
    if run.violations:
        print(f"\n{len(run.violations)} violations (CHAOS_SEED={seed} repeats the plans):")
        for violation in run.violations[:50]:
            print(f"  - {violation}")
        return 1
    print(f"\nevery invariant held (CHAOS_SEED={seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
