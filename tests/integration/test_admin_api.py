"""The operators' API (/admin/...) with the handler in process against DynamoDB Local (the real
by_status index and conditional writes), the QPay simulator over HTTP and moto's EventBridge."""

import concurrent.futures
import json
import uuid
from datetime import UTC, datetime

import pytest

from qpay_common import composition
from tests.support import admin, create_payment, invoke, list_event

pytestmark = pytest.mark.integration

ROUTES = [
    ("GET", "/admin/payments", None),
    ("GET", "/admin/payments/ps_0123456789abcdef0123456789abcdef", None),
    ("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/reconcile", None),
    ("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/republish", None),
    ("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/refund", {"note": "x"}),
    ("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/ebarimt", None),
    ("GET", "/admin/summary", None),
]


def processed(sim, payment_type="CARD", amount=15000, **fields):
    """A fulfilled session: paid at the simulator (no callback), found by an operator's reconcile."""
    created = create_payment(amount, **fields)
    payment = sim.pay(created["invoice_id"], payment_type=payment_type)
    status, view = admin("POST", f"/admin/payments/{created['session_id']}/reconcile")
    assert (status, view["status"]) == (200, "PROCESSED"), view
    return {**created, "payment_id": payment["payment_id"], "order_id": view["order_id"]}


def refund(session_id, **body):
    return admin(
        "POST", f"/admin/payments/{session_id}/refund", body={"note": "customer returned it", **body}
    )


class TestAuthorisation:
    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    def test_a_token_without_the_admin_scope_is_forbidden(self, app_env, sim, method, path, body):
        status, answer = admin(method, path, scopes=None, body=body)

        assert status == 403
        assert answer["error"]["code"] == "FORBIDDEN"
        assert sim.calls("POST /v2/auth/token") == 0  # nothing was asked of QPay

    @pytest.mark.parametrize("scopes", ["payments/read", "payments/admin-extra", "payments", ""])
    def test_a_near_miss_scope_is_forbidden(self, app_env, sim, scopes):
        assert admin("GET", "/admin/summary", scopes=scopes)[0] == 403

    def test_no_identity_is_unauthorized(self, app_env, sim):
        assert admin("GET", "/admin/summary", user_id=None)[0] == 401

    def test_the_scope_may_come_as_a_list_claim(self, live_aws, sim):
        query = {"from": datetime.now(UTC).isoformat()}
        assert admin("GET", "/admin/summary", scopes="[openid payments/admin]", query=query)[0] == 200


class TestListing:
    def test_sessions_by_status_and_user_newest_first_in_pages(self, live_aws, sim):
        # The tables are shared with other tests: this one's sessions are those created since `since`.
        since = {"from": datetime.now(UTC).isoformat()}
        bob = f"bob-{uuid.uuid4().hex[:8]}"
        paid = [processed(sim, "P2P", amount=1000 + n)["session_id"] for n in range(3)]
        pending = [create_payment(2000 + n, user_id=bob)["session_id"] for n in range(2)]

        status, first = admin("GET", "/admin/payments", query={**since, "limit": "2"})
        status2, second = admin(
            "GET", "/admin/payments", query={**since, "limit": "2", "cursor": first["next_cursor"]}
        )
        _, third = admin(
            "GET", "/admin/payments", query={**since, "limit": "2", "cursor": second["next_cursor"]}
        )
        _, processed_only = admin("GET", "/admin/payments", query={**since, "status": "PROCESSED"})
        _, bobs = admin("GET", "/admin/payments", query={"user_id": bob, "status": "PENDING"})

        assert (status, status2) == (200, 200)
        listed = [item["session_id"] for page in (first, second, third) for item in page["items"]]
        assert listed == (paid + pending)[::-1]
        assert third["next_cursor"] is None
        assert [item["session_id"] for item in processed_only["items"]] == paid[::-1]
        assert [item["session_id"] for item in bobs["items"]] == pending[::-1]
        row = processed_only["items"][0]
        assert (row["status"], row["paid_amount"]) == ("PROCESSED", 1002)
        assert row["order_id"] == "ord_" + row["session_id"][3:]
        assert "qr_image" not in row

    def test_a_time_window_selects_by_creation_time(self, live_aws, sim):
        shopper = f"carol-{uuid.uuid4().hex[:8]}"
        early = create_payment(100, user_id=shopper)
        middle = create_payment(200, user_id=shopper)
        create_payment(300, user_id=shopper)

        _, page = admin(
            "GET", "/admin/payments", query={"from": early["created_at"], "to": middle["created_at"]}
        )
        today = datetime.now(UTC).date().isoformat()
        _, whole_day = admin("GET", "/admin/payments", query={"from": today, "to": today, "user_id": shopper})

        assert [item["session_id"] for item in page["items"]] == [middle["session_id"], early["session_id"]]
        assert len(whole_day["items"]) == 3

    @pytest.mark.parametrize(
        "query",
        [
            {"status": "CREATING"},
            {"status": "paid"},
            {"from": "yesterday"},
            {"limit": "0"},
            {"limit": "101"},
            {"cursor": "garbage"},
            {"from": "2026-12-02", "to": "2026-12-01"},
        ],
    )
    def test_bad_filters_are_400(self, live_aws, sim, query):
        status, answer = admin("GET", "/admin/payments", query=query)

        assert status == 400
        assert answer["error"]["code"] == "VALIDATION_ERROR"

    @pytest.mark.parametrize("path", ["/admin/payments", "/admin/summary"])
    def test_a_window_ending_before_it_starts_names_the_rule(self, live_aws, sim, path):
        status, answer = admin("GET", path, query={"from": "2026-12-02", "to": "2026-12-01"})

        assert (status, answer["error"]["code"]) == (400, "VALIDATION_ERROR")
        assert [detail["type"] for detail in answer["error"]["details"]] == ["from_after_to"]

    def test_a_cursor_of_another_filter_or_of_the_users_listing_is_refused(self, live_aws, sim):
        for _ in range(3):
            create_payment(100)
        _, page = admin("GET", "/admin/payments", query={"limit": "1", "status": "PENDING"})
        _, mine = invoke("list_payments", list_event(limit="1"))

        assert admin("GET", "/admin/payments", query={"cursor": page["next_cursor"]})[0] == 400
        assert admin("GET", "/admin/payments", query={"cursor": mine["next_cursor"]})[0] == 400


class TestInspect:
    def test_the_session_its_order_and_qpays_view_without_the_receiver(self, live_aws, sim):
        receiver = "88112233"
        session = processed(sim, "CARD", ebarimt={"receiver_type": "CITIZEN", "receiver": receiver})

        status, detail = admin("GET", f"/admin/payments/{session['session_id']}")

        assert status == 200
        assert detail["session"]["status"] == "PROCESSED"
        assert detail["session"]["ebarimt"]["receiver_type"] == "CITIZEN"
        assert detail["order"]["order_id"] == session["order_id"]
        assert detail["qpay"]["available"] is True
        assert detail["qpay"]["invoice"]["status"] == "CLOSED"
        assert detail["qpay"]["check"]["paid_total"] == 15000
        [payment] = detail["qpay"]["payments"]
        assert (payment["payment_id"], payment["status"], payment["type"]) == (
            session["payment_id"],
            "PAID",
            "CARD",
        )
        assert receiver not in json.dumps(detail)

    def test_qpay_down_still_shows_the_session(self, live_aws, sim):
        created = create_payment()
        sim.faults({"path": "/v2/payment/check", "status": 503})

        status, detail = admin("GET", f"/admin/payments/{created['session_id']}")

        assert status == 200
        assert detail["qpay"]["available"] is False
        assert detail["qpay"]["check"] is None
        assert detail["qpay"]["errors"] == ["payment check: SERVICE_UNAVAILABLE (HTTP 503)"]
        assert detail["session"]["status"] == "PENDING"

    def test_an_unknown_session_is_404(self, live_aws, sim):
        assert admin("GET", "/admin/payments/ps_missing")[0] == 404


class TestReconcileAndRepublish:
    def test_reconcile_now_fulfils_a_payment_whose_callback_was_lost(self, live_aws, sim):
        session = processed(sim, "P2P")

        assert len(live_aws.orders(session["session_id"])) == 1
        assert [e["detail-type"] for e in live_aws.events(session["session_id"])] == ["PaymentCompleted"]

    def test_reconcile_when_qpay_is_down_is_502_and_changes_nothing(self, live_aws, sim):
        created = create_payment()
        sim.pay(created["invoice_id"])
        sim.faults({"path": "/v2/payment/check", "status": 503})

        status, answer = admin("POST", f"/admin/payments/{created['session_id']}/reconcile")

        assert (status, answer["error"]["code"]) == (502, "QPAY_UNAVAILABLE")
        assert live_aws.session(created["session_id"])["status"]["S"] == "PENDING"

    def test_republish_sends_payment_completed_again_with_the_same_order_id(self, live_aws, sim):
        session = processed(sim)

        status, answer = admin("POST", f"/admin/payments/{session['session_id']}/republish")

        assert (status, answer["published"], answer["order_id"]) == (
            200,
            ["PaymentCompleted"],
            session["order_id"],
        )
        events = live_aws.events(session["session_id"])
        assert [e["detail"]["order_id"] for e in events] == [session["order_id"]] * 2

    def test_republish_without_an_order_is_409(self, live_aws, sim):
        created = create_payment()

        status, answer = admin("POST", f"/admin/payments/{created['session_id']}/republish")

        assert (status, answer["error"]["code"]) == (409, "NO_ORDER")


class TestRefund:
    def test_a_card_payment_is_refunded_at_qpay_announced_and_audited(self, live_aws, sim):
        session = processed(sim, "CARD")

        status, view = refund(session["session_id"])

        assert status == 200
        assert view["status"] == "REFUNDED"
        assert (view["refund"]["requested_by"], view["refund"]["note"]) == ("ops", "customer returned it")
        assert view["refund"]["refunded_at"]
        assert view["refund"]["published_at"]
        [payment] = sim.invoice(session["invoice_id"])["payments"]
        assert payment["status"] == "REFUNDED"
        events = live_aws.events(session["session_id"])
        assert [e["detail-type"] for e in events] == ["PaymentCompleted", "PaymentRefunded"]
        assert events[1]["detail"]["refunded_amount"] == 15000
        assert events[1]["detail"]["order_id"] == session["order_id"]
        item = live_aws.session(session["session_id"])
        assert item["status"]["S"] == "REFUNDED"
        assert "purge_at" in item

    def test_a_qr_payment_answers_409_with_the_reason_and_nothing_changes(self, live_aws, sim):
        session = processed(sim, "P2P")

        status, answer = refund(session["session_id"])

        assert status == 409
        assert answer["error"]["code"] == "REFUND_NOT_SUPPORTED"
        assert "card payments only" in answer["error"]["message"]
        assert sim.calls("DELETE /v2/payment/refund/{id}") == 0
        assert sim.invoice(session["invoice_id"])["payments"][0]["status"] == "PAID"
        assert "refund" not in live_aws.session(session["session_id"])

    def test_a_repeated_refund_is_200_and_refunds_once(self, live_aws, sim):
        session = processed(sim, "CARD")

        answers = [refund(session["session_id"]) for _ in range(3)]

        assert [status for status, _ in answers] == [200, 200, 200]
        assert {view["refund"]["refunded_at"] for _, view in answers} == {
            answers[0][1]["refund"]["refunded_at"]
        }
        assert sim.calls("DELETE /v2/payment/refund/{id}") == 1
        kinds = [e["detail-type"] for e in live_aws.events(session["session_id"])]
        assert kinds.count("PaymentRefunded") == 1

    def test_two_operators_refunding_at_once_refund_once(self, live_aws, sim):
        session = processed(sim, "CARD")
        refunds = composition.refunds()

        def one(actor):
            return refunds.refund(actor, session["session_id"], note=f"by {actor}").status.value

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(one, ["ops-1", "ops-2", "ops-3", "ops-4"]))

        assert outcomes == ["REFUNDED"] * 4
        assert sim.invoice(session["invoice_id"])["payments"][0]["status"] == "REFUNDED"
        kinds = [e["detail-type"] for e in live_aws.events(session["session_id"])]
        assert kinds.count("PaymentRefunded") == 1

    def test_a_refund_cut_short_by_qpay_is_finished_by_repeating_it(self, live_aws, sim):
        session = processed(sim, "CARD")
        sim.faults({"path": "/v2/payment/refund/*", "status": 503, "times": 1})

        status, answer = refund(session["session_id"])

        assert (status, answer["error"]["code"]) == (502, "QPAY_UNAVAILABLE")
        item = live_aws.session(session["session_id"])
        assert item["status"]["S"] == "PROCESSED"
        assert json.loads(item["refund"]["S"])["requested_by"] == "ops"
        assert refund(session["session_id"])[1]["status"] == "REFUNDED"

    @pytest.mark.parametrize("prepare", ["pending", "cancelled"])
    def test_an_unfulfilled_session_is_409_not_refundable(self, live_aws, sim, prepare):
        created = create_payment()
        if prepare == "cancelled":
            from tests.support import cancel_event

            invoke("cancel_payment", cancel_event(created["session_id"]))

        status, answer = refund(created["session_id"])

        assert (status, answer["error"]["code"]) == (409, "NOT_REFUNDABLE")

    @pytest.mark.parametrize(
        "body",
        [{}, {"note": ""}, {"note": "x" * 501}, {"note": "ok", "extra": 1}, {"note": "ok", "payment_id": ""}],
    )
    def test_a_bad_body_is_400(self, live_aws, sim, body):
        status, answer = admin(
            "POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/refund", body=body
        )

        assert (status, answer["error"]["code"]) == (400, "VALIDATION_ERROR")

    def test_another_sessions_payment_id_is_400(self, live_aws, sim):
        session = processed(sim, "CARD")
        other = processed(sim, "CARD")

        status, _ = refund(session["session_id"], payment_id=other["payment_id"])

        assert status == 400
        assert sim.calls("DELETE /v2/payment/refund/{id}") == 0


@pytest.fixture
def ebarimt_on(monkeypatch, empty_tables):
    monkeypatch.setenv("EBARIMT_ENABLED", "true")
    composition.reset()
    return empty_tables


class TestRefundAndReceipt:
    def test_the_receipt_of_a_refunded_payment_is_cancelled_at_qpay(self, ebarimt_on, sim):
        session = processed(sim, "CARD")
        assert composition.scheduled_jobs().ebarimt(120).outcomes == {"registered": 1}

        status, view = refund(session["session_id"])

        assert (status, view["ebarimt"]["status"]) == (200, "CANCELLED")
        assert sim.invoice(session["invoice_id"])["payments"][0]["ebarimt"] == "CANCELED"
        assert composition.scheduled_jobs().ebarimt(120).due == 0

    def test_a_cancel_qpay_failed_is_done_by_the_ebarimt_job(self, ebarimt_on, sim):
        session = processed(sim, "CARD")
        composition.scheduled_jobs().ebarimt(120)
        # Down for every retry of the refund's own attempt.
        sim.faults({"path": "/v2/ebarimt_v3/*", "method": "DELETE", "status": 503, "times": 4})

        status, view = refund(session["session_id"])
        assert (status, view["ebarimt"]["status"]) == (200, "CANCELLING")
        ebarimt_on.dynamodb.update_item(
            TableName="SessionsTable",
            Key={"session_id": {"S": session["session_id"]}},
            UpdateExpression="SET ebarimt_next_at = :now",
            ExpressionAttributeValues={":now": {"N": str(int(datetime.now(UTC).timestamp()) - 1)}},
        )

        assert composition.scheduled_jobs().ebarimt(120).outcomes == {"cancelled": 1}
        assert sim.invoice(session["invoice_id"])["payments"][0]["ebarimt"] == "CANCELED"


class TestEbarimtRequeue:
    def rejected(self, sim):
        """A fulfilled session whose receipt QPay refused for good (a receiver type it rejects)."""
        session = processed(sim, "CARD")
        sim.faults(
            {"path": "/v2/ebarimt_v3/create", "status": 400, "error": "INVALID_RECEIVER_TYPE", "times": 1}
        )
        assert composition.scheduled_jobs().ebarimt(120).outcomes == {"rejected": 1}
        return session

    def test_a_rejected_receipt_requeued_with_a_company_registers_on_the_next_run(self, ebarimt_on, sim):
        session = self.rejected(sim)

        status, answer = admin(
            "POST",
            f"/admin/payments/{session['session_id']}/ebarimt",
            body={"receiver_type": "COMPANY", "receiver": "5317878", "district_code": "2301"},
        )

        assert status == 202, answer
        receipt = answer["ebarimt"]
        assert (receipt["status"], receipt["attempts"], receipt["last_error"]) == ("PENDING", 0, None)
        assert (receipt["receiver_type"], receipt["district_code"]) == ("COMPANY", "2301")
        assert "5317878" not in json.dumps(answer)  # the receiver is stored, never shown
        assert composition.scheduled_jobs().ebarimt(120).outcomes == {"registered": 1}
        [payment] = sim.invoice(session["invoice_id"])["payments"]
        assert (payment["ebarimt"], payment["ebarimt_receiver_type"]) == ("REGISTERED", "COMPANY")
        _, view = admin("GET", f"/admin/payments/{session['session_id']}")
        assert view["session"]["ebarimt"]["lottery"] == payment["ebarimt_lottery"]
        assert view["session"]["ebarimt"]["registered_at"]

    def test_no_body_requeues_with_the_sessions_own_data(self, ebarimt_on, sim):
        session = self.rejected(sim)

        status, answer = admin("POST", f"/admin/payments/{session['session_id']}/ebarimt")

        assert (status, answer["ebarimt"]["status"]) == (202, "PENDING")
        assert composition.scheduled_jobs().ebarimt(120).outcomes == {"registered": 1}

    def test_a_registered_receipt_is_409_and_qpay_is_not_asked_again(self, ebarimt_on, sim):
        session = processed(sim, "CARD")
        composition.scheduled_jobs().ebarimt(120)

        status, answer = admin("POST", f"/admin/payments/{session['session_id']}/ebarimt")

        assert (status, answer["error"]["code"]) == (409, "EBARIMT_ALREADY_REGISTERED")
        assert composition.scheduled_jobs().ebarimt(120).due == 0
        assert sim.calls("POST /v2/ebarimt_v3/create") == 1

    def test_a_receipt_still_pending_or_an_unpaid_session_is_409(self, ebarimt_on, sim):
        pending = processed(sim, "CARD")
        unpaid = create_payment(1000)
        for session_id in (pending["session_id"], unpaid["session_id"]):
            status, answer = admin("POST", f"/admin/payments/{session_id}/ebarimt")
            assert (status, answer["error"]["code"]) == (409, "EBARIMT_NOT_REQUEUEABLE")
        assert admin("POST", "/admin/payments/ps_0123456789abcdef0123456789abcdef/ebarimt")[0] == 404

    @pytest.mark.parametrize(
        "body",
        [
            {"receiver_type": "INDIVIDUAL"},
            {"district_code": "35"},
            {"classification_code": "12345678"},
            {"receiver": ""},
            {"receiver_type": "CITIZEN", "extra": 1},
            [],
            "CITIZEN",
        ],
    )
    def test_a_bad_body_is_400_and_nothing_changes(self, ebarimt_on, sim, body):
        session = self.rejected(sim)

        status, answer = admin("POST", f"/admin/payments/{session['session_id']}/ebarimt", body=body)

        assert (status, answer["error"]["code"]) == (400, "VALIDATION_ERROR")
        assert ebarimt_on.session(session["session_id"])["ebarimt_status"]["S"] == "REJECTED"

    def test_sessions_are_listed_by_receipt_status_from_the_index(self, ebarimt_on, sim):
        registered = processed(sim, "CARD")
        composition.scheduled_jobs().ebarimt(120)
        rejected = [self.rejected(sim) for _ in range(3)]

        status, first = admin("GET", "/admin/payments", query={"ebarimt_status": "REJECTED", "limit": "2"})
        _, second = admin(
            "GET",
            "/admin/payments",
            query={"ebarimt_status": "REJECTED", "limit": "2", "cursor": first["next_cursor"]},
        )
        _, done = admin("GET", "/admin/payments", query={"ebarimt_status": "REGISTERED"})

        assert status == 200
        listed = [item["session_id"] for item in first["items"] + second["items"]]
        assert listed == [session["session_id"] for session in reversed(rejected)]
        assert all(item["ebarimt_status"] == "REJECTED" for item in first["items"] + second["items"])
        assert second["next_cursor"] is None
        assert [item["session_id"] for item in done["items"]] == [registered["session_id"]]
        bad, answer = admin("GET", "/admin/payments", query={"ebarimt_status": "LOST"})
        assert (bad, answer["error"]["code"]) == (400, "VALIDATION_ERROR")


class TestSummary:
    def test_counts_sums_and_rates_of_the_window(self, live_aws, sim):
        since = {"from": datetime.now(UTC).isoformat()}
        processed(sim, "CARD", amount=1000)
        refunded = processed(sim, "CARD", amount=2000)
        refund(refunded["session_id"])
        cancelled = create_payment(3000)
        from tests.support import cancel_event

        invoke("cancel_payment", cancel_event(cancelled["session_id"]))
        create_payment(4000)

        status, summary = admin("GET", "/admin/summary", query=since)
        _, empty = admin("GET", "/admin/summary", query={"from": "2020-01-01", "to": "2020-01-02"})

        assert status == 200
        assert summary["sessions"] == 4
        assert summary["by_status"]["PROCESSED"] == {"count": 1, "amount": 1000, "paid_amount": 1000}
        assert summary["by_status"]["REFUNDED"]["count"] == 1
        assert summary["by_status"]["PENDING"]["amount"] == 4000
        assert (summary["cancelled"], summary["paid"], summary["cancellation_rate"]) == (1, 2, 0.25)
        assert summary["refunded_amount"] == 2000
        assert summary["ebarimt"] == {"SKIPPED": 2}
        assert summary["complete"] is True
        assert empty["sessions"] == 0
