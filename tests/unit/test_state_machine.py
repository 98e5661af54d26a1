"""The transition table, row by row: every allowed transition moves the stored session to its target
with the bookkeeping that status needs, and every other (status, event) is refused without a write."""

import itertools
from typing import Any

import pytest

from qpay_common.domain.session import PaymentSession, PaymentStatus, Refund
from qpay_common.domain.state_machine import (
    GRACE,
    PAYABLE,
    RECONCILED,
    TRANSITIONS,
    WATCHED_BY,
    Event,
    TransitionRefused,
    allows,
)
from tests.fakes import FixedClock, InMemorySessions, unit_settings

pytestmark = pytest.mark.unit

S = PaymentStatus


def stored(store: InMemorySessions, status: PaymentStatus) -> PaymentSession:
    item = {
        "session_id": f"ps_{status.value.lower()}",
        "user_id": "alice",
        "status": status.value,
        "version": 1,
        "amount": 1000,
        "invoice_id": "inv-1",
        "created_at": "2026-12-01T11:00:00.000Z",
        "updated_at": "2026-12-01T11:00:00.000Z",
    }
    store.items[item["session_id"]] = item
    return PaymentSession.model_validate(item)


def apply(
    store: InMemorySessions, session: PaymentSession, event: Event, clock: FixedClock
) -> PaymentSession:
    now = clock.now()
    verbs: dict[Event, Any] = {
        Event.INVOICE_CREATED: lambda: store.activate(session, {"invoice_id": "inv-2"}, now),
        Event.PAYMENT_VERIFIED: lambda: store.mark_paid(session, 1000, ["pay-1"], now),
        Event.UNDERPAID: lambda: store.record_underpayment(session, 500, ["pay-1"], "AMOUNT_MISMATCH", now),
        Event.FULFILLED: lambda: store.mark_processed(session, now),
        Event.CANCEL: lambda: store.cancel(session, now),
        Event.EXPIRE: lambda: store.expire(session, now),
        Event.REFUND: lambda: store.mark_refunded(session, REFUND, now),
    }
    return verbs[event]()


REFUND = Refund(
    requested_by="ops",
    requested_at="2026-12-01T12:00:00.000Z",
    note="returned",
    payment_ids=["pay-1"],
    amount=1000,
)


@pytest.fixture
def store() -> InMemorySessions:
    return InMemorySessions(unit_settings(EBARIMT_ENABLED="true"))


@pytest.mark.parametrize("row", TRANSITIONS, ids=lambda row: f"{row.source}-{row.event}-{row.target}")
def test_every_allowed_transition_reaches_its_target(store, row):
    clock = FixedClock()
    session = stored(store, row.source)

    moved = apply(store, session, row.event, clock)

    assert moved.status == row.target
    assert moved.version == session.version + 1
    assert store.items[session.session_id]["status"] == row.target.value


REFUSED = [
    (status, event) for status, event in itertools.product(PaymentStatus, Event) if not allows(status, event)
]


@pytest.mark.parametrize(("status", "event"), REFUSED, ids=lambda value: str(value))
def test_every_other_transition_is_refused_and_writes_nothing(store, status, event):
    session = stored(store, status)
    writes = store.writes

    with pytest.raises(TransitionRefused):
        apply(store, session, event, FixedClock())

    assert store.writes == writes
    assert store.items[session.session_id]["status"] == status.value


def test_the_derived_views_match_the_contract():
    # ARCHITECTURE section 2: a verified payment is honoured from PENDING, and by policy A from
    # CANCELLED and EXPIRED; a top-up completes a FAILED one.
    assert {S.PENDING, S.CANCELLED, S.EXPIRED, S.FAILED} == PAYABLE
    # Section 5: reconcile asks about PENDING and PAID, and about CANCELLED/EXPIRED/FAILED in grace.
    assert {S.PENDING, S.PAID, S.CANCELLED, S.EXPIRED, S.FAILED} == RECONCILED
    assert {S.CANCELLED, S.EXPIRED, S.FAILED} == GRACE
    assert set(WATCHED_BY) == set(PaymentStatus)
    late = {row.source for row in TRANSITIONS if row.late_payment}
    assert {S.CANCELLED, S.EXPIRED} == late
    # Issue 11: only a fulfilled payment is refunded, and a refund is final.
    assert [(row.source, row.target) for row in TRANSITIONS if row.event == Event.REFUND] == [
        (S.PROCESSED, S.REFUNDED)
    ]
    assert not any(row.source == S.REFUNDED for row in TRANSITIONS)


def test_entering_pending_queues_reconcile_now_and_expiry(store):
    clock = FixedClock()
    session = apply(store, stored(store, S.CREATING), Event.INVOICE_CREATED, clock)

    item = store.items[session.session_id]
    assert item["pending_shard"].startswith("P#")
    assert item["reconcile_shard"].startswith("R#")
    assert item["next_check_at"] == int(clock.epoch())
    assert item["reconcile_checks"] == 0
    assert "purge_at" not in item


def test_entering_paid_leaves_expiry_and_is_checked_a_minute_later(store):
    clock = FixedClock()
    session = apply(store, stored(store, S.PENDING), Event.PAYMENT_VERIFIED, clock)

    item = store.items[session.session_id]
    assert "pending_shard" not in item
    assert "grace_until" not in item
    assert item["next_check_at"] == int(clock.epoch()) + 60
    assert "purge_at" not in item


@pytest.mark.parametrize(
    ("source", "event"), [(S.PENDING, Event.CANCEL), (S.PENDING, Event.EXPIRE), (S.PENDING, Event.UNDERPAID)]
)
def test_leaving_pending_unpaid_starts_the_grace_window_and_the_ttl(store, source, event):
    clock = FixedClock()
    session = apply(store, stored(store, source), event, clock)

    item = store.items[session.session_id]
    assert "pending_shard" not in item
    assert item["next_check_at"] == int(clock.epoch())
    assert item["grace_until"] == int(clock.epoch()) + 24 * 3600
    assert item["purge_at"] == int(clock.epoch()) + 30 * 86400


@pytest.mark.parametrize(("enabled", "receipt"), [("true", "PENDING"), ("false", "SKIPPED")])
def test_entering_processed_stops_reconcile_and_queues_the_receipt_if_enabled(enabled, receipt):
    store = InMemorySessions(unit_settings(EBARIMT_ENABLED=enabled))
    clock = FixedClock()
    paid = apply(store, stored(store, S.PENDING), Event.PAYMENT_VERIFIED, clock)

    processed = apply(store, paid, Event.FULFILLED, clock)

    item = store.items[processed.session_id]
    for attribute in ("reconcile_shard", "next_check_at", "reconcile_checks", "grace_until"):
        assert attribute not in item
    assert item["ebarimt_status"] == receipt
    assert ("ebarimt_shard" in item) is (enabled == "true")
    # Kept PaidRetentionDays (400 by default), for a refund or a dispute months later
    assert item["purge_at"] == int(clock.epoch()) + 400 * 86400


def test_paid_sessions_are_kept_paid_retention_days_and_abandoned_ones_purge_after_days():
    store = InMemorySessions(unit_settings(PAID_RETENTION_DAYS="500", PURGE_AFTER_DAYS="7"))
    clock = FixedClock()
    processed = apply(store, stored(store, S.PAID), Event.FULFILLED, clock)
    refunded = apply(store, stored(store, S.PROCESSED), Event.REFUND, clock)
    expired = apply(store, stored(store, S.PENDING), Event.EXPIRE, clock)

    # (each stored() status is its own session: ps_paid, ps_processed, ps_pending)
    assert store.items[processed.session_id]["purge_at"] == int(clock.epoch()) + 500 * 86400
    assert store.items[refunded.session_id]["purge_at"] == int(clock.epoch()) + 500 * 86400
    assert store.items[expired.session_id]["purge_at"] == int(clock.epoch()) + 7 * 86400


def test_a_write_on_a_stale_version_loses(store):
    from qpay_common.domain.errors import StaleSession

    session = stored(store, S.PENDING)
    apply(store, session, Event.CANCEL, FixedClock())

    with pytest.raises(StaleSession):
        apply(store, session, Event.EXPIRE, FixedClock())


def test_a_late_payment_is_marked_and_an_expiry_is_dated(store):
    clock = FixedClock()
    expired = apply(store, stored(store, S.PENDING), Event.EXPIRE, clock)
    assert store.items[expired.session_id]["expired_at"] == "2026-12-01T12:00:00.000Z"

    paid = apply(store, expired, Event.PAYMENT_VERIFIED, clock)

    assert store.items[paid.session_id]["late_payment"] is True
    on_time = apply(store, stored(store, S.FAILED), Event.PAYMENT_VERIFIED, clock)
    assert "late_payment" not in store.items[on_time.session_id]


@pytest.mark.parametrize(
    ("receipt", "cancel_due"),
    [("REGISTERED", True), ("ERROR", True), ("PENDING", True), ("SKIPPED", False), (None, False)],
)
def test_entering_refunded_queues_a_receipt_cancel_only_if_a_receipt_may_exist(store, receipt, cancel_due):
    clock = FixedClock()
    session = stored(store, S.PROCESSED)
    item = store.items[session.session_id]
    if receipt is not None:
        item["ebarimt_status"] = receipt
        # A registration retry was due (ERROR/PENDING): its queue entry must not linger as one.
        item.update(ebarimt_shard="E#1", ebarimt_next_at=int(clock.epoch()) + 600, ebarimt_attempts=3)
    session = PaymentSession.model_validate(item)

    refunded = apply(store, session, Event.REFUND, clock)

    item = store.items[refunded.session_id]
    assert item["refund"]["requested_by"] == "ops"
    assert item["purge_at"] == int(clock.epoch()) + 400 * 86400
    assert "reconcile_shard" not in item
    if cancel_due:
        assert item["ebarimt_status"] == "CANCELLING"
        assert item["ebarimt_shard"].startswith("E#")
        assert (item["ebarimt_next_at"], item["ebarimt_attempts"]) == (int(clock.epoch()), 0)
    else:
        assert item.get("ebarimt_status") == receipt
        assert "ebarimt_shard" not in item
        assert "ebarimt_next_at" not in item
