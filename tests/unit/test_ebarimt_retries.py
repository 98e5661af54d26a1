"""Ebarimt receipts are never lost: retried through outages (an injected clock moving through
hours), stopped at once only by QPay's validation codes, given up only when their window closes,
and queued again by operators."""

import pytest

from qpay_common.adapters.qpay.errors import QPayRejected, QPayTransportError
from qpay_common.domain.errors import (
    EbarimtAlreadyRegistered,
    EbarimtDisabled,
    InvalidCursor,
    NotRequeueable,
    SessionNotFound,
)
from qpay_common.domain.session import EbarimtStatus, PaymentStatus
from qpay_common.domain.work_queues import ebarimt_retry_delay
from qpay_common.settings import load_settings
from tests.fakes import World

pytestmark = pytest.mark.unit

JOB_EVERY_MINUTES = 2  # the schedule in template.yaml


def run_job_for(world: World, *, minutes: int) -> list[dict[str, int]]:
    """The Ebarimt job as EventBridge runs it, every 2 minutes for `minutes`; each run's outcomes."""
    outcomes = []
    for _ in range(minutes // JOB_EVERY_MINUTES):
        world.clock.advance(minutes=JOB_EVERY_MINUTES)
        summary = world.jobs.ebarimt(remaining_seconds=120)
        if summary.outcomes:
            outcomes.append(dict(summary.outcomes))
    return outcomes


@pytest.fixture
def world() -> World:
    return World(EBARIMT_ENABLED="true")


class TestRetryPolicy:
    def test_a_two_hour_outage_ends_registered_once_qpay_answers_again(self, world):
        session = world.processed()
        world.qpay.down["create_ebarimt"] = QPayTransportError("QPay is down")

        during = run_job_for(world, minutes=120)
        stored = world.stored(session.session_id)
        assert (stored.ebarimt_status, stored.ebarimt_last_error) == ("ERROR", "QPayTransportError")
        calls_during = world.qpay.calls.count("create_ebarimt")
        # Backoff 1, 2, 4, ... 64 minutes (capped at 60): a handful of calls, not one per run.
        assert 5 <= calls_during <= 8
        assert all(outcome == {"retry_later": 1} for outcome in during)

        del world.qpay.down["create_ebarimt"]
        after = run_job_for(world, minutes=120)

        stored = world.stored(session.session_id)
        assert stored.ebarimt_status == "REGISTERED"
        assert stored.ebarimt_lottery == "AB 00000001"
        assert stored.ebarimt_receipt_id == "1".rjust(33, "0")
        assert stored.ebarimt_last_error is None
        assert stored.ebarimt_shard is None  # off the queue
        assert after == [{"registered": 1}]
        assert world.qpay.calls.count("create_ebarimt") == calls_during + 1

    def test_the_backoff_doubles_from_a_minute_to_at_most_an_hour(self):
        assert [ebarimt_retry_delay(n) for n in range(1, 10)] == [
            60,
            120,
            240,
            480,
            960,
            1920,
            3600,
            3600,
            3600,
        ]

    def test_the_next_attempt_is_kept_for_operators(self, world):
        session = world.processed()
        world.qpay.fail_next["create_ebarimt"] = QPayTransportError("down")
        world.jobs.ebarimt(remaining_seconds=120)

        stored = world.stored(session.session_id)
        assert stored.ebarimt_attempts == 1
        assert stored.ebarimt_next_at == int(world.clock.now().timestamp()) + 60

    @pytest.mark.parametrize("code", ["EBARIMT_NOT_REGISTERED", "INVALID_RECEIVER_TYPE", "OBJECT_DATA_ERROR"])
    def test_a_permanent_rejection_ends_rejected_with_no_further_calls(self, world, code):
        session = world.processed()
        world.qpay.down["create_ebarimt"] = QPayRejected("refused", status=400, code=code)

        outcomes = run_job_for(world, minutes=180)

        stored = world.stored(session.session_id)
        assert (stored.ebarimt_status, stored.ebarimt_last_error) == ("REJECTED", code)
        assert stored.ebarimt_shard is None
        assert outcomes == [{"rejected": 1}]
        assert world.qpay.calls.count("create_ebarimt") == 1

    def test_an_unknown_qpay_code_is_retried_not_rejected(self, world):
        session = world.processed()
        world.qpay.fail_next["create_ebarimt"] = QPayRejected("try later", status=400, code="SYSTEM_BUSY")

        run_job_for(world, minutes=10)

        assert world.stored(session.session_id).ebarimt_status == "REGISTERED"

    def test_past_its_window_a_failing_receipt_is_given_up(self):
        world = World(EBARIMT_ENABLED="true", EBARIMT_MAX_AGE_HOURS="3")
        session = world.processed()
        world.qpay.down["create_ebarimt"] = QPayTransportError("down")

        outcomes = run_job_for(world, minutes=4 * 60)

        stored = world.stored(session.session_id)
        assert (stored.ebarimt_status, stored.ebarimt_last_error) == ("GAVE_UP", "QPayTransportError")
        assert stored.ebarimt_shard is None
        assert outcomes[-1] == {"gave_up": 1}
        calls = world.qpay.calls.count("create_ebarimt")
        # Runs every 2 minutes from 12:00, so tries at +2, +4, +6, +10, +18, +34, +66 and +126
        # minutes (the hourly cap), then one last as the window closes at +180, and no later.
        assert calls == 9
        run_job_for(world, minutes=120)
        assert world.qpay.calls.count("create_ebarimt") == calls

    def test_settings_name_the_variable_they_reject(self):
        base = {"SESSIONS_TABLE": "s", "ORDERS_TABLE": "o", "CACHE_TABLE": "c", "EVENT_BUS_NAME": "b"}
        for name, value in (
            ("EBARIMT_MAX_AGE_HOURS", "0"),
            ("EBARIMT_RECEIVER_TYPE", "INDIVIDUAL"),
            ("EBARIMT_DISTRICT_CODE", "35"),
            ("EBARIMT_CLASSIFICATION_CODE", "abc"),
            ("EBARIMT_ENABLED", "maybe"),
        ):
            with pytest.raises(Exception, match=name):
                load_settings({**base, name: value})


class TestReceiptRecord:
    def test_a_registered_receipt_keeps_taxes_time_and_qpays_answer(self, world):
        session = world.processed()
        world.clock.advance(minutes=3)

        world.jobs.ebarimt(remaining_seconds=120)

        stored = world.stored(session.session_id)
        assert (stored.ebarimt_vat_amount, stored.ebarimt_city_tax_amount) == ("909.09", "0.00")
        assert stored.ebarimt_registered_at == "2026-12-01T12:03:00.000Z"
        assert stored.ebarimt_answer == {"id": "receipt-1", "barimt_status": "REGISTERED"}

    def test_the_owner_sees_lottery_and_qr_but_never_the_receiver(self, world):
        from qpay_common.http.api_models import PaymentView

        session = world.processed(ebarimt={"receiver_type": "CITIZEN", "receiver": "88112233"})
        world.jobs.ebarimt(remaining_seconds=120)

        view = PaymentView.from_session(world.queries.get_payment("alice", session.session_id))

        receipt = view.model_dump()["ebarimt"]
        assert receipt["status"] == "REGISTERED"
        assert receipt["lottery"] == "AB 00000001"
        assert receipt["qr_data"] == "1".rjust(96, "0")
        assert receipt["registered_at"]
        assert "88112233" not in view.model_dump_json()


class TestRequeue:
    def rejected(self, world: World):
        session = world.processed()
        world.qpay.fail_next["create_ebarimt"] = QPayRejected("no", status=400, code="INVALID_RECEIVER_TYPE")
        world.jobs.ebarimt(remaining_seconds=120)
        assert world.stored(session.session_id).ebarimt_status == "REJECTED"
        return session

    def test_a_rejected_receipt_requeued_with_other_data_registers_on_the_next_run(self, world):
        session = self.rejected(world)

        requeued = world.ebarimt.requeue(
            "ops", session.session_id, {"receiver_type": "COMPANY", "receiver": "5317878"}
        )

        assert (requeued.ebarimt_status, requeued.ebarimt_attempts) == ("PENDING", 0)
        assert requeued.ebarimt_last_error is None
        world.clock.advance(minutes=2)
        assert world.jobs.ebarimt(remaining_seconds=120).outcomes == {"registered": 1}
        assert world.qpay.receipts[-1]["ebarimt_receiver_type"] == "COMPANY"
        assert world.qpay.receipts[-1]["ebarimt_receiver"] == "5317878"
        assert world.stored(session.session_id).ebarimt_status == "REGISTERED"

    def test_a_given_up_receipt_gets_a_fresh_window(self):
        world = World(EBARIMT_ENABLED="true", EBARIMT_MAX_AGE_HOURS="1")
        session = world.processed()
        world.qpay.down["create_ebarimt"] = QPayTransportError("down")
        run_job_for(world, minutes=120)
        assert world.stored(session.session_id).ebarimt_status == "GAVE_UP"

        world.ebarimt.requeue("ops", session.session_id)
        # Still down: retried again for an hour from the re-queue, not given up at once.
        assert run_job_for(world, minutes=10)[0] == {"retry_later": 1}
        del world.qpay.down["create_ebarimt"]
        run_job_for(world, minutes=60)
        assert world.stored(session.session_id).ebarimt_status == "REGISTERED"

    def test_a_registered_receipt_is_not_requeued(self, world):
        session = world.processed()
        world.jobs.ebarimt(remaining_seconds=120)

        with pytest.raises(EbarimtAlreadyRegistered):
            world.ebarimt.requeue("ops", session.session_id)
        assert len(world.qpay.receipts) == 1

    def test_only_error_rejected_or_gave_up_receipts_of_processed_sessions_are_requeued(self, world):
        pending = world.processed()  # PENDING, due
        with pytest.raises(NotRequeueable):
            world.ebarimt.requeue("ops", pending.session_id)
        open_session = world.create()
        with pytest.raises(NotRequeueable):
            world.ebarimt.requeue("ops", open_session.session_id)
        with pytest.raises(SessionNotFound):
            world.ebarimt.requeue("ops", "ps_" + "0" * 32)

    def test_with_ebarimt_off_nothing_is_requeued(self, world):
        session = self.rejected(world)
        off = World(EBARIMT_ENABLED="false")
        off.sessions.items.update(world.sessions.items)

        with pytest.raises(EbarimtDisabled):
            off.ebarimt.requeue("ops", session.session_id)
        assert off.stored(session.session_id).ebarimt_status == "REJECTED"


class TestListingByReceiptStatus:
    def test_operators_list_sessions_by_receipt_status_newest_first_and_paged(self, world):
        registered = [world.processed() for _ in range(3)]
        world.jobs.ebarimt(remaining_seconds=120)
        rejected = []
        for _ in range(3):
            world.clock.advance(minutes=1)
            session = world.processed()
            world.qpay.fail_next["create_ebarimt"] = QPayRejected(
                "no", status=400, code="EBARIMT_NOT_REGISTERED"
            )
            world.jobs.ebarimt(remaining_seconds=120)
            rejected.append(session)

        first, cursor = world.reports.list_payments(
            "ops", ebarimt_status=EbarimtStatus.REJECTED, limit=2, cursor=None
        )
        second, end = world.reports.list_payments(
            "ops", ebarimt_status=EbarimtStatus.REJECTED, limit=2, cursor=cursor
        )

        listed = [session.session_id for session in first + second]
        assert listed == [session.session_id for session in reversed(rejected)]
        assert end is None
        done, _ = world.reports.list_payments(
            "ops", ebarimt_status=EbarimtStatus.REGISTERED, limit=10, cursor=None
        )
        assert {s.session_id for s in done} == {s.session_id for s in registered}
        with pytest.raises(InvalidCursor):
            world.reports.list_payments("ops", limit=2, cursor=cursor)  # issued for another filter

    def test_the_receipt_filter_combines_with_status_and_user(self, world):
        mine = world.processed(user_id="bob")
        world.processed(user_id="carol")
        world.jobs.ebarimt(remaining_seconds=120)
        refunded = world.processed(user_id="bob")
        world.jobs.ebarimt(remaining_seconds=120)
        world.refunds.refund("ops", refunded.session_id, note="returned")

        by_user, _ = world.reports.list_payments(
            "ops", ebarimt_status=EbarimtStatus.REGISTERED, user_id="bob", limit=10, cursor=None
        )
        by_status, _ = world.reports.list_payments(
            "ops",
            ebarimt_status=EbarimtStatus.CANCELLED,
            status=PaymentStatus.REFUNDED,
            limit=10,
            cursor=None,
        )

        assert [s.session_id for s in by_user] == [mine.session_id]
        assert [s.session_id for s in by_status] == [refunded.session_id]
