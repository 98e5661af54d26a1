"""Timeouts, bounded retries and typed errors of the QPay client, with a scripted HTTP session."""

import json

import pytest
import requests

from qpay_common.adapters.qpay.client import QPayClient, QPayTransport
from qpay_common.adapters.qpay.errors import (
    QPayAuthError,
    QPayNoReceipt,
    QPayRejected,
    QPayTransportError,
    QPayUnexpectedAnswer,
)
from qpay_common.adapters.qpay.models import InvoiceRequest

pytestmark = pytest.mark.unit


class FakeResponse:
    def __init__(self, status, body=None):
        self.status_code = status
        self._body = body if body is not None else {}
        self.content = b"x"

    def json(self):
        return self._body


class ScriptedSession:
    """Answers each request with the next scripted response or raises the scripted exception."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def transport(session, max_attempts=4, budget=20.0):
    return QPayTransport(
        "http://qpay.test/v2",
        connect_timeout=3.05,
        read_timeout=10,
        max_attempts=max_attempts,
        budget_seconds=budget,
        session=session,
        sleep=lambda seconds: None,
    )


def test_idempotent_calls_retry_5xx_then_succeed_with_timeouts_set():
    session = ScriptedSession(*[FakeResponse(503)] * 3, FakeResponse(200, {"ok": 1}))
    assert transport(session).send("POST", "/payment/check", idempotent=True) == {"ok": 1}
    assert len(session.calls) == 4
    connect, read = session.calls[0][2]["timeout"]
    assert connect == 3.05
    assert read == 10


def test_retries_are_bounded_and_end_in_a_transport_error():
    session = ScriptedSession(*[FakeResponse(503)] * 4)
    with pytest.raises(QPayTransportError) as error:
        transport(session).send("POST", "/payment/check", idempotent=True)
    assert error.value.status == 503
    assert len(session.calls) == 4


def test_invoice_creation_is_not_retried_after_a_5xx_or_read_timeout():
    for outcome in (FakeResponse(502), requests.ReadTimeout("slow")):
        session = ScriptedSession(outcome, FakeResponse(200, {"invoice_id": "x"}))
        with pytest.raises(QPayTransportError):
            transport(session).send("POST", "/invoice", idempotent=False)
        assert len(session.calls) == 1


def test_invoice_creation_is_retried_when_the_request_never_left():
    session = ScriptedSession(requests.ConnectTimeout("no route"), FakeResponse(200, {"invoice_id": "x"}))
    assert transport(session).send("POST", "/invoice", idempotent=False) == {"invoice_id": "x"}
    assert len(session.calls) == 2


def test_429_is_retried_even_for_invoice_creation():
    session = ScriptedSession(FakeResponse(429), FakeResponse(200, {"invoice_id": "x"}))
    assert transport(session).send("POST", "/invoice", idempotent=False) == {"invoice_id": "x"}


def test_4xx_is_a_typed_rejection_with_qpays_code_and_no_retry():
    session = ScriptedSession(FakeResponse(400, {"message": "INVOICE_PAID"}))
    with pytest.raises(QPayRejected) as error:
        transport(session).send("DELETE", "/invoice/1", idempotent=True)
    assert error.value.code == "INVOICE_PAID"
    assert len(session.calls) == 1


def test_401_is_an_auth_error():
    session = ScriptedSession(FakeResponse(401, {"error": "AUTHENTICATION_FAILED"}))
    with pytest.raises(QPayAuthError):
        transport(session).send("POST", "/payment/check", idempotent=True)


def test_no_attempt_starts_once_the_budget_is_spent():
    session = ScriptedSession(FakeResponse(200, {}))
    with pytest.raises(QPayTransportError):
        transport(session, budget=0.0).send("POST", "/payment/check", idempotent=True)
    assert session.calls == []


class FakeTokens:
    def __init__(self):
        self.tokens = ["old", "new"]
        self.invalidated = []

    def get_token(self):
        return self.tokens[0]

    def invalidate(self, token):
        self.invalidated.append(token)
        self.tokens.pop(0)


def test_a_401_invalidates_the_cached_token_and_retries_once_with_a_new_one():
    session = ScriptedSession(
        FakeResponse(401, {"error": "AUTHENTICATION_FAILED"}),
        FakeResponse(200, {"invoice_id": "inv-1", "qr_text": "q", "qr_image": "i", "urls": []}),
    )
    tokens = FakeTokens()
    client = QPayClient(transport(session), tokens)
    invoice = client.create_invoice(
        InvoiceRequest(
            invoice_code="TEST_INVOICE",
            sender_invoice_no="ps_1",
            invoice_description="d",
            amount=100,
            callback_url="https://x/webhooks/qpay",
        )
    )
    assert invoice.invoice_id == "inv-1"
    assert tokens.invalidated == ["old"]
    assert [call[2]["headers"]["Authorization"] for call in session.calls] == ["Bearer old", "Bearer new"]


def test_a_malformed_success_body_is_a_typed_error_naming_the_field_not_a_crash():
    session = ScriptedSession(FakeResponse(200, {"unexpected": True}))
    client = QPayClient(transport(session), FakeTokens())
    with pytest.raises(QPayUnexpectedAnswer, match=r"cannot be read \(invoice_id\)"):
        client.create_invoice(
            InvoiceRequest(
                invoice_code="C",
                sender_invoice_no="ps_1",
                invoice_description="d",
                amount=1,
                callback_url="https://x",
            )
        )


class Remaining:
    def __init__(self, seconds):
        self.seconds = seconds

    def get_remaining_time_in_millis(self):
        return int(self.seconds * 1000)


@pytest.fixture
def invocation():
    """Run the test inside an invocation with the given remaining time (deadlines.begin)."""
    from qpay_common import deadlines

    def begin(seconds):
        deadlines.begin(Remaining(seconds))

    yield begin
    deadlines.end()


def test_inside_an_invocation_timeouts_are_cut_to_the_time_left(invocation):
    # Given an invocation with 4 s left (3 s after the answer margin)
    invocation(4.0)
    session = ScriptedSession(FakeResponse(200, {"ok": 1}))
    # When an idempotent call is made with a 20 s budget and a 10 s read timeout
    transport(session).send("POST", "/payment/check", idempotent=True)
    # Then its read timeout fits what is left of the invocation, not the configured 10 s
    connect, read = session.calls[0][2]["timeout"]
    assert read <= 3.0
    assert connect <= 3.0


def test_retries_stop_when_the_invocation_has_no_time_left(invocation):
    invocation(1.0)  # nothing left after the answer margin
    session = ScriptedSession(FakeResponse(200, {}))
    with pytest.raises(QPayTransportError):
        transport(session).send("POST", "/payment/check", idempotent=True)
    assert session.calls == []


def test_an_invoice_is_not_requested_when_it_could_not_run_to_its_read_timeout(invocation):
    # Given 12 s left: less than connect (3.05 s) + read (10 s) timeouts plus the answer margin
    invocation(12.0)
    session = ScriptedSession(FakeResponse(200, {"invoice_id": "x"}))
    # Then the invoice call is refused before anything is sent, so QPay cannot create it unseen
    with pytest.raises(QPayTransportError, match="too little time"):
        transport(session).send("POST", "/invoice", idempotent=False)
    assert session.calls == []


def test_an_invoice_is_requested_with_its_full_read_timeout_when_there_is_time(invocation):
    invocation(15.0)
    session = ScriptedSession(FakeResponse(200, {"invoice_id": "x"}))
    assert transport(session).send("POST", "/invoice", idempotent=False) == {"invoice_id": "x"}
    assert session.calls[0][2]["timeout"] == (3.05, 10)


def test_an_invoice_is_not_retried_after_a_connect_timeout_once_time_ran_short(invocation, monkeypatch):
    # Given 15 s left, and a first attempt whose connect timeout took 3 s of it
    invocation(15.0)
    clock = {"now": 1000.0}
    monkeypatch.setattr("qpay_common.adapters.qpay.client.time.monotonic", lambda: clock["now"])
    monkeypatch.setattr("qpay_common.deadlines.time.monotonic", lambda: clock["now"])
    from qpay_common import deadlines

    deadlines.begin(Remaining(15.0))

    class SlowConnect(ScriptedSession):
        def request(self, method, url, **kwargs):
            clock["now"] += 3.05
            return super().request(method, url, **kwargs)

    session = SlowConnect(requests.ConnectTimeout("no route"), FakeResponse(200, {"invoice_id": "x"}))
    # Then the retry that could be cut short is never sent
    with pytest.raises(QPayTransportError, match="connect timeout"):
        transport(session).send("POST", "/invoice", idempotent=False)
    assert len(session.calls) == 1


def test_outside_an_invocation_only_the_call_budget_applies():
    session = ScriptedSession(FakeResponse(200, {"invoice_id": "x"}))
    assert transport(session).send("POST", "/invoice", idempotent=False) == {"invoice_id": "x"}
    assert session.calls[0][2]["timeout"] == (3.05, 10)


@pytest.mark.parametrize(
    "body",
    [
        {"error": "INVOICE_PAID", "message": "Invoice is paid"},
        {"code": "INVOICE_PAID", "message": "Invoice is paid"},
        {"error_code": "INVOICE_PAID", "message": "Invoice is paid"},
        {"message": "INVOICE_PAID"},
    ],
    ids=["error", "code", "error_code", "message"],
)
def test_a_refusal_carries_qpays_code_in_every_error_form(body):
    session = ScriptedSession(FakeResponse(400, body))

    with pytest.raises(QPayRejected) as refused:
        QPayClient(transport(session), FakeTokens()).cancel_invoice("inv-1")

    assert refused.value.code == "INVOICE_PAID"


def _ebarimt_answer(body):
    client = QPayClient(transport(ScriptedSession(FakeResponse(200, body))), FakeTokens())
    return client.create_ebarimt({"payment_id": "p1", "ebarimt_receiver_type": "CITIZEN"})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "BARIMT_STATUS_MISSING"),
        ({"id": "r1", "barimt_status": "CREATED", "ebarimt_lottery": "AB12345678"}, "BARIMT_STATUS_CREATED"),
        (
            {"id": "r1", "barimt_status": "REGISTERED", "ebarimt_receipt_id": None},
            "EBARIMT_RECEIPT_ID_MISSING",
        ),
        (
            {"status": False, "error": "EBARIMT_NOT_REGISTERED", "message": "Not enabled"},
            "EBARIMT_NOT_REGISTERED",
        ),
    ],
    ids=["empty body", "another status", "no receipt id", "QPay code in a 200"],
)
def test_an_ebarimt_200_without_a_registered_receipt_is_a_typed_refusal(body, code):
    with pytest.raises(QPayNoReceipt) as refused:
        _ebarimt_answer(body)

    assert refused.value.code == code
    assert isinstance(refused.value, QPayRejected)  # the Ebarimt job's failure path records and retries it


def test_a_registered_ebarimt_answer_is_the_receipt():
    receipt = _ebarimt_answer({"id": "r1", "barimt_status": "REGISTERED", "ebarimt_receipt_id": "0" * 33})

    assert (receipt.ebarimt_receipt_id, receipt.barimt_status) == ("0" * 33, "REGISTERED")


def _check(body):
    client = QPayClient(transport(ScriptedSession(FakeResponse(200, body))), FakeTokens())
    return client.check_payment("inv-1")


def test_a_payment_check_with_null_paid_amount_is_read_not_a_transport_error():
    check = _check(
        {
            "count": 2,
            "paid_amount": None,
            "rows": [
                {"payment_id": "a1", "payment_status": "FAILED", "payment_amount": None},
                {"payment_id": "p1", "payment_status": "PAID", "payment_amount": "15000.00"},
            ],
        }
    )

    assert (check.total_paid, [row.payment_id for row in check.paid_rows]) == (15000, ["p1"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"count": 1, "rows": [{"payment_id": "p1", "payment_status": "PAID", "payment_amount": None}]},
            "rows.0",
        ),
        ({"count": 1, "paid_amount": 15000}, "rows"),
    ],
    ids=["PAID row without amount", "no rows"],
)
def test_a_meaningless_payment_check_is_a_typed_error_naming_the_field(body, field):
    with pytest.raises(QPayUnexpectedAnswer, match=rf"payment check that cannot be read \({field}\)"):
        _check(body)


def test_every_answered_request_is_timed_and_a_request_that_never_left_is_not():
    # Given QPay answering 503 once, then 200; and a connect timeout before either
    session = ScriptedSession(requests.ConnectTimeout(), FakeResponse(503), FakeResponse(200, {"ok": 1}))
    timings: list[float] = []
    qpay = QPayTransport(
        "http://qpay.test/v2",
        connect_timeout=3.05,
        read_timeout=10,
        max_attempts=4,
        budget_seconds=20,
        session=session,
        sleep=lambda seconds: None,
        observe=timings.append,
    )

    qpay.send("POST", "/payment/check", idempotent=True)

    # Then the two answers are timed (the QPayLatency metric), the timeout is not
    assert len(timings) == 2
    assert all(0 <= milliseconds < 1000 for milliseconds in timings)


def test_the_lambda_transport_publishes_qpay_latency_as_a_metric(capsys):
    from qpay_common.observability import qpay_latency

    qpay_latency(123.4)

    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert line["QPayLatency"] in (123.4, [123.4])
    assert line["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "QPayLatency", "Unit": "Milliseconds"}
    ]
    assert line["service"] == "qpay-payments"


def test_the_default_session_keeps_a_connection_for_every_job_thread():
    # A job's threads share one transport: with requests' default 10 per host, calls past the
    # tenth would each open a new connection to QPay and discard it.
    from qpay_common.settings import Settings

    most_threads = next(
        meta.le for meta in Settings.model_fields["job_concurrency"].metadata if hasattr(meta, "le")
    )
    transport = QPayTransport(
        "https://merchant.qpay.mn/v2", connect_timeout=1, read_timeout=1, max_attempts=1, budget_seconds=1
    )

    for scheme in ("https://", "http://"):
        adapter = transport.session.get_adapter(f"{scheme}merchant.qpay.mn")
        assert adapter._pool_maxsize >= most_threads


@pytest.mark.parametrize(
    "base",
    [
        "https://merchant.qpay.mn",
        "https://merchant.qpay.mn/",
        "https://merchant.qpay.mn/v2",
        "https://merchant.qpay.mn/v2/",
    ],
)
def test_qpays_documented_base_works_with_or_without_v2(base):
    # Given QPAY_BASE_URL as QPay documents it, or as the v2 root
    session = ScriptedSession(FakeResponse(200, {"ok": 1}))
    qpay = QPayTransport(
        base, connect_timeout=1, read_timeout=1, max_attempts=1, budget_seconds=5, session=session
    )

    # When a call is made
    qpay.send("POST", "/payment/check", idempotent=True)

    # Then it goes to the v2 API, never to /v2/v2 or outside it
    assert session.calls[0][1] == "https://merchant.qpay.mn/v2/payment/check"
