"""Every QPay call fits into what is left of the Lambda invocation: the handlers answer before
their timeout, and a create that loses the race with its deadline leaves nothing a customer could
pay without a session. The simulator delays QPay's answers over real HTTP; the timeouts are scaled
down (1 s connect, 3 s read) so the races take seconds, not the API's 29."""

import time

import pytest

from qpay_common import composition
from tests.support import create_event, get_event, handler, invoke, list_event, webhook_event

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 3.0
# An invoice call needs connect + read timeout, plus deadlines.ANSWER_MARGIN_SECONDS.
INVOICE_CALL_NEEDS = CONNECT_TIMEOUT + READ_TIMEOUT + 1.0


@pytest.fixture
def short_timeouts(aws, monkeypatch):
    monkeypatch.setenv("QPAY_CONNECT_TIMEOUT_SECONDS", str(CONNECT_TIMEOUT))
    monkeypatch.setenv("QPAY_READ_TIMEOUT_SECONDS", str(READ_TIMEOUT))
    composition.reset()
    # Built before the clock starts, as a warm execution environment has it: the first build
    # (clients for moto) takes seconds on a busy machine and would blur what is measured here.
    for function_dir in ("create_payment", "get_payment", "list_payments", "qpay_webhook"):
        handler(function_dir)
    composition.payment_creation()
    composition.queries()
    return aws


def timed_invoke(function_dir, event, remaining_ms):
    started = time.monotonic()
    status, body = invoke(function_dir, event, remaining_ms=remaining_ms)
    return status, body, time.monotonic() - started


def assert_nothing_payable(aws, body):
    """The client got no QR or deeplink, and no session (PENDING or other) is stored or listed."""
    assert not {"qr_text", "qr_image", "deeplinks", "invoice_id"} & set(body)
    assert aws.items("SessionsTable") == []
    status, listing = invoke("list_payments", list_event())
    assert status == 200
    assert listing["items"] == []


def test_a_slow_token_leaves_no_time_for_the_invoice_so_it_is_never_requested(short_timeouts, sim):
    # Given an invocation with 6 s left and a QPay token endpoint that takes 2.5 s
    sim.faults({"path": "/v2/auth/token", "delay_ms": 2500, "times": 1})

    # When a payment is created
    status, body, elapsed = timed_invoke("create_payment", create_event({"amount": 15000}), 6000)

    # Then 6 - 2.5 s is too little for an invoice call (connect + read + margin): it is not
    # started, the client gets a 502 in time, and nothing is left that a customer could pay
    assert INVOICE_CALL_NEEDS > 6 - 2.5
    assert status == 502, body
    assert body["error"]["code"] == "QPAY_UNAVAILABLE"
    assert elapsed < 6
    assert sim.calls("POST /v2/auth/token") == 1
    assert sim.calls("POST /v2/invoice") == 0
    assert_nothing_payable(short_timeouts, body)


def test_with_enough_time_after_the_token_the_same_create_succeeds(short_timeouts, sim):
    sim.faults({"path": "/v2/auth/token", "delay_ms": 2500, "times": 1})

    status, body, elapsed = timed_invoke("create_payment", create_event({"amount": 15000}), 8000)

    assert INVOICE_CALL_NEEDS <= 8 - 2.5
    assert status == 201, body
    assert body["status"] == "PENDING"
    assert body["qr_text"]
    assert elapsed < 8


def test_an_invoice_answer_slower_than_the_read_timeout_gives_502_and_no_pending_session(short_timeouts, sim):
    # Given QPay answering the invoice call after 5 s, beyond the 3 s read timeout
    sim.faults({"path": "/v2/invoice", "method": "POST", "delay_ms": 5000, "times": 1})

    # When a payment is created with 10 s left
    status, body, elapsed = timed_invoke("create_payment", create_event({"amount": 15000}), 10_000)

    # Then the call is given up at its read timeout, not retried (QPay may have created it), and
    # the client learns so in time; no session exists and no QR was handed out
    assert status == 502, body
    assert body["error"]["code"] == "QPAY_UNAVAILABLE"
    assert elapsed < 5
    assert sim.calls("POST /v2/invoice") == 1
    assert_nothing_payable(short_timeouts, body)


def test_a_create_right_at_its_deadline_answers_before_the_lambda_times_out(short_timeouts, sim):
    # Given only 3.5 s left: too little for any invoice call with these timeouts
    status, body, elapsed = timed_invoke("create_payment", create_event({"amount": 15000}), 3500)

    assert status == 502, body
    assert elapsed < 3.5
    assert sim.calls("POST /v2/invoice") == 0
    assert_nothing_payable(short_timeouts, body)


def test_a_retry_of_the_failed_create_with_its_idempotency_key_succeeds(short_timeouts, sim):
    sim.faults({"path": "/v2/auth/token", "delay_ms": 2500, "times": 1})
    key = {"Idempotency-Key": "order-123"}
    event = create_event({"amount": 15000}, headers=key)

    first, _, _ = timed_invoke("create_payment", event, 6000)
    second, body, _ = timed_invoke("create_payment", create_event({"amount": 15000}, headers=key), 29_000)

    assert first == 502
    assert second == 201, body
    assert len(short_timeouts.items("SessionsTable")) == 1


def test_a_status_read_with_a_slow_payment_check_answers_in_time(short_timeouts, sim):
    created = invoke("create_payment", create_event({"amount": 15000}))[1]
    sim.faults({"path": "/v2/payment/check", "delay_ms": 5000})

    status, body, elapsed = timed_invoke("get_payment", get_event(created["session_id"]), 4000)

    # The check is given up inside the invocation; the read answers with what is stored
    assert status == 200, body
    assert body["status"] == "PENDING"
    assert elapsed < 4


def test_a_callback_with_a_slow_payment_check_answers_502_in_time_and_changes_nothing(short_timeouts, sim):
    created = invoke("create_payment", create_event({"amount": 15000}))[1]
    sim.pay(created["invoice_id"])
    sim.faults({"path": "/v2/payment/check", "delay_ms": 5000})

    status, body, elapsed = timed_invoke(
        "qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])), 4000
    )

    assert status == 502, body
    assert elapsed < 4
    assert short_timeouts.session(created["session_id"])["status"]["S"] == "PENDING"
