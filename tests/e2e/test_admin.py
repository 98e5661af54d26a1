"""The operators' API through the local stack, as an operator with `make token USER=ops
SCOPES=payments/admin` would drive it: the front door enforces the scope like the HTTP API JWT
authorizer, the admin function runs in its own execution environment, DynamoDB Local serves the
by_status index, the simulator refunds card payments."""

import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from local.dev_token import mint_token
from tests.support import ROOT

pytestmark = pytest.mark.e2e

ADMIN_PATHS = [
    ("GET", "/admin/payments"),
    ("GET", "/admin/payments/ps_0123456789abcdef0123456789abcdef"),
    ("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/reconcile"),
    ("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/republish"),
    ("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/refund"),
    ("GET", "/admin/summary"),
]


@pytest.fixture(scope="module")
def ops_token():
    """Minted the way the README says: `make -s token USER=ops SCOPES=payments/admin`."""
    made = subprocess.run(
        ["make", "-s", "token", "USER=ops", "SCOPES=payments/admin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip()


def call(stack, method, path, token, **kwargs):
    return requests.request(
        method, f"{stack.api}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs
    )


def paid_session(stack, payment_type, user_id, callback=True):
    created = stack.create({"amount": 12000, "description": "Admin e2e"}, user_id=user_id)
    assert created.status_code == 201, created.text
    body = created.json()
    payment = stack.pay(body["invoice_id"], payment_type=payment_type, callback=callback)
    return body, payment


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
def test_a_shoppers_token_gets_the_gateways_403_on_every_admin_route(stack, method, path):
    answer = call(stack, method, path, stack.token("alice"), json={"note": "x"})

    assert answer.status_code == 403
    assert answer.json() == {"message": "Forbidden"}


def test_no_token_is_401_and_a_wrong_scope_is_403(stack):
    assert requests.get(f"{stack.api}/admin/summary", timeout=30).status_code == 401
    wrong = mint_token("ops", extra_claims={"scope": "payments/read"})
    assert call(stack, "GET", "/admin/summary", wrong).status_code == 403


def test_an_operator_lists_inspects_refunds_and_republishes_a_card_payment(stack, ops_token):
    shopper = f"shopper-{uuid.uuid4().hex[:8]}"
    body, payment = paid_session(stack, "CARD", shopper)
    session_id = body["session_id"]

    listed = call(
        stack, "GET", "/admin/payments", ops_token, params={"user_id": shopper, "status": "PROCESSED"}
    )
    detail = call(stack, "GET", f"/admin/payments/{session_id}", ops_token)
    refunded = call(
        stack, "POST", f"/admin/payments/{session_id}/refund", ops_token, json={"note": "broken cup"}
    )
    again = call(
        stack, "POST", f"/admin/payments/{session_id}/refund", ops_token, json={"note": "broken cup"}
    )
    republished = call(stack, "POST", f"/admin/payments/{session_id}/republish", ops_token)

    assert listed.status_code == 200, listed.text
    assert [item["session_id"] for item in listed.json()["items"]] == [session_id]
    assert detail.status_code == 200, detail.text
    assert detail.json()["qpay"]["payments"][0]["type"] == "CARD"
    assert (refunded.status_code, refunded.json()["status"]) == (200, "REFUNDED"), refunded.text
    assert refunded.json()["refund"]["requested_by"] == "ops"
    assert (again.status_code, again.json()["refund"]) == (200, refunded.json()["refund"])
    assert republished.json()["published"] == ["PaymentCompleted", "PaymentRefunded"]
    [sim_payment] = stack.sim_invoice(body["invoice_id"])["payments"]
    assert (sim_payment["payment_id"], sim_payment["status"]) == (payment["payment_id"], "REFUNDED")
    assert stack.sim_calls("DELETE /v2/payment/refund/{id}") >= 1
    kinds = [event["detail-type"] for event in stack.events(session_id)]
    assert kinds == ["PaymentCompleted", "PaymentRefunded", "PaymentCompleted", "PaymentRefunded"]
    # The shopper sees the refund too.
    mine = requests.get(f"{stack.api}/payments/{session_id}", headers=stack.headers(shopper), timeout=30)
    assert mine.json()["status"] == "REFUNDED"


def test_a_qr_payment_cannot_be_refunded_and_the_answer_says_why(stack, ops_token):
    body, _ = paid_session(stack, "P2P", "qr-shopper")

    answer = call(
        stack, "POST", f"/admin/payments/{body['session_id']}/refund", ops_token, json={"note": "please"}
    )

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "REFUND_NOT_SUPPORTED"
    assert "bank transfer" in answer.json()["error"]["message"]
    assert stack.sim_invoice(body["invoice_id"])["payments"][0]["status"] == "PAID"


def test_reconcile_now_finishes_a_payment_whose_callback_never_came(stack, ops_token):
    body, _ = paid_session(stack, "P2P", "lost-callback", callback=False)

    answer = call(stack, "POST", f"/admin/payments/{body['session_id']}/reconcile", ops_token)

    assert (answer.status_code, answer.json()["status"]) == (200, "PROCESSED"), answer.text
    assert len(stack.orders(body["session_id"])) == 1


def test_the_summary_counts_the_window(stack, ops_token):
    start = datetime.now(UTC) - timedelta(milliseconds=1)
    paid_session(stack, "P2P", "summary-shopper")
    stack.create({"amount": 500}, user_id="summary-shopper")

    answer = call(stack, "GET", "/admin/summary", ops_token, params={"from": start.isoformat()})

    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["sessions"] == 2
    assert (summary["by_status"]["PROCESSED"]["count"], summary["by_status"]["PENDING"]["count"]) == (1, 1)
    assert summary["paid"] == 1
