"""POST /payments with bad input or a failing QPay: a 4xx/502 in the contract's error shape, never
a 500, and nothing written (no session, no QPay invoice)."""

import json

import pytest

from tests.support import create_event, invoke

pytestmark = pytest.mark.integration

BAD_BODIES = {
    "missing amount": {"description": "x"},
    "amount 0": {"amount": 0},
    "negative amount": {"amount": -100},
    "amount as a string": {"amount": "15000"},
    "amount as a float": {"amount": 150.5},
    "amount over the maximum": {"amount": 100_000_001},
    "items not summing to amount": {
        "amount": 15000,
        "items": [{"name": "Tea", "quantity": 1, "unit_price": 7500}],
    },
    "unknown field": {"amount": 15000, "currency": "USD"},
    "not an object": [1, 2, 3],
    "bad ebarimt receiver type": {"amount": 100, "ebarimt": {"receiver_type": "83"}},
}


def assert_error_shape(body, code):
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)


def assert_nothing_written(aws, sim):
    assert aws.items("SessionsTable") == []
    assert sim.calls("POST /v2/invoice") == 0


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_input_is_400_and_writes_nothing(aws, sim, case):
    status, body = invoke("create_payment", create_event(BAD_BODIES[case]))

    assert status == 400, body
    assert_error_shape(body, "VALIDATION_ERROR")
    assert body["error"]["details"], "the field at fault is named"
    assert_nothing_written(aws, sim)


def test_invalid_json_is_400(aws, sim):
    status, body = invoke("create_payment", create_event('{"amount": 15000,', raw=True))

    assert status == 400
    assert_error_shape(body, "VALIDATION_ERROR")
    assert "JSON" in body["error"]["message"]
    assert_nothing_written(aws, sim)


def test_a_body_over_64_kb_is_413(aws, sim):
    body = json.dumps({"amount": 15000, "description": "x" * (64 * 1024)})

    status, answer = invoke("create_payment", create_event(body, raw=True))

    assert status == 413
    assert_error_shape(answer, "PAYLOAD_TOO_LARGE")
    assert_nothing_written(aws, sim)


def test_a_non_json_content_type_is_415(aws, sim):
    status, body = invoke(
        "create_payment", create_event("amount=15000", raw=True, headers={"content-type": "text/plain"})
    )

    assert status == 415
    assert_error_shape(body, "UNSUPPORTED_MEDIA_TYPE")
    assert_nothing_written(aws, sim)


def test_error_details_never_echo_the_input(aws, sim):
    status, body = invoke(
        "create_payment", create_event({"amount": 5, "ebarimt": {"receiver": "secret-phone-99!"}})
    )

    assert status == 400
    assert "secret-phone-99!" not in json.dumps(body)


def test_qpay_failing_invoice_creation_is_502_and_leaves_no_session(aws, sim):
    sim.faults({"path": "/v2/invoice", "status": 503})

    status, body = invoke("create_payment", create_event({"amount": 15000}))

    assert status == 502
    assert_error_shape(body, "QPAY_UNAVAILABLE")
    assert aws.items("SessionsTable") == []
    # Invoice creation is not retried: a 5xx may mean QPay created it.
    assert sim.calls("POST /v2/invoice") == 1


def test_qpay_rejecting_the_invoice_is_502_and_leaves_no_session(aws, sim):
    sim.faults({"path": "/v2/invoice", "status": 400, "error": "INVOICE_LINE_REQUIRED"})

    status, body = invoke("create_payment", create_event({"amount": 15000}))

    assert status == 502
    assert_error_shape(body, "QPAY_UNAVAILABLE")
    assert aws.items("SessionsTable") == []


def test_qpay_timing_out_is_502_within_the_budget(aws, sim, monkeypatch):
    monkeypatch.setenv("QPAY_READ_TIMEOUT_SECONDS", "0.5")
    from qpay_common import composition

    composition.reset()
    sim.faults({"path": "/v2/invoice", "delay_ms": 1500, "times": 1})

    status, body = invoke("create_payment", create_event({"amount": 15000}))

    assert status == 502
    assert body["error"]["code"] == "QPAY_UNAVAILABLE"
    assert aws.items("SessionsTable") == []


def test_a_request_without_caller_identity_is_401(aws, sim):
    status, body = invoke("create_payment", create_event({"amount": 15000}, user_id=None))

    assert status == 401
    assert_error_shape(body, "UNAUTHORIZED")
    assert_nothing_written(aws, sim)
