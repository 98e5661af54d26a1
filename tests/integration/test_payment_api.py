"""Status, cancel, listing and Idempotency-Key (ARCHITECTURE sections 2 and 3)."""

from urllib.parse import urlencode

import pytest

from tests.support import (
    cancel_event,
    create_event,
    create_payment,
    get_event,
    invoke,
    list_event,
    webhook_event,
)

pytestmark = pytest.mark.integration


def create(amount=15000, user_id="alice", headers=None, **extra):
    return create_payment(amount, user_id=user_id, headers=headers, expected=(200, 201), **extra)


def read(session_id, user_id="alice", **query):
    event = get_event(session_id, user_id=user_id)
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = urlencode(query)
    return invoke("get_payment", event)


def let_expire(aws, session_id):
    """Time travel for a test: the session's expires_at is in the past."""
    aws.dynamodb.update_item(
        TableName="SessionsTable",
        Key={"session_id": {"S": session_id}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2026-01-01T00:00:00.000Z"}},
    )


def cancel(session_id, user_id="alice"):
    return invoke("cancel_payment", cancel_event(session_id, user_id=user_id))


class TestStatus:
    def test_a_pending_read_finds_a_payment_whose_callback_never_came(self, aws, sim):
        created = create()
        sim.pay(created["invoice_id"])  # no callback

        status, view = read(created["session_id"])

        assert status == 200
        assert view["status"] == "PROCESSED"
        assert view["order_id"]
        assert len(aws.orders()) == 1
        assert len(aws.events()) == 1

    def test_a_check_with_null_paid_amount_and_an_attempt_without_amount_confirms_the_paid_row(
        self, aws, sim
    ):
        # Given a paid invoice, and QPay answering its check with paid_amount null (as an SDK built
        # from sandbox answers types it) and a FAILED attempt row without an amount beside the PAID row
        created = create()
        paid = sim.pay(created["invoice_id"])
        answer = {
            "count": 2,
            "paid_amount": None,
            "rows": [
                {"payment_id": "attempt-1", "payment_status": "FAILED", "payment_amount": None},
                {"payment_id": paid["payment_id"], "payment_status": "PAID", "payment_amount": "15000.00"},
            ],
        }
        sim.faults({"path": "/v2/payment/check", "body": answer, "times": 1})

        # When the shopper's app reads the status
        status, view = read(created["session_id"])

        # Then the payment is confirmed at once, not a 502 until QPay sends a number
        assert (status, view["status"], view["paid_amount"]) == (200, "PROCESSED", 15000)
        assert len(aws.orders()) == 1

    def test_a_check_whose_paid_row_has_no_amount_is_believed_neither_as_paid_nor_as_short(self, aws, sim):
        # Given a check whose PAID row does not say how much arrived
        created = create()
        paid = sim.pay(created["invoice_id"])
        answer = {"count": 1, "rows": [{"payment_id": paid["payment_id"], "payment_status": "PAID"}]}
        sim.faults({"path": "/v2/payment/check", "body": answer, "times": 1})

        status, view = read(created["session_id"])

        # Then the read answers, the session stays PENDING (not PROCESSED, not FAILED as underpaid)
        # and no order is written; a later check with a real answer decides
        assert (status, view["status"], view["paid_amount"]) == (200, "PENDING", 0)
        assert aws.orders() == []
        assert sim.calls("POST /v2/payment/check") == 1

    def test_polling_every_moment_asks_qpay_at_most_once_per_interval(self, aws, sim):
        created = create()

        answers = [read(created["session_id"]) for _ in range(10)]

        assert all(status == 200 and view["status"] == "PENDING" for status, view in answers)
        assert sim.calls("POST /v2/payment/check") == 1

    def test_terminal_sessions_never_ask_qpay(self, aws, sim):
        created = create()
        cancel(created["session_id"])
        checks = sim.calls("POST /v2/payment/check")

        for _ in range(3):
            status, view = read(created["session_id"])
            assert (status, view["status"]) == (200, "CANCELLED")

        assert sim.calls("POST /v2/payment/check") == checks

    def test_a_read_past_expires_at_expires_the_session_and_cancels_the_invoice(self, aws, sim):
        created = create()
        let_expire(aws, created["session_id"])

        status, view = read(created["session_id"])

        assert (status, view["status"]) == (200, "EXPIRED")
        assert sim.invoice(created["invoice_id"])["status"] == "CANCELLED"

    def test_a_payment_found_by_a_read_past_expiry_is_still_fulfilled(self, aws, sim):
        created = create()
        sim.pay(created["invoice_id"])
        let_expire(aws, created["session_id"])

        status, view = read(created["session_id"])

        assert (status, view["status"]) == (200, "PROCESSED")
        assert len(aws.orders()) == 1

    def test_qpay_down_during_a_read_still_answers_the_stored_state(self, aws, sim):
        created = create()
        sim.faults({"path": "/v2/payment/check", "status": 503})

        status, view = read(created["session_id"])

        assert (status, view["status"]) == (200, "PENDING")

    def test_the_view_never_carries_the_ebarimt_receiver(self, aws, sim):
        created = create(ebarimt={"receiver_type": "CITIZEN", "receiver": "88112233"})

        status, view = read(created["session_id"])

        assert status == 200
        assert "88112233" not in str(view)
        assert set(view) >= {
            "session_id",
            "status",
            "amount",
            "paid_amount",
            "currency",
            "created_at",
            "expires_at",
            "paid_at",
            "cancelled_at",
            "order_id",
            "ebarimt",
        }


class TestCheckoutView:
    """What a checkout page that knows only the session id needs: `?include=qr`."""

    def test_include_qr_gives_the_qr_and_bank_links_of_the_create_answer_while_pending(self, aws, sim):
        created = create(description="Order #9")

        status, view = read(created["session_id"], include="qr")

        assert status == 200
        assert view["status"] == "PENDING"
        assert view["description"] == "Order #9"
        assert (view["qr_text"], view["qr_image"], view["short_url"]) == (
            created["qr_text"],
            created["qr_image"],
            created["short_url"],
        )
        assert view["deeplinks"] == created["deeplinks"]
        assert len(view["deeplinks"]) > 1

    def test_a_plain_read_carries_no_qr(self, aws, sim):
        created = create(description="Order #9")

        status, view = read(created["session_id"])

        assert status == 200
        assert view["description"] == "Order #9"
        assert not {"qr_text", "qr_image", "deeplinks"} & set(view)

    def test_a_closed_session_shows_no_qr_even_when_asked(self, aws, sim):
        created = create()
        invoke("cancel_payment", cancel_event(created["session_id"]))

        status, view = read(created["session_id"], include="qr")

        assert status == 200
        assert view["status"] == "CANCELLED"
        assert view["qr_image"] is None
        assert view["deeplinks"] is None

    def test_an_unknown_include_is_400(self, aws, sim):
        created = create()

        status, body = read(created["session_id"], include="everything")

        assert status == 400
        assert body["error"]["code"] == "VALIDATION_ERROR"


class TestCancel:
    def test_cancel_is_idempotent_and_cancels_the_qpay_invoice(self, aws, sim):
        created = create()

        first = cancel(created["session_id"])
        second = cancel(created["session_id"])

        assert first[0] == 200
        assert first[1]["status"] == "CANCELLED"
        assert first[1]["cancelled_at"]
        assert second[0] == 200
        assert second[1]["cancelled_at"] == first[1]["cancelled_at"]
        assert sim.invoice(created["invoice_id"])["status"] == "CANCELLED"

    def test_cancel_then_pay_is_still_fulfilled(self, aws, sim):
        created = create()
        cancel(created["session_id"])
        payment = sim.pay(created["invoice_id"])

        status, _ = invoke(
            "qpay_webhook",
            webhook_event(sim.callback_url(created["invoice_id"]), qpay_payment_id=payment["payment_id"]),
        )

        assert status == 200
        assert read(created["session_id"])[1]["status"] == "PROCESSED"
        assert len(aws.orders()) == 1

    def test_cancelling_a_processed_session_is_409_already_paid(self, aws, sim):
        created = create()
        sim.pay(created["invoice_id"])
        read(created["session_id"])

        status, body = cancel(created["session_id"])

        assert status == 409
        assert body["error"]["code"] == "ALREADY_PAID"

    def test_money_arriving_before_the_cancel_reaches_qpay_is_settled_not_voided(self, aws, sim):
        created = create()
        sim.pay(created["invoice_id"])  # paid, callback lost, nobody polled yet

        status, body = cancel(created["session_id"])

        assert status == 409
        assert body["error"]["code"] == "ALREADY_PAID"
        assert read(created["session_id"])[1]["status"] == "PROCESSED"
        assert len(aws.orders()) == 1

    @pytest.mark.parametrize("error_form", ["error", "code", "error_code", "message"])
    def test_invoice_paid_in_every_error_form_settles_the_cancel(self, aws, sim, error_form):
        # Given a paid invoice (callback lost) whose cancel refusal QPay words in one of its forms
        created = create()
        sim.pay(created["invoice_id"])
        sim.faults({"path": "/v2/invoice/*", "method": "DELETE", "error_form": error_form})

        # When the shopper cancels
        status, body = cancel(created["session_id"])

        # Then INVOICE_PAID is read from that form: the money is settled, not voided
        assert (status, body["error"]["code"]) == (409, "ALREADY_PAID")
        assert read(created["session_id"])[1]["status"] == "PROCESSED"
        assert len(aws.orders()) == 1

    def test_another_users_session_cannot_be_read_or_cancelled(self, aws, sim):
        created = create(user_id="alice")

        assert read(created["session_id"], user_id="bob")[0] == 404
        assert cancel(created["session_id"], user_id="bob")[0] == 404
        assert read(created["session_id"], user_id="alice")[1]["status"] == "PENDING"

    def test_qpay_down_during_cancel_still_cancels_locally(self, aws, sim):
        created = create()
        sim.faults({"path": "/v2/invoice/*", "method": "DELETE", "status": 503})

        status, view = cancel(created["session_id"])

        assert (status, view["status"]) == (200, "CANCELLED")


class TestIdempotency:
    def test_five_retries_with_one_key_make_one_session_and_one_invoice(self, aws, sim):
        headers = {"idempotency-key": "order-123-attempt"}

        answers = [
            invoke("create_payment", create_event({"amount": 15000}, headers=headers)) for _ in range(5)
        ]

        assert [status for status, _ in answers] == [201, 200, 200, 200, 200]
        assert len({body["session_id"] for _, body in answers}) == 1
        assert all(body == answers[0][1] for _, body in answers)
        assert sim.calls("POST /v2/invoice") == 1
        assert len(aws.items("SessionsTable")) == 1

    def test_the_same_key_with_another_body_is_409(self, aws, sim):
        headers = {"idempotency-key": "k-1"}
        invoke("create_payment", create_event({"amount": 15000}, headers=headers))

        status, body = invoke("create_payment", create_event({"amount": 16000}, headers=headers))

        assert status == 409
        assert body["error"]["code"] == "IDEMPOTENCY_CONFLICT"
        assert sim.calls("POST /v2/invoice") == 1

    def test_keys_are_scoped_per_user(self, aws, sim):
        headers = {"idempotency-key": "shared"}

        alice = invoke("create_payment", create_event({"amount": 100}, user_id="alice", headers=headers))
        bob = invoke("create_payment", create_event({"amount": 100}, user_id="bob", headers=headers))

        assert (alice[0], bob[0]) == (201, 201)
        assert alice[1]["session_id"] != bob[1]["session_id"]

    def test_a_key_whose_first_try_failed_at_qpay_can_be_retried(self, aws, sim):
        headers = {"idempotency-key": "retry-after-502"}
        sim.faults({"path": "/v2/invoice", "status": 503, "times": 1})

        first = invoke("create_payment", create_event({"amount": 100}, headers=headers))
        second = invoke("create_payment", create_event({"amount": 100}, headers=headers))

        assert (first[0], second[0]) == (502, 201)

    def test_the_idempotency_record_expires_by_ttl(self, aws, sim):
        invoke("create_payment", create_event({"amount": 100}, headers={"idempotency-key": "ttl"}))

        record = next(item for item in aws.items("CacheTable") if item["pk"]["S"].startswith("idem#"))

        assert record["pk"]["S"] == "idem#alice#ttl"
        assert int(record["expires_at"]["N"]) > 0


class TestList:
    def test_lists_only_my_sessions_newest_first_with_a_cursor(self, aws, sim):
        mine = [create(amount=100 + n)["session_id"] for n in range(5)]
        create(user_id="bob")

        status, first = invoke("list_payments", list_event(limit="2"))
        assert status == 200
        _, second = invoke("list_payments", list_event(limit="2", cursor=first["next_cursor"]))
        _, third = invoke("list_payments", list_event(limit="2", cursor=second["next_cursor"]))

        listed = [item["session_id"] for page in (first, second, third) for item in page["items"]]
        assert listed == list(reversed(mine))
        assert (
            third["next_cursor"] is None
            or invoke("list_payments", list_event(cursor=third["next_cursor"]))[1]["items"] == []
        )

    def test_a_cursor_from_another_user_or_garbage_is_400(self, aws, sim):
        create(user_id="bob")
        create(user_id="bob")
        _, bobs = invoke("list_payments", list_event(user_id="bob", limit="1"))

        for cursor in (bobs["next_cursor"], "garbage", "eyJ4IjoxfQ"):
            status, body = invoke("list_payments", list_event(cursor=cursor))
            assert status == 400
            assert body["error"]["code"] == "VALIDATION_ERROR"

    @pytest.mark.parametrize("limit", ["0", "101", "ten"])
    def test_a_bad_limit_is_400(self, aws, sim, limit):
        status, body = invoke("list_payments", list_event(limit=limit))

        assert status == 400
        assert body["error"]["code"] == "VALIDATION_ERROR"


class TestQPayFlakiness:
    def test_payment_check_failing_three_times_then_ok_still_ends_processed(self, aws, sim):
        created = create()
        sim.pay(created["invoice_id"])
        sim.faults({"path": "/v2/payment/check", "status": 503, "times": 3})

        status, answer = invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))

        assert (status, answer) == (200, "SUCCESS")
        assert read(created["session_id"])[1]["status"] == "PROCESSED"

    def test_payment_check_failing_throughout_leaves_pending_and_answers_502(self, aws, sim):
        created = create()
        sim.pay(created["invoice_id"])
        sim.faults({"path": "/v2/payment/check", "status": 503})

        status, body = invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))

        assert status == 502
        assert body["error"]["code"] == "QPAY_UNAVAILABLE"
        assert aws.session(created["session_id"])["status"]["S"] == "PENDING"
