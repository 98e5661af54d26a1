"""Contract suite: every simulator answer, for each endpoint and state, matches the JSON Schema of
QPay's own answer (tests/contract/qpay_schemas/, each schema naming its public sources).

The answers come from a real simulator over HTTP, driven into each state the way a merchant and a
customer would: open, partially paid, paid (P2P and card), refunded, cancelled.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from local.qpay_simulator import SimulatorHandle, start_simulator
from tests.support import SimulatorControl

pytestmark = pytest.mark.integration

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "contract" / "qpay_schemas"
CREDENTIALS = ("TEST_MERCHANT", "local-sim-secret")
CALLBACK = "https://merchant.example/webhooks/qpay?session_id=ps_1&token=secret"


def _load_schemas() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(SCHEMA_DIR.glob("*.json"))}


SCHEMAS = _load_schemas()
REGISTRY: Registry = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values()
)


def violations(schema_name: str, body: Any) -> list[str]:
    validator = Draft202012Validator(SCHEMAS[schema_name], registry=REGISTRY)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(body)
    ]


class Shop:
    """A merchant and its customers, over HTTP: QPay calls with a bearer token, payments via /_sim/pay."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.trust_env = False
        self.token_answer = self.http.post(f"{base_url}/v2/auth/token", auth=CREDENTIALS, timeout=10).json()
        self.headers = {"Authorization": f"Bearer {self.token_answer['access_token']}"}
        self._numbers = iter(range(1, 10_000))

    def qpay(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(
            method, f"{self.base_url}/v2{path}", json=body, headers=self.headers, timeout=10
        )

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.qpay(method, path, body)
        assert response.status_code == 200, response.text
        return response.json()

    def invoice(self, **fields: Any) -> dict[str, Any]:
        number = next(self._numbers)
        body = {
            "invoice_code": "TEST_INVOICE",
            "sender_invoice_no": f"contract_{number}",
            "invoice_receiver_code": "terminal",
            "invoice_description": f"Order #{number}",
            "amount": 15000,
            "callback_url": CALLBACK,
            **fields,
        }
        return self.ok("POST", "/invoice", {k: v for k, v in body.items() if v is not None})

    def pay(self, invoice_id: str, **fields: Any) -> str:
        return str(
            SimulatorControl(self.base_url, callback_by_default=False).pay(invoice_id, **fields)["payment_id"]
        )

    def check(self, invoice_id: str) -> dict[str, Any]:
        return self.ok("POST", "/payment/check", {"object_type": "INVOICE", "object_id": invoice_id})


FULL_FORM_LINES = [
    {
        "sender_product_code": "TEA-1",
        "tax_product_code": "6214",
        "line_description": "Green tea",
        "line_quantity": 2,
        "line_unit_price": "7500",
        "note": "loose leaf",
        "discounts": [{"discount_code": "D1", "description": "Loyalty", "amount": 1000, "note": "card"}],
        "surcharges": [{"surcharge_code": "S1", "description": "Delivery", "amount": 2000}],
        "taxes": [{"tax_code": "VAT", "description": "VAT", "amount": 500}],
    }
]
EBARIMT_LINES = [
    {
        "line_description": "Wheat seed",
        "line_quantity": "1.00",
        "line_unit_price": "1000.00",
        "classification_code": "0111100",
        "taxes": [{"tax_code": "VAT", "description": "VAT", "amount": "89.2857"}],
    }
]


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorHandle]:
    handle = start_simulator(port=0)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def answers(simulator: SimulatorHandle) -> dict[str, list[tuple[str, Any]]]:
    """Drives one shop into every state and records each answer under the schema it must match."""
    shop = Shop(simulator.base_url)
    recorded: dict[str, list[tuple[str, Any]]] = {}

    def record(schema: str, label: str, body: Any) -> None:
        recorded.setdefault(schema, []).append((label, body))

    record("auth_token.json", "token", shop.token_answer)
    refresh = shop.http.post(
        f"{shop.base_url}/v2/auth/refresh",
        headers={"Authorization": f"Bearer {shop.token_answer['refresh_token']}"},
        timeout=10,
    )
    record("auth_token.json", "refresh", refresh.json())

    simple = shop.invoice()
    full = shop.invoice(
        amount=None, lines=FULL_FORM_LINES, note="Leave at the door", sender_staff_code="online"
    )
    ebarimt = shop.invoice(
        invoice_code="TEST_EB_INVOICE", amount=None, tax_type="1", district_code="3505", lines=EBARIMT_LINES
    )
    for label, created in (("simple", simple), ("full form", full), ("ebarimt form", ebarimt)):
        record("invoice_create.json", label, created)
    record("invoice_get_open.json", "simple", shop.ok("GET", f"/invoice/{simple['invoice_id']}"))
    record("invoice_get_open.json", "full form", shop.ok("GET", f"/invoice/{full['invoice_id']}"))
    record("payment_check_unpaid.json", "open", shop.check(simple["invoice_id"]))

    partial = shop.invoice(allow_partial=True, minimum_amount=5000)
    shop.pay(partial["invoice_id"], amount=5000)
    record(
        "invoice_get_partially_paid.json",
        "allow_partial",
        shop.ok("GET", f"/invoice/{partial['invoice_id']}"),
    )
    record("payment_check_partially_paid.json", "allow_partial", shop.check(partial["invoice_id"]))

    p2p = shop.pay(simple["invoice_id"])
    record("invoice_get_paid.json", "p2p", shop.ok("GET", f"/invoice/{simple['invoice_id']}"))
    record("payment_check_paid_p2p.json", "p2p", shop.check(simple["invoice_id"]))
    record("payment_get_p2p.json", "p2p", shop.ok("GET", f"/payment/{p2p}"))

    full_paid = shop.pay(full["invoice_id"])
    record("invoice_get_paid.json", "full form", shop.ok("GET", f"/invoice/{full['invoice_id']}"))
    record("payment_get_p2p.json", "full form", shop.ok("GET", f"/payment/{full_paid}"))

    card_invoice = shop.invoice()
    card = shop.pay(card_invoice["invoice_id"], payment_type="CARD")
    record("payment_check_paid_card.json", "card", shop.check(card_invoice["invoice_id"]))
    record("payment_get_card.json", "card", shop.ok("GET", f"/payment/{card}"))
    record("empty.json", "payment refund", shop.ok("DELETE", f"/payment/refund/{card}", {"note": "returned"}))
    record("payment_check_refunded.json", "card refunded", shop.check(card_invoice["invoice_id"]))
    record("payment_get_refunded.json", "card refunded", shop.ok("GET", f"/payment/{card}"))

    to_cancel = shop.pay(shop.invoice()["invoice_id"], payment_type="CARD")
    record(
        "empty.json", "payment cancel", shop.ok("DELETE", f"/payment/cancel/{to_cancel}", {"note": "void"})
    )
    record("payment_get_cancelled.json", "card cancelled", shop.ok("GET", f"/payment/{to_cancel}"))

    cancelled = shop.invoice()
    record("empty.json", "invoice cancel", shop.ok("DELETE", f"/invoice/{cancelled['invoice_id']}"))
    record("invoice_get_cancelled.json", "cancelled", shop.ok("GET", f"/invoice/{cancelled['invoice_id']}"))

    for label, body in (
        ("by invoice code", {"object_type": "INVOICE", "object_id": "TEST_INVOICE"}),
        ("by invoice id", {"object_type": "INVOICE", "object_id": simple["invoice_id"]}),
        (
            "merchant window",
            {"object_type": "MERCHANT", "object_id": "TEST_MERCHANT", "start_date": "2020-01-01"},
        ),
    ):
        record("payment_list.json", label, shop.ok("POST", "/payment/list", body))

    receiver = {"ebarimt_receiver_type": "CITIZEN", "ebarimt_receiver": "88614450", "district_code": "3505"}
    record(
        "ebarimt_v3_registered.json",
        "p2p",
        shop.ok("POST", "/ebarimt_v3/create", {"payment_id": p2p, **receiver}),
    )
    eb_paid = shop.pay(ebarimt["invoice_id"])
    company = {
        "ebarimt_receiver_type": "COMPANY",
        "ebarimt_receiver": "5395305",
        "classification_code": "0111100",
    }
    record(
        "ebarimt_v3_registered.json",
        "ebarimt invoice",
        shop.ok("POST", "/ebarimt_v3/create", {"payment_id": eb_paid, **company}),
    )
    record("ebarimt_v3_canceled.json", "cancel", shop.ok("DELETE", f"/ebarimt_v3/{p2p}"))
    legacy = shop.ok(
        "POST", "/ebarimt/create", {"payment_id": full_paid, **receiver, "callback_url": CALLBACK}
    )
    record("ebarimt_legacy.json", "create", legacy)
    record("ebarimt_legacy.json", "get by receipt id", shop.ok("GET", f"/ebarimt/{legacy['id']}"))

    errors = {
        "unknown invoice": shop.qpay("GET", "/invoice/4f1c0e0e-0000-4000-8000-000000000000"),
        "already cancelled": shop.qpay("DELETE", f"/invoice/{cancelled['invoice_id']}"),
        "invoice paid": shop.qpay("DELETE", f"/invoice/{simple['invoice_id']}"),
        "unknown payment": shop.qpay("GET", "/payment/123"),
        "wrong object type": shop.qpay("POST", "/payment/check", {"object_type": "QR", "object_id": "x"}),
        "no lines, no amount": shop.qpay("POST", "/invoice", {"invoice_code": "TEST_INVOICE"}),
        "bad credentials": shop.http.post(
            f"{shop.base_url}/v2/auth/token", auth=("TEST_MERCHANT", "x"), timeout=10
        ),
        "no credentials": shop.http.post(f"{shop.base_url}/v2/auth/token", timeout=10),
        "expired token": shop.http.get(
            f"{shop.base_url}/v2/invoice/x", headers={"Authorization": "Bearer x.y.z"}, timeout=10
        ),
    }
    for label, response in errors.items():
        assert response.status_code >= 400, (label, response.text)
        record("error.json", label, response.json())
    return recorded


CASES = [
    ("auth_token.json", "token"),
    ("auth_token.json", "refresh"),
    ("invoice_create.json", "simple"),
    ("invoice_create.json", "full form"),
    ("invoice_create.json", "ebarimt form"),
    ("invoice_get_open.json", "simple"),
    ("invoice_get_open.json", "full form"),
    ("invoice_get_partially_paid.json", "allow_partial"),
    ("invoice_get_paid.json", "p2p"),
    ("invoice_get_paid.json", "full form"),
    ("invoice_get_cancelled.json", "cancelled"),
    ("empty.json", "invoice cancel"),
    ("empty.json", "payment refund"),
    ("empty.json", "payment cancel"),
    ("payment_check_unpaid.json", "open"),
    ("payment_check_partially_paid.json", "allow_partial"),
    ("payment_check_paid_p2p.json", "p2p"),
    ("payment_check_paid_card.json", "card"),
    ("payment_check_refunded.json", "card refunded"),
    ("payment_get_p2p.json", "p2p"),
    ("payment_get_p2p.json", "full form"),
    ("payment_get_card.json", "card"),
    ("payment_get_refunded.json", "card refunded"),
    ("payment_get_cancelled.json", "card cancelled"),
    ("payment_list.json", "by invoice code"),
    ("payment_list.json", "by invoice id"),
    ("payment_list.json", "merchant window"),
    ("ebarimt_v3_registered.json", "p2p"),
    ("ebarimt_v3_registered.json", "ebarimt invoice"),
    ("ebarimt_v3_canceled.json", "cancel"),
    ("ebarimt_legacy.json", "create"),
    ("ebarimt_legacy.json", "get by receipt id"),
    *[
        ("error.json", label)
        for label in (
            "unknown invoice",
            "already cancelled",
            "invoice paid",
            "unknown payment",
            "wrong object type",
            "no lines, no amount",
            "bad credentials",
            "no credentials",
            "expired token",
        )
    ],
]


@pytest.mark.parametrize(
    ("schema", "label"), CASES, ids=[f"{s.removesuffix('.json')}[{label}]" for s, label in CASES]
)
def test_the_simulators_answer_matches_qpays_schema(
    answers: dict[str, list[tuple[str, Any]]], schema: str, label: str
) -> None:
    """Given the simulator in this state, when the endpoint answers, then the body fits QPay's schema."""
    body = dict(answers[schema])[label]

    assert violations(schema, body) == []


def test_every_schema_and_every_recorded_answer_is_checked(answers: dict[str, list[tuple[str, Any]]]) -> None:
    """Given the schema folder, then each endpoint-and-state schema has a case, and each case was recorded."""
    bases = {"common.json", "invoice_get.json", "payment_check.json", "payment_get.json", "ebarimt_v3.json"}
    covered = {schema for schema, _ in CASES}

    assert set(SCHEMAS) - bases == covered
    assert {(schema, label) for schema, pairs in answers.items() for label, _ in pairs} == set(CASES)


def test_every_schema_names_its_public_sources() -> None:
    """Given the schema folder, then every schema says which public sources its field set comes from."""
    for name, schema in SCHEMAS.items():
        assert schema["$comment"].startswith("Sources: "), name
        assert "github.com" in schema["$comment"] or "PyPI" in schema["$comment"], name


@pytest.mark.parametrize(
    ("schema", "label", "break_it"),
    [
        ("invoice_get_open.json", "simple", lambda body: body.pop("surcharge_amount")),
        ("invoice_get_open.json", "simple", lambda body: body.pop("inputs")),
        ("payment_get_p2p.json", "p2p", lambda body: body.pop("p2p_transactions")),
        ("payment_get_card.json", "card", lambda body: body.pop("card_transactions")),
        ("payment_list.json", "by invoice code", lambda body: body["rows"][0].pop("payment_name")),
        ("payment_check_paid_p2p.json", "p2p", lambda body: body["rows"][0].update(payment_amount=15000)),
        ("ebarimt_v3_registered.json", "p2p", lambda body: body.update(barimt_status="CREATED")),
        ("error.json", "invoice paid", lambda body: body.update(error_code=body.pop("error"))),
        ("auth_token.json", "token", lambda body: body.update(extra_field=1)),
    ],
)
def test_the_schemas_reject_the_gaps_third_party_sdks_tripped_on(
    answers: dict[str, list[tuple[str, Any]]], schema: str, label: str, break_it: Any
) -> None:
    """Given a real answer with one field missing, mistyped or extra, then its schema refuses it."""
    body = json.loads(json.dumps(dict(answers[schema])[label]))
    break_it(body)

    assert violations(schema, body) != []


def test_recorded_tokens_look_like_the_captured_sandbox_jwts(
    answers: dict[str, list[tuple[str, Any]]],
) -> None:
    """Given a token answer, then its access token is an HS256 JWT whose claims name the merchant."""
    token = dict(answers["auth_token.json"])["token"]["access_token"]
    header, claims = (json.loads(base64.urlsafe_b64decode(part + "==")) for part in token.split(".")[:2])

    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims["merchant_id"] == "TEST_MERCHANT"
    assert claims["exp"] == dict(answers["auth_token.json"])["token"]["expires_in"]
