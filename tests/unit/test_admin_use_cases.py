"""The operators' use cases against in-memory parts and a fixed clock: refunds (card only,
idempotent, audited, finished by repeating), the receipt cancel that follows, inspecting a session
beside QPay's view, reconcile now, republish, the listing and the summary."""

import pytest

from qpay_common.adapters.qpay.errors import QPayTransportError
from qpay_common.domain.errors import (
    EventBusUnavailable,
    InvalidCursor,
    InvalidRequest,
    NoOrder,
    NotRefundable,
    QPayUnavailable,
    RefundNotSupported,
)
from qpay_common.domain.session import PaymentStatus
from tests.fakes import World

pytestmark = pytest.mark.unit

S = PaymentStatus


@pytest.fixture
def world() -> World:
    return World()


def refund(world: World, session_id: str, note: str = "customer returned the tea", **options):
    return world.refunds.refund("ops-1", session_id, note=note, **options)


class TestRefunds:
    def test_a_card_payment_is_refunded_audited_and_announced(self, world):
        session = world.processed(15000, "CARD")
        world.clock.advance(minutes=5)

        refunded = refund(world, session.session_id)

        assert refunded.status == S.REFUNDED
        assert world.qpay.check_payment(session.invoice_id).rows[0].payment_status == "REFUNDED"
        audit = refunded.refund
        assert (audit.requested_by, audit.note, audit.amount) == ("ops-1", "customer returned the tea", 15000)
        assert audit.requested_at == audit.refunded_at == "2026-12-01T12:05:00.000Z"
        assert audit.published_at == "2026-12-01T12:05:00.000Z"
        [(event_session, event_refund)] = world.publisher.refunds
        assert event_session.order_id == session.order_id
        assert event_refund.payment_ids == session.payment_ids
        assert refunded.purge_at is not None

    def test_a_qr_payment_is_refused_with_a_clear_reason_and_nothing_changes(self, world):
        session = world.processed(15000, "P2P")
        writes = world.sessions.writes

        with pytest.raises(RefundNotSupported, match=r"card payments only.*bank transfer"):
            refund(world, session.session_id)

        assert world.stored(session.session_id).status == S.PROCESSED
        assert world.sessions.writes == writes
        assert "refund_payment" not in world.qpay.calls
        assert world.publisher.refunds == []

    def test_a_repeated_refund_answers_the_same_and_refunds_once(self, world):
        session = world.processed()
        first = refund(world, session.session_id)

        again = refund(world, session.session_id, note="clicked twice")

        assert again.status == S.REFUNDED
        assert again.refund == first.refund  # the first request's audit stands
        assert world.qpay.calls.count("refund_payment") == 1
        assert len(world.publisher.refunds) == 1

    @pytest.mark.parametrize("prepare", ["pending", "cancelled", "underpaid"])
    def test_only_a_fulfilled_payment_can_be_refunded(self, world, prepare):
        session = world.create(15000)
        if prepare == "cancelled":
            world.cancellation.cancel("alice", session.session_id)
        elif prepare == "underpaid":
            world.qpay.pay(session.invoice_id, 100, "CARD")
            world.settlement.confirm_with_qpay(session, source="webhook")

        with pytest.raises(NotRefundable):
            refund(world, session.session_id)

        assert "refund_payment" not in world.qpay.calls

    def test_a_paid_but_unfulfilled_session_says_to_reconcile_first(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000, "CARD")
        world.publisher.fail_next = 1
        assert world.settlement.confirm_with_qpay(session, source="webhook").status == S.PAID

        with pytest.raises(NotRefundable, match="reconcile it first"):
            refund(world, session.session_id)

    def test_a_payment_id_must_be_the_sessions_own(self, world):
        session = world.processed()

        with pytest.raises(InvalidRequest):
            refund(world, session.session_id, payment_id="pay-of-another-session")

        assert refund(world, session.session_id, payment_id=session.payment_ids[0]).status == S.REFUNDED

    def test_an_unanswered_refund_is_recorded_as_asked_and_finished_by_repeating(self, world):
        session = world.processed()
        world.qpay.fail_next["refund_payment"] = QPayTransportError("read timeout")

        with pytest.raises(QPayUnavailable, match="repeat the request"):
            refund(world, session.session_id)

        halfway = world.stored(session.session_id)
        assert halfway.status == S.PROCESSED
        assert (halfway.refund.requested_by, halfway.refund.refunded_at) == ("ops-1", None)
        assert refund(world, session.session_id).status == S.REFUNDED
        assert world.qpay.calls.count("refund_payment") == 2

    def test_a_refund_qpay_made_but_whose_answer_was_lost_is_not_made_twice(self, world):
        session = world.processed()
        world.qpay.check_payment(session.invoice_id).rows[0].payment_status = "REFUNDED"
        world.qpay.fail_next["refund_payment"] = QPayTransportError("read timeout")

        refunded = refund(world, session.session_id)

        assert refunded.status == S.REFUNDED
        assert len(world.publisher.refunds) == 1

    def test_a_failed_publish_leaves_the_refund_done_and_a_repeat_publishes_it(self, world):
        session = world.processed()
        world.publisher.fail_next = 1

        with pytest.raises(EventBusUnavailable):
            refund(world, session.session_id)

        stored = world.stored(session.session_id)
        assert (stored.status, stored.refund.published_at) == (S.REFUNDED, None)
        assert refund(world, session.session_id).refund.published_at is not None
        assert len(world.publisher.refunds) == 1
        assert world.qpay.calls.count("refund_payment") == 1


class TestReceiptCancel:
    @pytest.fixture
    def world(self) -> World:
        return World(EBARIMT_ENABLED="true", EBARIMT_MAX_AGE_HOURS="1")

    def registered(self, world: World):
        session = world.processed()
        assert world.jobs.ebarimt(remaining_seconds=120).outcomes == {"registered": 1}
        return world.stored(session.session_id)

    def test_the_receipt_of_a_refunded_payment_is_cancelled(self, world):
        session = self.registered(world)

        refunded = refund(world, session.session_id)

        assert refunded.ebarimt_status == "CANCELLED"
        assert refunded.ebarimt_shard is None
        assert world.qpay.receipt_status[session.payment_ids[0]] == "CANCELED"

    def test_a_payment_refunded_before_its_receipt_gets_none(self, world):
        session = world.processed()  # the receipt is due but not registered yet

        refunded = refund(world, session.session_id)

        assert (refunded.ebarimt_status, refunded.ebarimt_shard) == ("SKIPPED", None)
        assert world.jobs.ebarimt(remaining_seconds=120).due == 0
        assert world.qpay.receipts == []

    def test_a_failed_cancel_is_retried_by_the_job_and_gives_up_loudly(self, world):
        session = self.registered(world)
        world.qpay.fail_next["cancel_ebarimt"] = QPayTransportError("down")

        refunded = refund(world, session.session_id)

        assert (refunded.ebarimt_status, refunded.ebarimt_last_error) == ("CANCELLING", "QPayTransportError")
        world.qpay.fail_next["cancel_ebarimt"] = QPayTransportError("down")
        world.clock.advance(minutes=2)
        assert world.jobs.ebarimt(remaining_seconds=120).outcomes == {"cancel_retry_later": 1}
        world.qpay.down["cancel_ebarimt"] = QPayTransportError("down")
        world.clock.advance(hours=1)  # EBARIMT_MAX_AGE_HOURS after the refund
        assert world.jobs.ebarimt(remaining_seconds=120).outcomes == {"cancel_gave_up": 1}
        assert world.stored(session.session_id).ebarimt_status == "CANCEL_FAILED"

    def test_the_job_finishes_a_cancel_that_failed_during_the_refund(self, world):
        session = self.registered(world)
        world.qpay.fail_next["cancel_ebarimt"] = QPayTransportError("down")
        refund(world, session.session_id)
        world.clock.advance(minutes=1)

        assert world.jobs.ebarimt(remaining_seconds=120).outcomes == {"cancelled": 1}
        assert world.stored(session.session_id).ebarimt_status == "CANCELLED"

    def test_a_receipt_registered_while_the_refund_ran_is_cancelled_too(self, world):
        session = world.processed()
        # QPay registers the receipt while the refund runs: the refund finds none to cancel.
        world.qpay.during["create_ebarimt"] = lambda: refund(world, session.session_id)

        summary = world.jobs.ebarimt(remaining_seconds=120)

        stored = world.stored(session.session_id)
        assert summary.outcomes == {"cancelled": 1}
        assert (stored.status, stored.ebarimt_status) == (S.REFUNDED, "CANCELLED")
        assert stored.ebarimt_receipt_id is not None
        assert world.qpay.receipt_status[session.payment_ids[0]] == "CANCELED"


class TestOperations:
    def test_inspect_shows_the_session_its_order_and_qpays_view(self, world):
        session = world.processed(15000, "CARD")

        seen = world.admin.inspect("ops-1", session.session_id)

        assert seen.order.order_id == session.order_id
        assert seen.qpay.errors == []
        assert seen.qpay.invoice.invoice_status == "OPEN"
        assert seen.qpay.check.total_paid == 15000
        assert [(p.payment_id, p.payment_type) for p in seen.qpay.payments] == [
            (session.payment_ids[0], "CARD")
        ]

    def test_inspect_still_shows_the_session_when_qpay_is_down(self, world):
        session = world.create()
        world.qpay.fail_next["check_payment"] = QPayTransportError("down")

        seen = world.admin.inspect("ops-1", session.session_id)

        assert seen.session.session_id == session.session_id
        assert seen.qpay.check is None
        assert seen.qpay.errors == ["payment check: QPayTransportError"]

    def test_reconcile_now_finds_a_payment_whose_callback_never_came(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)

        assert world.admin.reconcile("ops-1", session.session_id).status == S.PROCESSED

    def test_reconcile_of_a_settled_session_does_not_ask_qpay(self, world):
        session = world.processed()
        calls = list(world.qpay.calls)

        assert world.admin.reconcile("ops-1", session.session_id).status == S.PROCESSED
        assert world.qpay.calls == calls

    def test_reconcile_when_qpay_is_down_changes_nothing(self, world):
        session = world.create()
        world.qpay.fail_next["check_payment"] = QPayTransportError("down")

        with pytest.raises(QPayUnavailable):
            world.admin.reconcile("ops-1", session.session_id)

        assert world.stored(session.session_id).status == S.PENDING

    def test_republish_sends_payment_completed_again_with_the_same_order(self, world):
        session = world.processed()

        _, published = world.admin.republish("ops-1", session.session_id)

        assert published == ["PaymentCompleted"]
        assert [order.order_id for _, order in world.publisher.published] == [session.order_id] * 2

    def test_republish_of_a_refunded_session_sends_the_refund_after_it(self, world):
        session = world.processed()
        refund(world, session.session_id)

        _, published = world.admin.republish("ops-1", session.session_id)

        assert published == ["PaymentCompleted", "PaymentRefunded"]
        assert len(world.publisher.refunds) == 2

    def test_republish_without_an_order_is_a_conflict(self, world):
        session = world.create()

        with pytest.raises(NoOrder):
            world.admin.republish("ops-1", session.session_id)

    def test_republish_of_a_paid_session_fulfils_it(self, world):
        session = world.create()
        world.qpay.pay(session.invoice_id, 15000)
        world.publisher.fail_next = 1
        world.settlement.confirm_with_qpay(session, source="webhook")

        done, published = world.admin.republish("ops-1", session.session_id)

        assert (done.status, published) == (S.PROCESSED, ["PaymentCompleted"])
        assert len(world.publisher.published) == 1


class TestReports:
    def sessions(self, world: World) -> list[str]:
        """Eight sessions a second apart, newest last: PROCESSED, PENDING, CANCELLED in turn."""
        ids = []
        for number in range(8):
            session = world.create(1000 + number, user_id="bob" if number % 4 == 0 else "alice")
            if number % 3 == 0:
                world.qpay.pay(session.invoice_id, session.amount)
                world.settlement.confirm_with_qpay(session, source="webhook")
            elif number % 3 == 2:
                world.cancellation.cancel(session.user_id, session.session_id)
            ids.append(session.session_id)
            world.clock.advance(seconds=1)
        return ids

    def all_pages(self, world: World, limit: int, **filters):
        seen, cursor, pages = [], None, 0
        while True:
            page, cursor = world.reports.list_payments("ops-1", limit=limit, cursor=cursor, **filters)
            seen.extend(session.session_id for session in page)
            pages += 1
            if cursor is None:
                return seen, pages

    def test_every_status_merged_newest_first_page_by_page_without_gaps_or_repeats(self, world):
        ids = self.sessions(world)

        seen, pages = self.all_pages(world, limit=3)

        assert seen == ids[::-1]
        assert pages == 3

    def test_filters_by_status_user_and_time(self, world):
        ids = self.sessions(world)

        processed, _ = self.all_pages(world, limit=2, status=S.PROCESSED)
        bobs_processed, _ = self.all_pages(world, limit=2, status=S.PROCESSED, user_id="bob")
        start = world.clock.now().replace(second=2)
        window, _ = self.all_pages(world, limit=10, created_from=start, created_to=start.replace(second=4))

        assert processed == [ids[6], ids[3], ids[0]]
        assert bobs_processed == [ids[0]]
        assert window == [ids[4], ids[3], ids[2]]

    def test_a_cursor_serves_only_the_filter_it_was_issued_for(self, world):
        self.sessions(world)
        _, cursor = world.reports.list_payments("ops-1", limit=2, cursor=None, status=S.PENDING)

        with pytest.raises(InvalidCursor):
            world.reports.list_payments("ops-1", limit=2, cursor=cursor, status=S.PROCESSED)
        with pytest.raises(InvalidCursor):
            world.reports.list_payments("ops-1", limit=2, cursor="not-a-cursor")

    def test_from_after_to_is_refused(self, world):
        now = world.clock.now()
        with pytest.raises(InvalidRequest):
            world.reports.list_payments(
                "ops-1", limit=2, cursor=None, created_from=now, created_to=now.replace(hour=1)
            )

    def test_the_summary_counts_sums_and_rates(self, world):
        late = world.create(500)
        world.cancellation.cancel("alice", late.session_id)
        world.qpay.pay(late.invoice_id, 500)
        world.settlement.confirm_with_qpay(world.stored(late.session_id), source="reconcile")
        expired = world.create(700)
        world.sessions.expire(expired, world.clock.now())
        world.create(900)
        card = world.processed(2000, "CARD")
        refund(world, card.session_id)
        world.clock.advance(hours=1)

        summary = world.reports.summary("ops-1")

        assert summary.sessions == 4
        assert summary.by_status["PROCESSED"].count == 1
        assert summary.by_status["PROCESSED"].paid_amount == 500
        assert (summary.by_status["PENDING"].count, summary.by_status["PENDING"].amount) == (1, 900)
        assert summary.by_status["REFUNDED"].count == 1
        assert (summary.cancelled, summary.expired, summary.paid, summary.late_payments) == (1, 1, 2, 1)
        assert (summary.cancellation_rate, summary.expiry_rate, summary.late_payment_rate) == (
            0.25,
            0.25,
            0.5,
        )
        assert summary.refunded_amount == 2000
        assert dict(summary.ebarimt) == {"SKIPPED": 2}
        assert summary.complete
        assert world.reports.summary("ops-1", created_from=world.clock.now()).sessions == 0

    def test_the_summary_window_may_reach_the_calendars_ends(self, world):
        from datetime import UTC, datetime, timedelta

        from pydantic import TypeAdapter

        from qpay_common.http.admin_models import EndMoment, StartMoment

        world.create(900)
        # Years before 1000 sort before 2026 only when padded ("0485-..."), as the index compares text
        ancient = TypeAdapter(StartMoment).validate_python("0485-08-24T05:41:51-00:39")
        far = TypeAdapter(EndMoment).validate_python("9999-12-31T23:00:00-05:00")  # past the end in UTC

        summary = world.reports.summary("ops-1", created_from=ancient, created_to=far)

        assert summary.sessions == 1
        assert summary.created_from.startswith("0485-08-24T06:20:51")
        assert summary.created_to.startswith("9999-12-31T23:59:59")
        # A `to` in the calendar's first day: the default 24 hours cannot reach before it
        first_day = datetime.min.replace(tzinfo=UTC) + timedelta(hours=1)
        assert world.reports.summary("ops-1", created_to=first_day).sessions == 0
