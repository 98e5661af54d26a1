"""Every use case against in-memory parts and a controlled clock: creation with idempotency,
settlement (webhook, fulfilment, publish failures, crashes), cancellation and expiry, status
queries, and the scheduled jobs. The same rules run on DynamoDB Local in the integration suite."""

import pytest

from qpay_common.adapters.qpay.errors import QPayTransportError
from qpay_common.domain.errors import (
    AlreadyPaid,
    IdempotencyConflict,
    InvalidCursor,
    NotCancellable,
    QPayUnavailable,
    SessionExpired,
    SessionNotFound,
    Unauthorized,
)
from qpay_common.domain.payment_request import CreatePaymentRequest
from qpay_common.domain.session import PaymentStatus
from qpay_common.usecases.ports import ReconcileTask
from qpay_common.usecases.settlement import Settlement
from tests.fakes import World, unit_webhook_keys

pytestmark = pytest.mark.unit

S = PaymentStatus


@pytest.fixture
def world() -> World:
    return World()


class TestCreation:
    def test_a_payment_is_pending_with_its_invoice(self, world):
        session = world.create(15000, description="Order #1")

        assert session.status == S.PENDING
        assert session.invoice_id == "inv-1"
        assert world.qpay.invoices["inv-1"]["amount"] == 15000
        assert session.expires_at == "2026-12-01T12:30:00.000Z"

    def test_a_failed_invoice_leaves_no_session(self, world):
        world.qpay.fail_next["create_invoice"] = QPayTransportError("down")

        with pytest.raises(QPayUnavailable):
            world.create()

        assert world.sessions.items == {}

    def test_an_idempotency_key_replays_the_same_session_and_refuses_another_body(self, world):
        request = CreatePaymentRequest(amount=500)
        first, created = world.creation.create_payment("alice", request, "https://x", idempotency_key="k1")
        again, created_again = world.creation.create_payment(
            "alice", request, "https://x", idempotency_key="k1"
        )

        assert (created, created_again) == (True, False)
        assert again.session_id == first.session_id
        assert world.qpay.calls.count("create_invoice") == 1
        with pytest.raises(IdempotencyConflict):
            world.creation.create_payment(
                "alice", CreatePaymentRequest(amount=501), "https://x", idempotency_key="k1"
            )

    def test_a_failed_create_frees_its_idempotency_key(self, world):
        world.qpay.fail_next["create_invoice"] = QPayTransportError("down")
        request = CreatePaymentRequest(amount=500)
        with pytest.raises(QPayUnavailable):
            world.creation.create_payment("alice", request, "https://x", idempotency_key="k1")

        session, created = world.creation.create_payment("alice", request, "https://x", idempotency_key="k1")

        assert created
        assert session.status == S.PENDING


class TestSettlement:
    def test_a_callback_with_a_bad_token_does_nothing(self, world):
        session = world.create()

        with pytest.raises(Unauthorized):
            world.settlement.handle_callback(session.session_id, "wrong")

        assert "check_payment" not in world.qpay.calls

    def test_a_callback_url_names_its_key_and_a_token_of_another_key_is_refused(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)
        token = world.token(session.session_id)

        with pytest.raises(Unauthorized):
            world.settlement.handle_callback(session.session_id, token, "k9")

        assert "check_payment" not in world.qpay.calls
        assert world.sessions.get(session.session_id).status == S.PENDING
        assert world.settlement.handle_callback(session.session_id, token, "k1").status == S.PROCESSED

    def test_the_invoice_callback_url_carries_the_current_key_id(self, world):
        session = world.create()

        callback = world.qpay.invoices[session.invoice_id]["callback_url"]
        assert callback.endswith("&kid=k1")
        assert unit_webhook_keys().current_key_id == "k1"

    def test_a_callback_for_an_unknown_session_is_not_found(self, world):
        with pytest.raises(SessionNotFound):
            world.settlement.handle_callback("ps_missing", world.token("ps_missing"))

    def test_a_verified_payment_becomes_one_order_one_event_and_processed(self, world):
        session = world.create(15000)
        world.qpay.pay(session.invoice_id, 15000)

        done = world.settlement.handle_callback(session.session_id, world.token(session.session_id))
        again = world.settlement.handle_callback(session.session_id, world.token(session.session_id))

        assert done.status == again.status == S.PROCESSED
        assert list(world.sessions.orders) == [done.order_id]
        assert len(world.publisher.published) == 1
        # The duplicate only answered: no second payment check
        assert world.qpay.calls.count("check_payment") == 1

    def test_a_callback_before_the_money_leaves_the_session_pending(self, world):
        session = world.create()

        assert (
            world.settlement.handle_callback(session.session_id, world.token(session.session_id)).status
            == S.PENDING
        )

    def test_an_underpayment_fails_without_an_order_and_a_top_up_completes_it(self, world):
        session = world.create(15000)
        world.qpay.pay(session.invoice_id, 10000)
        failed = world.settlement.confirm_with_qpay(session, source="webhook")

        assert (failed.status, failed.failure_reason, failed.paid_amount) == (
            S.FAILED,
            "AMOUNT_MISMATCH",
            10000,
        )
        assert world.sessions.orders == {}

        world.qpay.pay(session.invoice_id, 5000)
        done = world.settlement.confirm_with_qpay(failed, source="reconcile")

        assert (done.status, done.paid_amount, done.failure_reason) == (S.PROCESSED, 15000, None)
        assert len(world.sessions.orders) == 1

    def test_a_failed_publish_keeps_the_session_paid_and_the_next_attempt_publishes(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)
        world.publisher.fail_next = 1

        paid = world.settlement.confirm_with_qpay(session, source="webhook")

        assert paid.status == S.PAID
        assert paid.emit_lease_until is None  # released: no wait for the lease
        done = world.settlement.fulfil(paid)
        assert done.status == S.PROCESSED
        assert len(world.publisher.published) == 1
        assert len(world.sessions.orders) == 1

    @pytest.mark.parametrize("stage", ["before_order", "before_event", "before_processed"])
    def test_a_crash_mid_fulfilment_is_finished_by_the_next_attempt_with_one_order(self, world, stage):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)

        def crash(current, _session):
            if current == stage:
                raise RuntimeError(stage)

        crashing = Settlement(
            unit_webhook_keys,
            world.sessions,
            world.qpay,
            world.publisher,
            clock=world.clock,
            fault_hook=crash,
        )
        with pytest.raises(RuntimeError):
            crashing.confirm_with_qpay(session, source="webhook")
        world.clock.advance(seconds=31)  # the crashed worker's publish lease lapses

        done = world.settlement.fulfil(world.stored(session.session_id))

        assert done.status == S.PROCESSED
        assert len(world.sessions.orders) == 1
        published = 2 if stage == "before_processed" else 1  # at least once
        assert len(world.publisher.published) == published
        assert {order.order_id for _, order in world.publisher.published} == {done.order_id}

    def test_a_live_publish_lease_is_respected(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)
        crashing = Settlement(
            unit_webhook_keys,
            world.sessions,
            world.qpay,
            world.publisher,
            clock=world.clock,
            fault_hook=lambda stage, _s: (
                (_ for _ in ()).throw(RuntimeError()) if stage == "before_event" else None
            ),
        )
        with pytest.raises(RuntimeError):
            crashing.confirm_with_qpay(session, source="webhook")

        # Within the lease another worker leaves the publish to its holder
        assert world.settlement.fulfil(world.stored(session.session_id)).status == S.PAID
        assert world.publisher.published == []

    def test_the_publisher_finishes_when_an_unrelated_write_beats_its_last_step(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)

        def duplicate_delivery_records_its_check(stage, current):
            # A second delivery of the same reconcile message writes the session (its check)
            # between this call's publish and its PROCESSED write
            if stage == "before_processed":
                world.sessions.record_reconcile_check(
                    world.stored(current.session_id), next_check_at=world.clock.epoch() + 60, checks=1
                )

        racing = Settlement(
            unit_webhook_keys,
            world.sessions,
            world.qpay,
            world.publisher,
            clock=world.clock,
            fault_hook=duplicate_delivery_records_its_check,
        )
        done = racing.confirm_with_qpay(session, source="reconcile")

        # The lease holder does not wait out its own lease: PROCESSED now, published once
        assert done.status == S.PROCESSED
        assert world.stored(session.session_id).status == S.PROCESSED
        assert len(world.publisher.published) == 1


class TestCancellation:
    def test_cancel_is_idempotent_and_cancels_the_invoice(self, world):
        session = world.create()

        first = world.cancellation.cancel("alice", session.session_id)
        second = world.cancellation.cancel("alice", session.session_id)

        assert first.status == second.status == S.CANCELLED
        assert first.cancelled_at == "2026-12-01T12:00:00.000Z"
        assert world.qpay.invoices[session.invoice_id]["status"] == "CANCELLED"

    @pytest.mark.parametrize(
        ("prepare", "error"),
        [("pay", AlreadyPaid), ("expire", SessionExpired), ("underpay", NotCancellable)],
    )
    def test_cancel_refuses_what_cannot_be_cancelled(self, world, prepare, error):
        session = world.create(15000)
        if prepare == "pay":
            world.qpay.pay(session.invoice_id, 15000)
            world.settlement.confirm_with_qpay(session, source="webhook")
        elif prepare == "expire":
            world.sessions.expire(session, world.clock.now())
        else:
            world.qpay.pay(session.invoice_id, 100)
            world.settlement.confirm_with_qpay(session, source="webhook")

        with pytest.raises(error):
            world.cancellation.cancel("alice", session.session_id)

    def test_a_payment_that_beat_the_cancel_is_fulfilled_and_the_cancel_says_so(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)  # QPay answers INVOICE_PAID to the cancel

        with pytest.raises(AlreadyPaid):
            world.cancellation.cancel("alice", session.session_id)

        assert world.stored(session.session_id).status == S.PROCESSED
        assert len(world.sessions.orders) == 1

    def test_another_users_session_is_not_found(self, world):
        session = world.create(user_id="alice")

        with pytest.raises(SessionNotFound):
            world.cancellation.cancel("bob", session.session_id)

    def test_a_late_payment_after_cancel_is_honoured(self, world):
        session = world.create()
        cancelled = world.cancellation.cancel("alice", session.session_id)
        world.qpay.pay(session.invoice_id, 15000)

        done = world.settlement.confirm_with_qpay(cancelled, source="reconcile")

        assert done.status == S.PROCESSED


class TestQueries:
    def test_polling_asks_qpay_at_most_once_per_interval(self, world):
        session = world.create()

        for _ in range(10):
            world.queries.get_payment("alice", session.session_id)
        checks_in_one_interval = world.qpay.calls.count("check_payment")
        world.clock.advance(seconds=5)
        world.queries.get_payment("alice", session.session_id)

        assert checks_in_one_interval == 1
        assert world.qpay.calls.count("check_payment") == 2

    def test_a_read_finds_a_payment_whose_callback_never_came(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)

        assert world.queries.get_payment("alice", session.session_id).status == S.PROCESSED

    def test_closed_sessions_never_ask_qpay(self, world):
        session = world.create()
        world.cancellation.cancel("alice", session.session_id)
        calls = list(world.qpay.calls)

        world.queries.get_payment("alice", session.session_id)

        assert world.qpay.calls == calls

    def test_a_read_past_expiry_expires_the_session(self, world):
        session = world.create()
        world.clock.advance(minutes=31)

        read = world.queries.get_payment("alice", session.session_id)

        assert read.status == S.EXPIRED
        assert world.qpay.invoices[session.invoice_id]["status"] == "CANCELLED"

    def test_listing_pages_newest_first_and_cursors_belong_to_their_user(self, world):
        ids = []
        for amount in (100, 200, 300):
            ids.append(world.create(amount).session_id)
            world.clock.advance(seconds=1)
        world.create(user_id="bob")

        first, cursor = world.queries.list_payments("alice", limit=2, cursor=None)
        second, end = world.queries.list_payments("alice", limit=2, cursor=cursor)

        assert [s.session_id for s in first + second] == ids[::-1]
        assert end is None
        with pytest.raises(InvalidCursor):
            world.queries.list_payments("bob", limit=2, cursor=cursor)
        with pytest.raises(InvalidCursor):
            world.queries.list_payments("alice", limit=2, cursor="garbage")


class TestScheduledJobs:
    def test_reconcile_finds_a_lost_callback_then_backs_off(self, world):
        paid = world.create()
        world.qpay.pay(paid.invoice_id, 15000)
        unpaid = world.create()

        summary, outcomes = world.reconcile()

        assert summary.outcomes == {"queued": 2}
        assert outcomes == {"confirmed": 1, "still_open": 1}
        assert world.stored(paid.session_id).status == S.PROCESSED
        assert world.stored(unpaid.session_id).next_check_at == int(world.clock.epoch()) + 60
        assert world.reconcile()[0].due == 0
        world.clock.advance(seconds=60)
        world.reconcile()
        assert world.stored(unpaid.session_id).next_check_at == int(world.clock.epoch()) + 120

    def test_grace_checks_end_with_the_grace_window(self, world):
        session = world.create()
        world.qpay.fail_next["cancel_invoice"] = QPayTransportError("down")  # not confirmed by QPay
        world.cancellation.cancel("alice", session.session_id)
        world.clock.advance(hours=25)

        _, outcomes = world.reconcile()

        assert outcomes == {"grace_over": 1}
        assert world.stored(session.session_id).reconcile_shard is None

    def test_expire_closes_old_pending_sessions_and_their_invoices(self, world):
        old = world.create()
        world.clock.advance(minutes=31)
        fresh = world.create()

        summary = world.jobs.expire(remaining_seconds=120)

        assert summary.outcomes == {"expired": 1}
        assert world.stored(old.session_id).status == S.EXPIRED
        assert world.stored(fresh.session_id).status == S.PENDING
        assert world.qpay.invoices[old.invoice_id]["status"] == "CANCELLED"

    def test_ebarimt_registers_a_receipt_for_a_processed_session(self):
        world = World(EBARIMT_ENABLED="true")
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)
        world.settlement.confirm_with_qpay(session, source="webhook")

        summary = world.jobs.ebarimt(remaining_seconds=120)

        stored = world.stored(session.session_id)
        assert summary.outcomes == {"registered": 1}
        assert (stored.ebarimt_status, stored.ebarimt_shard) == ("REGISTERED", None)
        assert world.qpay.receipts[0]["payment_id"] == stored.payment_ids[0]


class TestReconcileDispatch:
    """The dispatcher's lease and the worker's rules, on in-memory queues (reconcile.py)."""

    def test_a_dispatched_session_is_leased_so_a_second_run_does_not_queue_it_again(self, world):
        session = world.create()

        first = world.dispatcher.dispatch(60)
        second = world.dispatcher.dispatch(60)

        assert first.outcomes == {"queued": 1}
        assert second.due == 0
        leased = world.stored(session.session_id)
        assert leased.next_check_at == int(world.clock.epoch()) + world.settings.reconcile_lease_seconds
        assert len(world.task_queues.messages[False]) == 1

    def test_a_lost_message_makes_the_session_due_again_when_its_lease_ends(self, world):
        session = world.create()
        world.dispatcher.dispatch(60)
        world.task_queues.take()  # the message is lost

        world.clock.advance(seconds=world.settings.reconcile_lease_seconds)
        summary, outcomes = world.reconcile()

        assert summary.outcomes == {"queued": 1}
        assert outcomes == {"still_open": 1}
        assert world.stored(session.session_id).reconcile_checks == 1

    def test_a_message_that_outlived_its_lease_is_dropped_and_the_new_one_does_the_work(self, world):
        session = world.create()
        world.dispatcher.dispatch(60)
        stale = world.task_queues.take()
        world.clock.advance(seconds=world.settings.reconcile_lease_seconds)
        world.dispatcher.dispatch(60)
        fresh = world.task_queues.take()

        outcomes = [world.worker.work_message(body) for body in stale + fresh + fresh]

        # The stale message and the duplicate delivery do nothing; QPay is asked once
        assert outcomes == ["not_leased", "still_open", "not_leased"]
        assert world.qpay.calls.count("check_payment") == 1
        assert world.stored(session.session_id).reconcile_checks == 1

    def test_paid_sessions_go_to_the_priority_queue_and_are_read_first(self):
        world = World(RECONCILE_MAX_QUEUED="3")
        for n in range(5):
            world.create(amount=100 + n)
        # Given a session marked PAID whose order was never written (its worker died)
        session = world.create(amount=999)
        paid = world.sessions.mark_paid(session, 999, ["pay-1"], world.clock.now())
        world.clock.advance(seconds=60)

        summary = world.dispatcher.dispatch(60)

        # Then it is queued on the priority queue, apart from the checks, and finished first
        assert summary.outcomes == {"queued_priority": 1, "queued": 3}
        assert [
            ReconcileTask.model_validate_json(body).session_id for body in world.task_queues.messages[True]
        ] == [paid.session_id]
        # And RECONCILE_MAX_QUEUED bounds the other queue: two checks wait for room
        assert len(world.task_queues.messages[False]) == 3
        outcomes = [world.worker.work_message(body) for body in world.task_queues.take()]
        assert outcomes == ["finished", "still_open", "still_open", "still_open"]
        assert world.stored(paid.session_id).status == S.PROCESSED
        assert world.dispatcher.dispatch(60).outcomes == {"queued": 2}

    def test_each_run_measures_how_long_the_oldest_due_session_has_waited(self):
        from qpay_common.observability import metrics

        world = World(RECONCILE_MAX_QUEUED="2")
        assert world.dispatcher.dispatch(60).gauges == {
            "ReconcilePriorityOldestDueSeconds": 0.0,
            "ReconcileOldestDueSeconds": 0.0,
        }
        for n in range(5):
            world.create(amount=100 + n)
            world.clock.advance(seconds=60)
        # The first run queues two (the oldest); the queue is then full, and nothing drains it
        first = world.dispatcher.dispatch(60)
        world.clock.advance(minutes=10)
        metrics.clear_metrics()

        second = world.dispatcher.dispatch(60)

        # The first session was due 5 minutes before the first run
        assert first.gauges["ReconcileOldestDueSeconds"] == 300.0
        # Then the three left behind keep waiting: the oldest of them for more than 10 minutes
        now = world.clock.epoch()
        left = [
            item["next_check_at"] for item in world.sessions.items.values() if item["next_check_at"] <= now
        ]
        assert len(left) == 3
        assert second.outcomes == {"queue_full": 1}
        waited = now - min(left)
        assert waited >= 780
        assert second.gauges == {
            "ReconcilePriorityOldestDueSeconds": 0.0,
            "ReconcileOldestDueSeconds": waited,
        }
        # And it is published as a CloudWatch metric (EMF), which ReconcileOldestDueAlarm watches
        emitted = metrics.serialize_metric_set()
        definitions = {m["Name"]: m["Unit"] for m in emitted["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert definitions["ReconcileOldestDueSeconds"] == "Seconds"
        assert emitted["ReconcileOldestDueSeconds"] == [waited]
        metrics.clear_metrics()

    def test_a_paid_session_carries_the_priority_shard_key(self, world):
        session = world.create()
        paid = world.sessions.mark_paid(session, 15000, ["pay-1"], world.clock.now())

        assert paid.reconcile_shard.startswith("RP#")
        assert world.stored(session.session_id).reconcile_shard.startswith("RP#")
        assert session.reconcile_shard.startswith("R#")

    def test_due_sessions_are_read_fairly_across_shards(self, world):
        from qpay_common.domain.work_queues import RECONCILE_QUEUE

        # Given 600 due sessions, most of them in one shard
        created = [world.create(amount=100 + n) for n in range(600)]
        by_shard = {}
        for session in created:
            by_shard.setdefault(session.reconcile_shard, []).append(session.session_id)
        crowded = max(by_shard, key=lambda shard: len(by_shard[shard]))
        for session in created[:400]:
            world.sessions.items[session.session_id]["reconcile_shard"] = crowded

        due = world.sessions.due_sessions(RECONCILE_QUEUE, int(world.clock.epoch()), limit=100)

        # Then a read of 100 takes some from every shard, not 100 from the crowded one
        assert len(due.session_ids) == 100
        assert set(due.per_shard) == set(RECONCILE_QUEUE.all_shards())
        assert due.per_shard[crowded] <= 12  # its even share, plus what small shards lacked

    def test_an_expired_or_cancelled_session_whose_invoice_qpay_cancelled_stops_being_checked(self):
        world = World(RECONCILE_AFTER_CANCEL_SECONDS="600")
        session = world.create()
        world.cancellation.cancel("alice", session.session_id)  # QPay confirms the cancel

        stored = world.stored(session.session_id)
        assert stored.invoice_cancelled_at is not None
        assert stored.grace_until == int(world.clock.epoch()) + 600

        checks = 0
        for _ in range(24 * 60):  # a day of dispatcher runs, one a minute
            world.clock.advance(seconds=60)
            _, outcomes = world.reconcile()
            checks += outcomes.get("still_open", 0)
        # A few checks in the ten minutes a payment could race the cancel, instead of ~30 in 24 h
        assert 1 <= checks <= 5
        assert world.stored(session.session_id).reconcile_shard is None
        assert world.qpay.calls.count("check_payment") == checks

    def test_with_no_window_a_confirmed_cancel_takes_the_session_off_the_queue_at_once(self):
        world = World(RECONCILE_AFTER_CANCEL_SECONDS="0")
        session = world.create()

        world.cancellation.cancel("alice", session.session_id)

        assert world.stored(session.session_id).reconcile_shard is None
        assert world.reconcile()[0].due == 0

    def test_an_unconfirmed_cancel_keeps_the_full_grace_window(self, world):
        session = world.create()
        world.qpay.fail_next["cancel_invoice"] = QPayTransportError("down")

        world.cancellation.cancel("alice", session.session_id)

        stored = world.stored(session.session_id)
        assert stored.invoice_cancelled_at is None
        assert stored.grace_until == int(world.clock.epoch()) + 24 * 3600

    def test_an_underpaid_session_keeps_its_grace_window_for_a_top_up(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 5000)
        failed = world.settlement.confirm_with_qpay(session, source="webhook")
        assert failed.status == S.FAILED

        world.clock.advance(hours=12)
        world.qpay.pay(session.invoice_id, 10000)  # the top-up; its callback is lost
        _, outcomes = world.reconcile()

        assert outcomes == {"confirmed": 1}
        assert world.stored(session.session_id).status == S.PROCESSED

    def test_a_malformed_message_raises_so_sqs_retries_it_and_then_dead_letters_it(self, world):
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            world.worker.work_message('{"session": "x"}')
