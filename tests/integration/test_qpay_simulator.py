"""The QPay simulator, driven over real HTTP the way a merchant client and a test harness drive it."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import zxingcpp
from PIL import Image

pytestmark = pytest.mark.integration

CREDENTIALS = ("TEST_MERCHANT", "local-sim-secret")
REPO_ROOT = Path(__file__).resolve().parents[2]


class Merchant:
    """A minimal QPay client plus the simulator's control API, both over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.trust_env = False  # no proxy between the test and loopback
        self._access_token: str | None = None

    def get_token(self, auth: tuple[str, str] | None = CREDENTIALS) -> requests.Response:
        return self.http.post(f"{self.base_url}/v2/auth/token", auth=auth, timeout=10)

    @property
    def access_token(self) -> str:
        if self._access_token is None:
            response = self.get_token()
            assert response.status_code == 200, response.text
            self._access_token = response.json()["access_token"]
        return self._access_token

    def qpay(self, method: str, path: str, body: Any = None, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.access_token}"}
        return self.http.request(method, f"{self.base_url}/v2{path}", json=body, headers=headers, timeout=10)

    def sim(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(method, f"{self.base_url}/_sim{path}", json=body, timeout=40)

    def create_invoice(self, **overrides: Any) -> dict[str, Any]:
        response = self.qpay("POST", "/invoice", invoice_body(**overrides))
        assert response.status_code == 200, response.text
        return response.json()

    def check(self, invoice_id: str, page_number: int = 1, page_limit: int = 100) -> dict[str, Any]:
        body = {
            "object_type": "INVOICE",
            "object_id": invoice_id,
            "offset": {"page_number": page_number, "page_limit": page_limit},
        }
        response = self.qpay("POST", "/payment/check", body)
        assert response.status_code == 200, response.text
        return response.json()

    def pay(self, invoice_id: str, **fields: Any) -> dict[str, Any]:
        response = self.sim("POST", "/pay", {"invoice_id": invoice_id, "callback": False, **fields})
        assert response.status_code == 200, response.text
        return response.json()

    def add_faults(self, *rules: dict[str, Any]) -> None:
        response = self.sim("POST", "/faults", {"rules": list(rules)})
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        return self.sim("GET", "/stats").json()


_invoice_numbers = itertools.count(1)


def invoice_body(**overrides: Any) -> dict[str, Any]:
    number = next(_invoice_numbers)
    body = {
        "invoice_code": "TEST_INVOICE",
        "sender_invoice_no": f"ps_{number}",
        "invoice_receiver_code": "terminal",
        "invoice_description": f"Order #{number}",
        "amount": 15000,
        "callback_url": f"https://merchant.example/webhooks/qpay?session_id=ps_{number}&token=secret",
    }
    body.update(overrides)
    return body


class CallbackReceiver:
    """A merchant webhook that, like a real one, confirms the payment with QPay before answering."""

    def __init__(self, merchant: Merchant) -> None:
        self.received: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self._token = merchant.access_token
        self._base_url = merchant.base_url
        self._http = requests.Session()
        self._http.trust_env = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                receiver.received.append({"method": self.command, "path": self.path, "body": body})
                receiver.checks.append(receiver.confirm(self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"SUCCESS")

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/qpay"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def confirm(self, method: str, path: str, body: str) -> dict[str, Any]:
        if method == "GET":
            payment_id = parse_qs(urlsplit(path).query)["qpay_payment_id"][0]
        else:
            payment_id = json.loads(body)["payment_id"]
        headers = {"Authorization": f"Bearer {self._token}"}
        payment = self._http.get(f"{self._base_url}/v2/payment/{payment_id}", headers=headers, timeout=5)
        check = {"object_type": "INVOICE", "object_id": payment.json()["object_id"]}
        return self._http.post(
            f"{self._base_url}/v2/payment/check", json=check, headers=headers, timeout=5
        ).json()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver(merchant: Merchant) -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver(merchant)
    yield receiver
    receiver.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Auth


def test_token_expires_in_is_an_absolute_epoch_about_a_day_ahead(merchant: Merchant) -> None:
    # When the merchant asks for a token with its client id and secret
    response = merchant.get_token()

    # Then it gets a bearer token whose expires_in is an epoch (the quirk), not a duration
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "bearer"
    assert token["scope"] == "get_token"
    assert token["access_token"].count(".") == 2
    assert token["refresh_token"]
    assert time.time() + 23 * 3600 < token["expires_in"] <= time.time() + 24 * 3600
    assert token["refresh_expires_in"] > token["expires_in"]


def test_a_fault_rule_makes_expires_in_a_duration(merchant: Merchant) -> None:
    # Given a rule asking for the documented-but-rare duration form
    merchant.add_faults({"path": "/v2/auth/token", "expires_in": "duration"})

    # When a token is issued
    token = merchant.get_token().json()

    # Then expires_in is a number of seconds, and the token works
    assert token["expires_in"] == 3600
    assert merchant.qpay("GET", "/invoice/none", token=token["access_token"]).status_code == 404


def test_a_short_token_lifetime_makes_the_token_expire(merchant: Merchant) -> None:
    # Given tokens that live one second (still reported as an epoch)
    merchant.add_faults({"path": "/v2/auth/token", "expires_in": 1, "times": 1})
    token = merchant.get_token().json()
    assert token["expires_in"] <= time.time() + 1

    # When the merchant uses it after it expired
    time.sleep(1.1)
    response = merchant.qpay("POST", "/invoice", invoice_body(), token=token["access_token"])

    # Then QPay answers 401, and the next token is a normal one again
    assert response.status_code == 401
    assert merchant.get_token().json()["expires_in"] > time.time() + 23 * 3600


def test_missing_credentials_are_refused_with_qpays_own_spelling(merchant: Merchant) -> None:
    """Given no Basic credentials, when a token is asked for, then 401 NO_CREDENDIALS (sic) in `error`."""
    response = merchant.get_token(auth=None)

    assert response.status_code == 401
    assert response.json()["error"] == "NO_CREDENDIALS"
    assert set(response.json()) == {"error", "message"}


@pytest.mark.parametrize("auth", [("TEST_MERCHANT", "wrong"), ("OTHER", "local-sim-secret")])
def test_wrong_credentials_are_refused(merchant: Merchant, auth: tuple[str, str]) -> None:
    """Given a wrong client id or secret, when a token is asked for, then 401 AUTHENTICATION_FAILED."""
    response = merchant.get_token(auth=auth)

    assert response.status_code == 401
    assert response.json()["error"] == "AUTHENTICATION_FAILED"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eA=="}]
)
def test_api_calls_need_a_valid_bearer_token(merchant: Merchant, headers: dict[str, str]) -> None:
    """Given no, an unknown or a non-bearer token, when an invoice is created, then 401."""
    response = requests.post(
        f"{merchant.base_url}/v2/invoice", json=invoice_body(), headers=headers, timeout=5
    )

    assert response.status_code == 401
    assert response.json()["error"] == "AUTHENTICATION_FAILED"


def test_expired_tokens_get_401_and_refresh_restores_access(merchant: Merchant) -> None:
    # Given a merchant holding a token and its refresh token
    token = merchant.get_token().json()
    assert merchant.qpay("GET", "/invoice/x", token=token["access_token"]).status_code == 404

    # When QPay revokes all access tokens
    assert merchant.sim("POST", "/tokens/expire").json()["expired"] == 1

    # Then the old token gets 401, and a refreshed one works
    assert merchant.qpay("GET", "/invoice/x", token=token["access_token"]).status_code == 401
    refreshed = merchant.http.post(
        f"{merchant.base_url}/v2/auth/refresh",
        headers={"Authorization": f"Bearer {token['refresh_token']}"},
        timeout=5,
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["access_token"] != token["access_token"]
    assert merchant.qpay("GET", "/invoice/x", token=refreshed.json()["access_token"]).status_code == 404


def test_refresh_with_an_unknown_or_revoked_refresh_token_is_refused(merchant: Merchant) -> None:
    """Given revoked refresh tokens, when a refresh is tried, then 401 (clients fall back to /auth/token)."""
    token = merchant.get_token().json()
    merchant.sim("POST", "/tokens/expire", {"refresh_tokens": True})

    for refresh_token in ("unknown", token["refresh_token"]):
        response = merchant.http.post(
            f"{merchant.base_url}/v2/auth/refresh",
            headers={"Authorization": f"Bearer {refresh_token}"},
            timeout=5,
        )
        assert response.status_code == 401
        assert response.json()["error"] == "AUTHENTICATION_FAILED"


def test_fifty_concurrent_token_requests_all_succeed(merchant: Merchant) -> None:
    # When 50 cold clients ask for a token at the same moment
    def fetch(_: int) -> requests.Response:
        return requests.post(f"{merchant.base_url}/v2/auth/token", auth=CREDENTIALS, timeout=10)

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(fetch, range(50)))

    # Then all get distinct tokens and the simulator counted every call
    assert [r.status_code for r in responses] == [200] * 50
    assert len({r.json()["access_token"] for r in responses}) == 50
    stats = merchant.stats()
    assert stats["calls"]["POST /v2/auth/token"] == 50
    assert stats["tokens_issued"] == 50


# Invoices


def test_invoice_create_returns_what_the_customer_needs(merchant: Merchant) -> None:
    # When the merchant creates an invoice
    invoice = merchant.create_invoice(amount=15000)

    # Then it gets an id, a QR text naming it, a camelCase short URL and the bank app deep links
    assert len(invoice["invoice_id"]) == 36
    assert invoice["invoice_id"] in invoice["qr_text"]
    assert invoice["qPay_shortUrl"].startswith("https://s.qpay.mn/")
    assert len(invoice["urls"]) >= 8
    khan = next(url for url in invoice["urls"] if url["name"] == "Khan bank")
    assert khan["description"] == "Хаан банк"
    assert khan["link"].startswith("khanbank://q?qPay_QRcode=")
    assert khan["logo"].startswith("https://")
    assert not invoice["qr_image"].startswith("data:")


def test_invoice_qr_image_scans_to_the_qr_text(merchant: Merchant) -> None:
    """Given a new invoice, when its qr_image is scanned, then it reads exactly qr_text."""
    invoice = merchant.create_invoice()

    image = Image.open(io.BytesIO(base64.b64decode(invoice["qr_image"])))
    decoded = zxingcpp.read_barcodes(image)

    assert [barcode.text for barcode in decoded] == [invoice["qr_text"]]


def test_get_invoice_shows_string_amounts_and_open_status(merchant: Merchant) -> None:
    """Given an invoice created with a string amount, when it is read back, then amounts are strings."""
    body = invoice_body(amount="15000")
    invoice_id = merchant.qpay("POST", "/invoice", body).json()["invoice_id"]

    response = merchant.qpay("GET", f"/invoice/{invoice_id}")

    assert response.status_code == 200
    invoice = response.json()
    assert invoice["invoice_status"] == "OPEN"
    assert invoice["sender_invoice_no"] == body["sender_invoice_no"]
    assert invoice["invoice_description"] == body["invoice_description"]
    assert invoice["callback_url"] == body["callback_url"]
    assert (invoice["total_amount"], invoice["gross_amount"], invoice["tax_amount"]) == (
        "15000.00",
        "15000.00",
        "0.00",
    )
    assert invoice["lines"] == []
    assert invoice["payments"] == []


def test_unknown_invoice_is_not_found(merchant: Merchant) -> None:
    """Given no such invoice, when it is read, then 404 INVOICE_NOTFOUND in `error`."""
    response = merchant.qpay("GET", "/invoice/4f1c0e0e-0000-4000-8000-000000000000")

    assert response.status_code == 404
    assert response.json()["error"] == "INVOICE_NOTFOUND"


def test_sender_invoice_no_can_never_be_reused(merchant: Merchant) -> None:
    # Given an invoice that was created and then cancelled
    first = merchant.create_invoice(sender_invoice_no="ps_dup")
    merchant.qpay("DELETE", f"/invoice/{first['invoice_id']}")

    # When the merchant retries with the same sender_invoice_no
    response = merchant.qpay("POST", "/invoice", invoice_body(sender_invoice_no="ps_dup"))

    # Then QPay refuses: no duplicate invoice for a retried request
    assert response.status_code == 400
    assert response.json()["error"] == "SENDER_INVOICE_NO_DUPLICATED"
    assert merchant.stats()["invoices"] == 1


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"invoice_code": "OTHER_INVOICE"}, "INVOICE_CODE_INVALID"),
        ({"sender_invoice_no": None}, "OBJECT_DATA_ERROR"),
        ({"sender_invoice_no": "x" * 46}, "OBJECT_DATA_ERROR"),
        ({"invoice_receiver_code": ""}, "OBJECT_DATA_ERROR"),
        ({"invoice_description": "d" * 256}, "OBJECT_DATA_ERROR"),
        ({"callback_url": None}, "OBJECT_DATA_ERROR"),
        ({"callback_url": "https://m.example/" + "c" * 240}, "OBJECT_DATA_ERROR"),
        ({"amount": None}, "INVOICE_LINE_REQUIRED"),
        ({"amount": 0}, "INVALID_AMOUNT"),
        ({"amount": "abc"}, "INVALID_AMOUNT"),
        ({"amount": 100.5}, "INVALID_AMOUNT"),
        ({"amount": 1_000_000_001}, "MAX_AMOUNT_ERR"),
    ],
)
def test_invalid_invoices_are_refused(merchant: Merchant, overrides: dict[str, Any], code: str) -> None:
    """Given one invalid field, when the invoice is created, then 400 with its code and nothing is stored."""
    body = {key: value for key, value in invoice_body(**overrides).items() if value is not None}

    response = merchant.qpay("POST", "/invoice", body)

    assert response.status_code == 400
    assert response.json()["error"] == code
    assert merchant.stats()["invoices"] == 0


def test_limits_are_inclusive(merchant: Merchant) -> None:
    """Given every field exactly at its limit, when the invoice is created, then it is accepted."""
    invoice = merchant.create_invoice(
        sender_invoice_no="n" * 45,
        invoice_description="d" * 255,
        callback_url="https://m.example/" + "c" * 237,
        amount=1_000_000_000,
    )

    assert invoice["invoice_id"]


def test_cancel_errors_carry_their_code_in_the_error_field(merchant: Merchant) -> None:
    # Given an open invoice and a paid one
    open_id = merchant.create_invoice()["invoice_id"]
    paid_id = merchant.create_invoice()["invoice_id"]
    merchant.pay(paid_id)

    # When each is cancelled (the open one twice), and an unknown one too
    first = merchant.qpay("DELETE", f"/invoice/{open_id}")
    again = merchant.qpay("DELETE", f"/invoice/{open_id}")
    paid = merchant.qpay("DELETE", f"/invoice/{paid_id}")
    unknown = merchant.qpay("DELETE", "/invoice/unknown-id")

    # Then each answer matches what QPay sends, in the majority form {"error", "message"}
    assert (first.status_code, first.json()) == (200, {})
    assert merchant.qpay("GET", f"/invoice/{open_id}").json()["invoice_status"] == "CANCELLED"
    assert (again.status_code, again.json()["error"]) == (400, "INVOICE_ALREADY_CANCELED")
    assert (paid.status_code, paid.json()["error"]) == (400, "INVOICE_PAID")
    assert all(set(answer.json()) == {"error", "message"} for answer in (again, paid, unknown))
    assert merchant.qpay("GET", f"/invoice/{paid_id}").json()["invoice_status"] == "CLOSED"
    assert (unknown.status_code, unknown.json()["error"]) == (404, "INVOICE_NOTFOUND")


# Payments


def test_payment_check_before_and_after_the_customer_pays(merchant: Merchant) -> None:
    invoice_id = merchant.create_invoice(amount=15000)["invoice_id"]

    # Before payment: nothing paid
    assert merchant.check(invoice_id) == {"count": 0, "paid_amount": 0, "rows": []}

    # When the customer pays
    payment_id = merchant.pay(invoice_id)["payment_id"]

    # Then payment/check shows one PAID row with string amounts, and the invoice is CLOSED
    check = merchant.check(invoice_id)
    assert check["count"] == 1
    assert check["paid_amount"] == 15000
    row = check["rows"][0]
    assert row["payment_id"] == payment_id
    assert row["payment_status"] == "PAID"
    assert row["payment_amount"] == "15000.00"
    assert row["trx_fee"] == "150.00"
    assert (row["payment_currency"], row["payment_type"]) == ("MNT", "P2P")
    assert "payment_date" not in row  # recorded check rows carry none
    assert [t["amount"] for t in row["p2p_transactions"]] == ["14850.00"]  # net of the fee
    assert row["card_transactions"] == []
    assert merchant.qpay("GET", f"/invoice/{invoice_id}").json()["invoice_status"] == "CLOSED"


def test_under_payments_add_up_before_the_invoice_closes(merchant: Merchant) -> None:
    invoice_id = merchant.create_invoice(amount=15000)["invoice_id"]

    # When the customer pays 10000 first
    merchant.pay(invoice_id, amount=10000)

    # Then the invoice stays open with 10000 paid
    assert merchant.check(invoice_id)["paid_amount"] == 10000
    assert merchant.qpay("GET", f"/invoice/{invoice_id}").json()["invoice_status"] == "OPEN"

    # And when the remaining 5000 arrive, the sum closes it
    merchant.pay(invoice_id, amount=5000)
    check = merchant.check(invoice_id)
    assert (check["count"], check["paid_amount"]) == (2, 15000)
    assert merchant.qpay("GET", f"/invoice/{invoice_id}").json()["invoice_status"] == "CLOSED"


def test_payment_check_honours_paging(merchant: Merchant) -> None:
    """Given three payments, when they are read two per page, then the pages hold them in order."""
    invoice_id = merchant.create_invoice(amount=30000)["invoice_id"]
    payment_ids = [merchant.pay(invoice_id, amount=10000)["payment_id"] for _ in range(3)]

    first = merchant.check(invoice_id, page_number=1, page_limit=2)
    second = merchant.check(invoice_id, page_number=2, page_limit=2)

    assert [row["payment_id"] for row in first["rows"] + second["rows"]] == payment_ids
    assert first["count"] == second["count"] == 3
    assert first["paid_amount"] == 30000


def test_payment_check_refusals(merchant: Merchant) -> None:
    """Given a wrong object_type or an unknown invoice, then 400 INVALID_OBJECT_TYPE or 404."""
    invoice_id = merchant.create_invoice()["invoice_id"]

    wrong_type = merchant.qpay("POST", "/payment/check", {"object_type": "QR", "object_id": invoice_id})
    unknown = merchant.qpay("POST", "/payment/check", {"object_type": "INVOICE", "object_id": "nope"})

    assert (wrong_type.status_code, wrong_type.json()["error"]) == (400, "INVALID_OBJECT_TYPE")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "INVOICE_NOTFOUND")


def test_get_payment_names_its_fee_differently_and_points_at_the_invoice(merchant: Merchant) -> None:
    """Given a paid invoice, when its payment is read, then its fee is `payment_fee`."""
    invoice_id = merchant.create_invoice(amount=15000)["invoice_id"]
    payment_id = merchant.pay(invoice_id)["payment_id"]

    payment = merchant.qpay("GET", f"/payment/{payment_id}").json()
    unknown = merchant.qpay("GET", "/payment/123")

    assert payment["payment_status"] == "PAID"
    assert payment["payment_amount"] == "15000.00"
    assert payment["payment_fee"] == "150.00"
    assert "trx_fee" not in payment
    assert payment["transaction_type"] == "P2P"
    assert (payment["object_type"], payment["object_id"]) == ("INVOICE", invoice_id)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "PAYMENT_NOTFOUND")


def test_payment_list_by_invoice_and_for_the_merchant_in_a_window(merchant: Merchant) -> None:
    """Given two paid invoices, when payments are listed by invoice or date window, then each list fits."""
    first_invoice = merchant.create_invoice()["invoice_id"]
    second_invoice = merchant.create_invoice()["invoice_id"]
    merchant.pay(first_invoice)
    merchant.pay(second_invoice)

    by_invoice = merchant.qpay(
        "POST", "/payment/list", {"object_type": "INVOICE", "object_id": first_invoice}
    )
    today = time.strftime("%Y-%m-%d", time.gmtime())
    window = {"object_type": "MERCHANT", "object_id": "TEST_MERCHANT", "start_date": today, "end_date": today}
    in_window = merchant.qpay("POST", "/payment/list", window)
    before = merchant.qpay(
        "POST", "/payment/list", {**window, "start_date": "2020-01-01", "end_date": "2020-01-31"}
    )

    assert by_invoice.json()["count"] == 1
    assert by_invoice.json()["rows"][0]["object_id"] == first_invoice
    assert in_window.json()["count"] == 2
    assert before.json() == {"count": 0, "rows": []}


def test_only_card_payments_can_be_refunded_or_cancelled(merchant: Merchant) -> None:
    """Given a P2P and two card payments, when each is refunded or cancelled, then only card ones change."""
    invoice_id = merchant.create_invoice()["invoice_id"]
    p2p = merchant.pay(invoice_id)["payment_id"]
    card = merchant.pay(merchant.create_invoice()["invoice_id"], payment_type="CARD")["payment_id"]
    card_to_cancel = merchant.pay(merchant.create_invoice()["invoice_id"], payment_type="CARD")["payment_id"]
    note = {"callback_url": "https://merchant.example/refunds", "note": "customer asked"}

    refused = merchant.qpay("DELETE", f"/payment/refund/{p2p}", note)
    refunded = merchant.qpay("DELETE", f"/payment/refund/{card}", note)
    cancelled = merchant.qpay("DELETE", f"/payment/cancel/{card_to_cancel}", note)

    assert (refused.status_code, refused.json()["error"]) == (400, "PAYMENT_NOT_CARD")
    assert (refunded.status_code, refunded.json()) == (200, {})
    assert (cancelled.status_code, cancelled.json()) == (200, {})
    assert merchant.qpay("GET", f"/payment/{card}").json()["payment_status"] == "REFUNDED"
    assert merchant.qpay("GET", f"/payment/{card_to_cancel}").json()["payment_status"] == "CANCELLED"
    assert merchant.qpay("GET", f"/payment/{p2p}").json()["payment_status"] == "PAID"


def test_a_payment_on_a_cancelled_invoice_is_still_recorded(merchant: Merchant) -> None:
    # Given an invoice the merchant cancelled just as the customer paid
    invoice_id = merchant.create_invoice(amount=15000)["invoice_id"]
    merchant.qpay("DELETE", f"/invoice/{invoice_id}")

    # When the payment lands
    merchant.pay(invoice_id)

    # Then the money shows in payment/check while the invoice stays CANCELLED
    assert merchant.check(invoice_id)["paid_amount"] == 15000
    view = merchant.sim("GET", f"/invoices/{invoice_id}").json()
    assert view["status"] == "CANCELLED"
    assert view["amount"] == 15000
    assert [p["status"] for p in view["payments"]] == ["PAID"]


def test_paying_an_unknown_invoice_is_not_found(merchant: Merchant) -> None:
    """Given no such invoice, when the control API pays or shows it, then 404."""
    response = merchant.sim("POST", "/pay", {"invoice_id": "nope"})

    assert response.status_code == 404
    assert merchant.sim("GET", "/invoices/nope").status_code == 404


# Callbacks


def test_pay_calls_the_callback_url_with_get_and_the_payment_id(
    merchant: Merchant, receiver: CallbackReceiver
) -> None:
    # Given an invoice whose callback URL carries the merchant's own query
    invoice_id = merchant.create_invoice(callback_url=f"{receiver.url}?session_id=ps_1&token=t0k")[
        "invoice_id"
    ]

    # When the customer pays
    result = merchant.sim("POST", "/pay", {"invoice_id": invoice_id}).json()

    # Then the merchant was called once with GET, qpay_payment_id appended to its query
    assert len(receiver.received) == 1
    call = receiver.received[0]
    assert call["method"] == "GET"
    assert urlsplit(call["path"]).path == "/webhooks/qpay"
    assert parse_qs(urlsplit(call["path"]).query) == {
        "session_id": ["ps_1"],
        "token": ["t0k"],
        "qpay_payment_id": [result["payment_id"]],
    }
    # And the merchant's check from inside the callback already saw the money
    assert receiver.checks[0]["paid_amount"] == 15000
    assert result["callback"] == {"status": 200, "body": "SUCCESS", "error": None}
    assert merchant.stats()["callbacks"] == {"attempted": 1, "succeeded": 1}


def test_pay_can_post_the_callback_as_json(merchant: Merchant, receiver: CallbackReceiver) -> None:
    """Given callback_method POST, when the customer pays, then the merchant gets JSON with both ids."""
    invoice_id = merchant.create_invoice(callback_url=receiver.url)["invoice_id"]

    result = merchant.sim("POST", "/pay", {"invoice_id": invoice_id, "callback_method": "POST"}).json()

    assert receiver.received[0]["method"] == "POST"
    assert json.loads(receiver.received[0]["body"]) == {
        "payment_id": result["payment_id"],
        "invoice_id": invoice_id,
    }
    assert result["callback"]["status"] == 200


def test_a_merchant_that_is_down_is_reported_not_raised(merchant: Merchant) -> None:
    """Given nobody listens at the callback URL, when the customer pays, then the failure is reported."""
    invoice_id = merchant.create_invoice(callback_url=f"http://127.0.0.1:{closed_port()}/cb?token=x")[
        "invoice_id"
    ]

    response = merchant.sim("POST", "/pay", {"invoice_id": invoice_id})

    assert response.status_code == 200
    callback = response.json()["callback"]
    assert callback["status"] is None
    assert "refused" in callback["error"].lower()
    assert merchant.check(invoice_id)["paid_amount"] == 15000
    assert merchant.stats()["callbacks"] == {"attempted": 1, "succeeded": 0}


def test_pay_without_callback_calls_nobody(merchant: Merchant, receiver: CallbackReceiver) -> None:
    """Given callback false, when the customer pays, then the merchant is not called."""
    invoice_id = merchant.create_invoice(callback_url=receiver.url)["invoice_id"]

    result = merchant.pay(invoice_id)

    assert result["callback"] is None
    assert receiver.received == []


# Faults and stats


def test_a_status_fault_fails_n_times_then_lets_calls_through(merchant: Merchant) -> None:
    """Given a 503 rule for three calls, when payment/check runs four times, then three fail, all count."""
    invoice_id = merchant.create_invoice()["invoice_id"]
    merchant.add_faults({"path": "/v2/payment/check", "status": 503, "times": 3})
    body = {"object_type": "INVOICE", "object_id": invoice_id}

    responses = [merchant.qpay("POST", "/payment/check", body) for _ in range(4)]

    assert [r.status_code for r in responses] == [503, 503, 503, 200]
    assert responses[0].json()["error"] == "SERVICE_UNAVAILABLE"
    assert merchant.stats()["calls"]["POST /v2/payment/check"] == 4


def test_a_fault_can_carry_a_qpay_error_code_and_match_a_prefix_and_method(merchant: Merchant) -> None:
    """Given a GET-only prefix rule with a QPay code, then only GET fails, with that code."""
    invoice_id = merchant.create_invoice()["invoice_id"]
    merchant.add_faults(
        {"path": "/v2/invoice*", "method": "GET", "status": 400, "error": "INVOICE_LINE_REQUIRED"}
    )

    faulted = merchant.qpay("GET", f"/invoice/{invoice_id}")
    other_method = merchant.qpay("POST", "/invoice", invoice_body())

    assert (faulted.status_code, faulted.json()["error"]) == (400, "INVOICE_LINE_REQUIRED")
    assert other_method.status_code == 200


def test_a_delay_fault_slows_the_matching_call_once_and_blocks_nobody_else(merchant: Merchant) -> None:
    # Given a 2 s delay on the next invoice creation (long against a loaded machine's jitter)
    merchant.add_faults({"path": "/v2/invoice", "delay_ms": 2000, "times": 1})
    token = merchant.access_token

    # When one invoice is created in the background and another call runs meanwhile
    def create() -> float:
        started = time.monotonic()
        response = Merchant(merchant.base_url).qpay("POST", "/invoice", invoice_body(), token=token)
        assert response.status_code == 200
        return time.monotonic() - started

    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(create)
        time.sleep(0.05)
        started = time.monotonic()
        assert merchant.qpay("GET", "/invoice/none").status_code == 404
        concurrent_call = time.monotonic() - started
        slow_call = slow.result()

    # Then only the delayed call waited, and the next creation is fast again
    assert slow_call >= 2.0
    assert concurrent_call < 1.0
    started = time.monotonic()
    merchant.create_invoice()
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("error", {"error": "INVOICE_PAID", "message": "Invoice is paid and cannot be cancelled"}),
        ("code", {"code": "INVOICE_PAID", "message": "Invoice is paid and cannot be cancelled"}),
        ("error_code", {"error_code": "INVOICE_PAID", "message": "Invoice is paid and cannot be cancelled"}),
        ("message", {"message": "INVOICE_PAID"}),
    ],
)
def test_an_error_form_rule_sends_a_real_refusal_in_that_form_on_that_path_only(
    merchant: Merchant, form: str, expected: dict[str, Any]
) -> None:
    """Given a paid invoice and an error_form rule on invoice DELETE, then its refusal is in that form."""
    paid_id = merchant.create_invoice()["invoice_id"]
    merchant.pay(paid_id)
    merchant.add_faults({"path": "/v2/invoice/*", "method": "DELETE", "error_form": form})

    refused = merchant.qpay("DELETE", f"/invoice/{paid_id}")
    other_path = merchant.qpay("GET", "/invoice/unknown-id")

    assert (refused.status_code, refused.json()) == (400, expected)
    assert other_path.json() == {"error": "INVOICE_NOTFOUND", "message": "Invoice not found"}
    assert merchant.qpay("GET", f"/invoice/{paid_id}").json()["invoice_status"] == "CLOSED"


def test_an_error_form_rule_shapes_injected_errors_and_spends_its_times(merchant: Merchant) -> None:
    """Given an injected 503 and a one-time `code` form, then the first error is in `code`, the next not."""
    merchant.add_faults(
        {"path": "/v2/payment/check", "status": 503},
        {"path": "/v2/payment/check", "error_form": "code", "times": 1},
    )
    body = {"object_type": "INVOICE", "object_id": "any"}

    first = merchant.qpay("POST", "/payment/check", body)
    second = merchant.qpay("POST", "/payment/check", body)

    assert (first.status_code, first.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert "error" not in first.json()
    assert (second.status_code, second.json()["error"]) == (503, "SERVICE_UNAVAILABLE")


def test_a_body_rule_answers_exactly_that_json_with_200_unless_told(merchant: Merchant) -> None:
    """Given `{}` for the next Ebarimt create and a recorded check for payment/check, then those come back."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]
    recorded = {"count": 0, "paid_amount": None, "rows": []}
    merchant.add_faults(
        {"path": "/v2/ebarimt_v3/create", "body": {}, "times": 1},
        {"path": "/v2/payment/check", "body": recorded, "status": 200, "times": 1},
        {"path": "/v2/invoice/*", "method": "GET", "status": 418, "body": {"note": "verbatim"}, "times": 1},
    )

    empty = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id))
    check = merchant.qpay("POST", "/payment/check", {"object_type": "INVOICE", "object_id": "x"})
    teapot = merchant.qpay("GET", "/invoice/any")
    after = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id))

    assert (empty.status_code, empty.json()) == (200, {})
    assert (check.status_code, check.json()) == (200, recorded)
    assert (teapot.status_code, teapot.json()) == (418, {"note": "verbatim"})
    assert after.json()["barimt_status"] == "REGISTERED"


def test_a_barimt_status_rule_answers_a_receipt_in_that_status_and_registers_nothing(
    merchant: Merchant,
) -> None:
    """Given `barimt_status` CREATED once, then the receipt is CREATED with no receipt id, then REGISTERED."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]
    merchant.add_faults({"path": "/v2/ebarimt_v3/create", "barimt_status": "created", "times": 1})

    created = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id)).json()
    registered = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id)).json()

    assert (created["barimt_status"], created["ebarimt_receipt_id"]) == ("CREATED", None)
    assert created["g_payment_id"] == payment_id
    assert created["barimt_histories"][-1]["barimt_status"] == "CREATED"
    assert registered["barimt_status"] == "REGISTERED"
    assert len(registered["ebarimt_receipt_id"]) == 33
    assert registered["id"] != created["id"]


def test_faults_are_listed_and_cleared(merchant: Merchant) -> None:
    """Given a rule, when rules are listed and then cleared, then it shows once and then is gone."""
    merchant.add_faults({"path": "/v2/payment/check", "status": 500, "times": 2})

    listed = merchant.sim("GET", "/faults").json()["rules"]
    cleared = merchant.sim("DELETE", "/faults")

    assert [(rule["path"], rule["status"], rule["times"]) for rule in listed] == [
        ("/v2/payment/check", 500, 2)
    ]
    assert cleared.status_code == 200
    assert merchant.sim("GET", "/faults").json() == {"rules": []}


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 503},
        {"path": "/v2/invoice"},
        {"path": "/v2/invoice", "status": "503"},
        {"path": "/x", "delay": 1},
        {"path": "/x", "error_form": "errors"},
        {"path": "/x", "body": []},
        {"path": "/x", "barimt_status": ""},
    ],
)
def test_malformed_fault_rules_are_refused(merchant: Merchant, rule: dict[str, Any]) -> None:
    """Given a malformed rule, when it is posted, then 400 and no rule is added."""
    response = merchant.sim("POST", "/faults", {"rules": [rule]})

    assert response.status_code == 400
    assert merchant.sim("GET", "/faults").json() == {"rules": []}


def test_stats_count_calls_per_endpoint_template(merchant: Merchant) -> None:
    """Given a few QPay calls, when stats are read, then calls are counted per method and path template."""
    invoice_id = merchant.create_invoice()["invoice_id"]
    merchant.qpay("GET", f"/invoice/{invoice_id}")
    merchant.qpay("GET", "/invoice/unknown")
    merchant.check(invoice_id)

    stats = merchant.stats()

    assert stats["calls"] == {
        "POST /v2/auth/token": 1,
        "POST /v2/invoice": 1,
        "GET /v2/invoice/{id}": 2,
        "POST /v2/payment/check": 1,
    }
    assert (stats["tokens_issued"], stats["invoices"], stats["payments"]) == (1, 1, 0)


# Ebarimt


def ebarimt_body(payment_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "ebarimt_receiver_type": "CITIZEN",
        "ebarimt_receiver": "88112233",
        "district_code": "3505",
        "classification_code": "0000010",
        **overrides,
    }


def test_ebarimt_is_registered_once_per_payment(merchant: Merchant) -> None:
    """Given a paid payment, when ebarimt is created twice, then the same REGISTERED receipt comes back."""
    payment_id = merchant.pay(merchant.create_invoice(amount=15000)["invoice_id"])["payment_id"]

    first = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id))
    second = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id))

    assert first.status_code == 200
    receipt = first.json()
    assert receipt["barimt_status"] == "REGISTERED"
    assert receipt["status"] is True
    assert receipt["g_payment_id"] == payment_id
    assert receipt["ebarimt_by"] == "QPAY"
    assert receipt["amount"] == "15000.00"
    assert len(receipt["ebarimt_receipt_id"]) == 33
    assert receipt["ebarimt_receipt_id"].isdigit()
    assert receipt["ebarimt_lottery"][:2].isalpha()
    assert receipt["ebarimt_lottery"][3:].isdigit()
    assert second.json() == receipt


def test_ebarimt_refusals(merchant: Merchant) -> None:
    """Given a refunded payment, an unknown one or a bad receiver type, then each gets its code."""
    card = merchant.pay(merchant.create_invoice()["invoice_id"], payment_type="CARD")["payment_id"]
    merchant.qpay("DELETE", f"/payment/refund/{card}", {"note": "refund"})
    paid = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]

    not_paid = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(card))
    unknown = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body("999"))
    bad_type = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(paid, ebarimt_receiver_type="83"))

    assert (not_paid.status_code, not_paid.json()["error"]) == (400, "PAYMENT_NOT_PAID")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "PAYMENT_NOTFOUND")
    assert (bad_type.status_code, bad_type.json()["error"]) == (400, "OBJECT_DATA_ERROR")


def test_ebarimt_for_an_unregistered_merchant_is_refused(merchant: Merchant) -> None:
    """Given a merchant not enabled for ebarimt, when a receipt is asked for, then 400."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]
    assert merchant.sim("POST", "/config", {"ebarimt_registered": False}).json() == {
        "ebarimt_registered": False
    }

    response = merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id))

    assert (response.status_code, response.json()["error"]) == (400, "EBARIMT_NOT_REGISTERED")


def test_ebarimt_can_be_cancelled(merchant: Merchant) -> None:
    """Given a registered receipt, when it is deleted, then it is CANCELED; an unknown payment is 404."""
    payment_id = merchant.pay(merchant.create_invoice()["invoice_id"])["payment_id"]
    merchant.qpay("POST", "/ebarimt_v3/create", ebarimt_body(payment_id, ebarimt_receiver_type="COMPANY"))

    cancelled = merchant.qpay("DELETE", f"/ebarimt_v3/{payment_id}")
    unknown = merchant.qpay("DELETE", "/ebarimt_v3/999")

    assert (cancelled.status_code, cancelled.json()["barimt_status"]) == (200, "CANCELED")
    assert unknown.status_code == 404


# Robustness, reset and the command line


def test_unknown_paths_and_bad_json_get_json_errors(merchant: Merchant) -> None:
    """Given an unknown path, broken JSON or a non-object body, then each gets a JSON error."""
    unknown = merchant.qpay("GET", "/no/such/thing")
    bad_json = merchant.http.post(
        f"{merchant.base_url}/v2/invoice",
        data="{not json",
        headers={"Authorization": f"Bearer {merchant.access_token}", "Content-Type": "application/json"},
        timeout=5,
    )
    not_an_object = merchant.qpay("POST", "/payment/check", [1, 2])

    assert (unknown.status_code, unknown.json()["error"]) == (404, "NOT_FOUND")
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "OBJECT_DATA_ERROR")
    assert (not_an_object.status_code, not_an_object.json()["error"]) == (400, "OBJECT_DATA_ERROR")


def test_reset_forgets_everything(merchant: Merchant) -> None:
    # Given invoices, payments, a token, a fault and a changed flag
    invoice_id = merchant.create_invoice(sender_invoice_no="ps_reset")["invoice_id"]
    merchant.pay(invoice_id)
    merchant.add_faults({"path": "/v2/payment/check", "status": 500})
    merchant.sim("POST", "/config", {"ebarimt_registered": False})
    old_token = merchant.access_token

    # When the simulator is reset
    assert merchant.sim("POST", "/reset").status_code == 200

    # Then none of it remains
    assert merchant.sim("GET", f"/invoices/{invoice_id}").status_code == 404
    assert merchant.qpay("GET", "/invoice/x", token=old_token).status_code == 401
    assert merchant.sim("GET", "/faults").json() == {"rules": []}
    assert merchant.sim("GET", "/config").json() == {"ebarimt_registered": True}
    assert merchant.stats() == {
        "calls": {"GET /v2/invoice/{id}": 1},
        "tokens_issued": 0,
        "invoices": 0,
        "payments": 0,
        "callbacks": {"attempted": 0, "succeeded": 0},
    }
    fresh = Merchant(merchant.base_url)
    assert fresh.create_invoice(sender_invoice_no="ps_reset")["invoice_id"]


def test_the_command_line_serves_until_sigterm() -> None:
    # Given the simulator started as `make run` starts it, on a free port
    process = subprocess.Popen(
        [sys.executable, "-m", "local.qpay_simulator", "--port", "0", "--log-level", "WARNING"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "layers" / "qpay_common")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.split(" on ")[1].split("/v2")[0]

        # Then it answers, and SIGTERM stops it cleanly
        assert requests.get(f"{base_url}/_sim/health", timeout=5).json() == {"ok": True}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
