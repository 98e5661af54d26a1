"""Reconcile, expire and Ebarimt, driven as EventBridge would (the handlers, in process) against
DynamoDB Local, with the simulator over HTTP, events through moto's EventBridge and the reconcile
queues in moto's SQS: a reconcile run is the dispatcher, then the worker over every message it
queued (tests.support.run_reconcile), one invocation at a time."""

import concurrent.futures
import io
import json
import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from local.endpoints import local_client
from local.sqs import recreate_queues
from local.template import load_template
from qpay_common import composition
from qpay_common.domain.payment_request import CreatePaymentRequest
from qpay_common.domain.session import iso
from tests.support import (
    TEMPLATE,
    LambdaContext,
    create_payment,
    drain_reconcile_queues,
    get_event,
    handler,
    invoke,
    overridden,
    run_reconcile,
    sample_event,
    settlement_with,
    webhook_event,
)

pytestmark = pytest.mark.integration


def run_job(name, seconds=120):
    if name == "reconcile":
        return run_reconcile(remaining_ms=int(seconds * 1000))
    return handler(name).lambda_handler(sample_event(name), LambdaContext(remaining_ms=int(seconds * 1000)))


def set_attributes(aws, session_id, **values):
    """Time travel for a test: move a session's due times or creation time."""
    names = {f"#{k}": k for k in values}
    typed = {f":{k}": ({"N": str(v)} if isinstance(v, int | float) else {"S": v}) for k, v in values.items()}
    aws.dynamodb.update_item(
        TableName="SessionsTable",
        Key={"session_id": {"S": session_id}},
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=typed,
    )


def status_of(aws, session_id):
    return aws.session(session_id)["status"]["S"]


class TestReconcile:
    def test_a_lost_callback_is_found_and_fulfilled_once(self, empty_tables, sim):
        aws = empty_tables
        created = create_payment()
        sim.pay(created["invoice_id"])  # the callback never comes

        summary = run_job("reconcile")

        assert summary["outcomes"] == {"confirmed": 1}
        assert status_of(aws, created["session_id"]) == "PROCESSED"
        assert len(aws.orders(created["session_id"])) == 1
        assert len(aws.events(created["session_id"])) == 1

    def test_a_crash_between_paid_and_the_order_is_finished_by_the_next_run(self, empty_tables, sim):
        aws = empty_tables
        created = create_payment()
        sim.pay(created["invoice_id"])

        def crash(stage, session):
            if stage == "before_order":
                raise RuntimeError("Lambda died")

        with overridden("qpay_webhook", composition.settlement, settlement_with(fault_hook=crash)):
            assert invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))[0] == 500
        assert status_of(aws, created["session_id"]) == "PAID"
        set_attributes(aws, created["session_id"], next_check_at=int(time.time()) - 1)  # a minute later

        summary = run_job("reconcile")

        assert summary["outcomes"] == {"finished": 1}
        assert status_of(aws, created["session_id"]) == "PROCESSED"
        assert len(aws.orders(created["session_id"])) == 1
        assert len(aws.events(created["session_id"])) == 1

    def test_checks_back_off_so_an_unpaid_invoice_is_not_asked_every_minute(self, empty_tables, sim):
        aws = empty_tables
        created = create_payment()

        first = run_job("reconcile")
        second = run_job("reconcile")  # a minute later the session is not due yet

        assert first["dispatched"] == {"queued": 1}
        assert first["outcomes"] == {"still_open": 1}
        assert second["due"] == 0
        assert sim.calls("POST /v2/payment/check") == 1
        next_check = int(aws.session(created["session_id"])["next_check_at"]["N"])
        assert 50 <= next_check - time.time() <= 61
        set_attributes(aws, created["session_id"], next_check_at=int(time.time()) - 1)
        run_job("reconcile")
        next_check = int(aws.session(created["session_id"])["next_check_at"]["N"])
        assert 110 <= next_check - time.time() <= 121

    def test_the_dispatcher_publishes_how_long_the_oldest_due_session_has_waited(
        self, empty_tables, sim, capsys
    ):
        aws = empty_tables
        waiting, fresh = create_payment(), create_payment()
        # Given one session due 20 minutes ago (the backlog) and one due now
        set_attributes(aws, waiting["session_id"], next_check_at=int(time.time()) - 1200)
        context = LambdaContext(function_name="ReconcileFunction", remaining_ms=60_000)
        capsys.readouterr()

        summary = handler("reconcile").lambda_handler(sample_event("reconcile"), context)

        assert 1200 <= summary["gauges"]["ReconcileOldestDueSeconds"] < 1260
        assert summary["gauges"]["ReconcilePriorityOldestDueSeconds"] == 0
        # The metric CloudWatch gets (EMF on stdout), which the backlog alarm watches
        emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        published = [line["ReconcileOldestDueSeconds"] for line in emf if "ReconcileOldestDueSeconds" in line]
        assert len(published) == 1
        assert 1200 <= published[0][0] < 1260
        assert fresh["session_id"] != waiting["session_id"]
        drain_reconcile_queues()

    def test_only_due_sessions_are_read_out_of_ten_thousand(self, empty_tables, sim):
        aws = empty_tables
        due = [create_payment(amount=100 + n)["session_id"] for n in range(50)]
        future = int(time.time()) + 3600
        now = iso(datetime.now(UTC))
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "session_id": {"S": f"ps_filler{n:027d}"},
                        "user_id": {"S": "filler"},
                        "status": {"S": "PENDING" if n % 2 else "PROCESSED"},
                        "version": {"N": "1"},
                        "amount": {"N": "100"},
                        "created_at": {"S": now},
                        "updated_at": {"S": now},
                        # Half are open and checked later; half are done and carry no index key.
                        **(
                            {"reconcile_shard": {"S": f"R#{n % 10}"}, "next_check_at": {"N": str(future)}}
                            if n % 2
                            else {}
                        ),
                    }
                }
            }
            for n in range(9950)
        ]
        for start in range(0, len(requests), 25):
            aws.dynamodb.batch_write_item(RequestItems={"SessionsTable": requests[start : start + 25]})

        summary = run_job("reconcile")

        assert summary["due"] == 50
        assert summary["index_items_read"] == 50
        assert sim.calls("POST /v2/payment/check") == 50
        assert {aws.session(session_id)["reconcile_checks"]["N"] for session_id in due} == {"1"}

    def test_five_hundred_due_sessions_with_a_slow_qpay_are_confirmed_once_in_a_run(self, empty_tables, sim):
        aws = empty_tables
        # Created through the use case from threads (handlers must not run concurrently in one
        # process: Powertools shares the current event between resolvers).
        creation = composition.payment_creation()

        def create(amount):
            request = CreatePaymentRequest(amount=amount)
            return creation.create_payment("alice", request, "http://127.0.0.1:3000")[0]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            created = list(pool.map(create, range(100, 600)))
        for session in created:
            sim.pay(session.invoice_id)
        sim.faults({"path": "/v2/payment/check", "delay_ms": 100})

        # A budget no loaded machine runs out of: this proves the run works all 500 once and loses
        # none; its speed is a benchmark figure (make bench), not an assertion.
        started = time.monotonic()
        summary = run_job("reconcile", seconds=300)
        elapsed = time.monotonic() - started

        # One worker invocation at a time here (in process), its batch of 10 worked in parallel.
        print(f"\nreconcile of 500 due sessions with 100 ms QPay checks: {elapsed:.1f} s")
        assert summary["outcomes"] == {"confirmed": 500}
        assert summary["left_for_next_run"] == 0
        assert status_of(aws, created[-1].session_id) == "PROCESSED"

    def test_a_run_stops_before_its_timeout_and_leaves_the_rest_due(self, empty_tables, sim):
        for _ in range(5):
            create_payment()
        composition.settings()  # warm the graph so timing is the job's own

        summary = run_job("reconcile", seconds=composition.settings().job_safety_seconds)

        assert summary["due"] == 5
        assert summary["left_for_next_run"] == 5
        assert run_job("reconcile")["outcomes"] == {"still_open": 5}

    def test_two_overlapping_dispatcher_runs_queue_each_session_once(self, empty_tables, sim):
        aws = empty_tables
        created = [create_payment(amount=100 + n) for n in range(20)]
        for body in created:
            sim.pay(body["invoice_id"])
        dispatcher = composition.reconcile_dispatcher()

        # Two runs at once (the use case from threads: handlers must not share a process)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            summaries = list(pool.map(lambda _: dispatcher.dispatch(60), range(2)))
        outcomes = drain_reconcile_queues()

        # Each session was leased by exactly one run, so queued and checked once
        assert sum(summary.outcomes.get("queued", 0) for summary in summaries) == 20
        assert outcomes == {"confirmed": 20}
        assert sim.calls("POST /v2/payment/check") == 20
        for body in created:
            assert status_of(aws, body["session_id"]) == "PROCESSED"
            assert len(aws.orders(body["session_id"])) == 1
            assert len(aws.events(body["session_id"])) == 1

    def test_a_duplicate_delivery_checks_the_session_once(self, empty_tables, sim):
        created = create_payment()
        composition.reconcile_dispatcher().dispatch(60)
        sqs = local_client("sqs", os.environ["AWS_ENDPOINT_URL_SQS"])
        url = os.environ["RECONCILE_QUEUE_URL"]
        [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        sqs.send_message(QueueUrl=url, MessageBody=message["Body"])  # SQS delivers at least once
        handle = message["ReceiptHandle"]
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)

        outcomes = drain_reconcile_queues()

        assert outcomes == {"still_open": 1, "not_leased": 1}
        assert sim.calls("POST /v2/payment/check") == 1
        assert empty_tables.session(created["session_id"])["reconcile_checks"]["N"] == "1"

    def test_a_message_the_worker_cannot_process_goes_to_the_dead_letter_queue_after_5_receives(
        self, empty_tables, sim
    ):
        template = load_template(TEMPLATE)
        sqs = local_client("sqs", os.environ["AWS_ENDPOINT_URL_SQS"])
        url = os.environ["RECONCILE_QUEUE_URL"]
        dead_letters = sqs.get_queue_url(QueueName="ReconcileDeadLetterQueue")["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})  # retry at once
        try:
            sqs.send_message(QueueUrl=url, MessageBody='{"not": "a reconcile task"}')

            outcomes = Counter()
            for _ in range(6):
                outcomes.update(drain_reconcile_queues(max_batches=1))

            # Each receive failed (the whole batch), and the redrive policy moved it on
            assert outcomes["failed_invocation"] == 5
            moved = sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10)["Messages"]
            assert [m["Body"] for m in moved] == ['{"not": "a reconcile task"}']
        finally:
            recreate_queues(sqs, template)  # the template's visibility timeout, and empty

    def test_a_worker_short_of_time_returns_its_messages_unchecked(self, empty_tables, sim):
        created = create_payment()
        composition.reconcile_dispatcher().dispatch(60)

        # 10 s left: less than one QPay call budget (20 s), so no check is started
        outcomes = drain_reconcile_queues(remaining_ms=10_000, max_batches=1)

        assert outcomes == {"failed_invocation": 1}
        assert sim.calls("POST /v2/payment/check") == 0
        stored = empty_tables.session(created["session_id"])
        assert "reconcile_checks" not in stored or stored["reconcile_checks"]["N"] == "0"


class TestExpire:
    def test_an_old_pending_session_expires_its_invoice_is_cancelled_and_a_late_payment_is_honoured(
        self, empty_tables, sim
    ):
        aws = empty_tables
        created = create_payment()
        old = iso(datetime.now(UTC) - timedelta(minutes=31))
        set_attributes(aws, created["session_id"], created_at=old)
        fresh = create_payment()

        summary = run_job("expire")

        assert summary["outcomes"] == {"expired": 1}
        assert status_of(aws, created["session_id"]) == "EXPIRED"
        assert status_of(aws, fresh["session_id"]) == "PENDING"
        assert sim.invoice(created["invoice_id"])["status"] == "CANCELLED"
        purge_at = int(aws.session(created["session_id"])["purge_at"]["N"])
        assert abs(purge_at - (time.time() + 30 * 86400)) < 120

        sim.pay(created["invoice_id"])  # the customer's app still had the QR open; no callback
        run_job("reconcile")

        assert status_of(aws, created["session_id"]) == "PROCESSED"
        assert len(aws.orders(created["session_id"])) == 1

    def test_an_invoice_paid_just_before_expiry_is_settled_not_voided(self, empty_tables, sim):
        aws = empty_tables
        created = create_payment()
        sim.pay(created["invoice_id"])
        set_attributes(aws, created["session_id"], created_at=iso(datetime.now(UTC) - timedelta(hours=1)))

        run_job("expire")

        assert status_of(aws, created["session_id"]) == "PROCESSED"
        assert len(aws.orders(created["session_id"])) == 1

    @pytest.mark.parametrize("error_form", ["error", "code", "error_code", "message"])
    def test_invoice_paid_in_every_error_form_is_settled_not_left_expired(
        self, empty_tables, sim, error_form
    ):
        # Given a paid invoice whose cancel refusal QPay words in one of its four error forms
        aws = empty_tables
        created = create_payment()
        sim.pay(created["invoice_id"])
        sim.faults({"path": "/v2/invoice/*", "method": "DELETE", "error_form": error_form})
        set_attributes(aws, created["session_id"], created_at=iso(datetime.now(UTC) - timedelta(hours=1)))

        # When the expire job runs
        run_job("expire")

        # Then INVOICE_PAID was read from that form and the money settled into one order
        assert status_of(aws, created["session_id"]) == "PROCESSED"
        assert len(aws.orders(created["session_id"])) == 1
        assert sim.calls("DELETE /v2/invoice/{id}") == 1

    def test_expire_twice_at_once_expires_once(self, empty_tables, sim):
        aws = empty_tables
        created = [create_payment(amount=100 + n) for n in range(10)]
        for body in created:
            set_attributes(aws, body["session_id"], created_at=iso(datetime.now(UTC) - timedelta(hours=1)))

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            summaries = list(pool.map(lambda _: run_job("expire"), range(2)))

        assert sum(summary["outcomes"].get("expired", 0) for summary in summaries) == 10
        assert sim.calls("DELETE /v2/invoice/{id}") == 10


@pytest.fixture
def ebarimt_on(monkeypatch, empty_tables):
    monkeypatch.setenv("EBARIMT_ENABLED", "true")
    composition.reset()
    return empty_tables


def processed_session(sim, **extra):
    created = create_payment(**extra)
    sim.pay(created["invoice_id"])
    invoke("qpay_webhook", webhook_event(sim.callback_url(created["invoice_id"])))
    return created


def ebarimt_view(session_id):
    status, view = invoke("get_payment", get_event(session_id))
    assert status == 200
    return view["ebarimt"]


class TestEbarimt:
    def test_enabled_registers_a_receipt(self, ebarimt_on, sim):
        created = processed_session(sim)

        summary = run_job("ebarimt")

        assert summary["outcomes"] == {"registered": 1}
        receipt = ebarimt_view(created["session_id"])
        assert receipt["status"] == "REGISTERED"
        assert len(receipt["receipt_id"]) == 33
        assert receipt["qr_data"]
        assert run_job("ebarimt")["due"] == 0

    def test_the_receipt_record_keeps_lottery_taxes_time_and_qpays_answer_without_the_receiver(
        self, ebarimt_on, sim
    ):
        aws = ebarimt_on
        receiver = "88112233"
        created = processed_session(
            sim, amount=11000, ebarimt={"receiver_type": "CITIZEN", "receiver": receiver}
        )

        run_job("ebarimt")

        receipt = ebarimt_view(created["session_id"])
        [payment] = sim.invoice(created["invoice_id"])["payments"]
        assert receipt["lottery"] == payment["ebarimt_lottery"]
        assert receipt["qr_data"] == payment["ebarimt_qr_data"]
        assert receipt["registered_at"].endswith("Z")
        stored = aws.session(created["session_id"])
        assert (stored["ebarimt_vat_amount"]["S"], stored["ebarimt_city_tax_amount"]["S"]) == (
            "1000.00",
            "0.00",
        )
        answer = stored["ebarimt_answer"]["S"]
        assert '"ebarimt_receipt_id"' in answer
        assert '"barimt_histories"' in answer
        assert receiver not in answer
        assert '"ebarimt_receiver":' not in answer
        assert '"ebarimt_receiver_phone":' not in answer
        assert '"ebarimt_receiver_type": "CITIZEN"' in answer  # not personal: kept

    def test_qpay_failing_twice_gives_error_then_registered_on_a_later_run(self, ebarimt_on, sim):
        aws = ebarimt_on
        created = processed_session(sim)
        sim.faults({"path": "/v2/ebarimt_v3/create", "status": 503, "times": 2})

        outcomes = []
        for _ in range(3):
            outcomes.append(run_job("ebarimt")["outcomes"])
            if outcomes[-1] != {"registered": 1}:
                assert ebarimt_view(created["session_id"])["status"] == "ERROR"
                set_attributes(aws, created["session_id"], ebarimt_next_at=int(time.time()) - 1)

        assert outcomes == [{"retry_later": 1}, {"retry_later": 1}, {"registered": 1}]
        assert ebarimt_view(created["session_id"])["status"] == "REGISTERED"

    def test_merchant_not_registered_is_permanent_and_not_retried(self, ebarimt_on, sim):
        aws = ebarimt_on
        sim.post("/_sim/config", {"ebarimt_registered": False})
        created = processed_session(sim)

        first = run_job("ebarimt")
        set_attributes(aws, created["session_id"], ebarimt_attempts=1)
        second = run_job("ebarimt")

        assert first["outcomes"] == {"rejected": 1}
        assert second["due"] == 0
        assert sim.calls("POST /v2/ebarimt_v3/create") == 1
        stored = aws.session(created["session_id"])
        assert stored["ebarimt_status"]["S"] == "REJECTED"
        assert stored["ebarimt_last_error"]["S"] == "EBARIMT_NOT_REGISTERED"
        assert stored["status"]["S"] == "PROCESSED"  # the order stands

    @pytest.mark.parametrize(
        ("rule", "reason"),
        [
            ({"body": {}}, "BARIMT_STATUS_MISSING"),
            ({"barimt_status": "CREATED"}, "BARIMT_STATUS_CREATED"),
            (
                {"body": {"id": "r-1", "barimt_status": "REGISTERED", "status": True}},
                "EBARIMT_RECEIPT_ID_MISSING",
            ),
        ],
        ids=["empty 200", "another status", "no receipt id"],
    )
    def test_a_200_that_is_no_receipt_is_an_error_retried_by_the_backoff(self, ebarimt_on, sim, rule, reason):
        # Given QPay answers the first Ebarimt create with a 200 that is not a registered receipt
        aws = ebarimt_on
        created = processed_session(sim)
        sim.faults({"path": "/v2/ebarimt_v3/create", "times": 1, **rule})

        # When the job runs, and again once the backoff has elapsed
        first = run_job("ebarimt")
        stored = aws.session(created["session_id"])
        view = ebarimt_view(created["session_id"])
        not_yet = run_job("ebarimt")
        set_attributes(aws, created["session_id"], ebarimt_next_at=int(time.time()) - 1)
        second = run_job("ebarimt")

        # Then the first answer is recorded as ERROR with the reason, nothing claims a receipt,
        # the retry waits for its backoff, and the next attempt registers the real receipt
        assert first["outcomes"] == {"retry_later": 1}
        assert (view["status"], view["receipt_id"]) == ("ERROR", None)
        assert stored["ebarimt_last_error"]["S"] == reason
        assert int(stored["ebarimt_next_at"]["N"]) > time.time()
        assert not_yet["due"] == 0
        assert second["outcomes"] == {"registered": 1}
        receipt = ebarimt_view(created["session_id"])
        assert (receipt["status"], len(receipt["receipt_id"])) == ("REGISTERED", 33)
        assert "ebarimt_last_error" not in aws.session(created["session_id"])
        assert sim.calls("POST /v2/ebarimt_v3/create") == 2

    def test_a_200_carrying_a_permanent_code_is_rejected_at_once(self, ebarimt_on, sim):
        aws = ebarimt_on
        created = processed_session(sim)
        refusal = {
            "status": False,
            "error": "EBARIMT_NOT_REGISTERED",
            "message": "Merchant is not registered",
        }
        sim.faults({"path": "/v2/ebarimt_v3/create", "body": refusal})

        first = run_job("ebarimt")
        set_attributes(aws, created["session_id"], ebarimt_next_at=int(time.time()) - 1)
        second = run_job("ebarimt")

        assert first["outcomes"] == {"rejected": 1}
        assert second["due"] == 0
        stored = aws.session(created["session_id"])
        assert (stored["ebarimt_status"]["S"], stored["ebarimt_last_error"]["S"]) == (
            "REJECTED",
            "EBARIMT_NOT_REGISTERED",
        )
        assert "ebarimt_receipt_id" not in stored
        assert sim.calls("POST /v2/ebarimt_v3/create") == 1

    def test_disabled_is_skipped_without_calling_qpay(self, empty_tables, sim):
        created = processed_session(sim)

        summary = run_job("ebarimt")

        assert summary["due"] == 0
        assert ebarimt_view(created["session_id"])["status"] == "SKIPPED"
        assert sim.calls("POST /v2/ebarimt_v3/create") == 0

    def test_per_session_overrides_reach_qpay_and_the_receiver_never_reaches_the_logs(self, ebarimt_on, sim):
        from qpay_common.observability import logger

        captured = io.StringIO()
        handler = logging.StreamHandler(captured)
        handler.setFormatter(logger.registered_formatter)
        logging.getLogger(logger.name).addHandler(handler)
        receiver = "99118822"
        created = processed_session(
            sim, ebarimt={"receiver_type": "CITIZEN", "receiver": receiver, "district_code": "2301"}
        )
        sim.faults({"path": "/v2/ebarimt_v3/create", "status": 503, "times": 1})
        run_job("ebarimt")
        set_attributes(ebarimt_on, created["session_id"], ebarimt_next_at=int(time.time()) - 1)

        run_job("ebarimt")

        [payment] = sim.invoice(created["invoice_id"])["payments"]
        assert payment["ebarimt"] == "REGISTERED"
        assert payment["ebarimt_district_code"] == "2301"
        assert payment["ebarimt_receiver_type"] == "CITIZEN"
        assert ebarimt_view(created["session_id"])["status"] == "REGISTERED"
        logging.getLogger(logger.name).removeHandler(handler)
        logs = captured.getvalue()
        assert "Ebarimt receipt failed" in logs  # the JSON logs were captured, the failure among them
        assert '"session_id"' in logs
        assert receiver not in logs
