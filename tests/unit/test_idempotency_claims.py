"""An Idempotency-Key claim is "in progress" only while the claiming invocation could still run:
a create whose environment died mid-invocation is finished by a retry with the same key, under the
same session, and QPay never holds two invoices that a client was shown for one key."""

import pytest

from qpay_common import deadlines
from qpay_common.domain.errors import IdempotencyConflict
from qpay_common.domain.payment_request import CreatePaymentRequest
from qpay_common.domain.session import PaymentStatus
from tests.fakes import World

pytestmark = pytest.mark.unit

BODY = {"amount": 15000, "description": "Order #9"}


class EnvironmentKilled(BaseException):
    """What the code sees of a killed execution environment: nothing after this point runs
    (a BaseException, so no `except Exception` clean-up runs either)."""


def die() -> None:
    raise EnvironmentKilled()


def create(world: World, key: str = "key-1", body: dict | None = None):
    request = CreatePaymentRequest.model_validate(body or BODY)
    return world.creation.create_payment("alice", request, "https://shop.example", idempotency_key=key)


def killed_during_the_invoice_call(world: World, *, after_qpay_made_it: bool = False) -> None:
    (world.qpay.after if after_qpay_made_it else world.qpay.during)["create_invoice"] = die
    with pytest.raises(EnvironmentKilled):
        create(world)


@pytest.fixture
def world() -> World:
    return World()


class Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_retry_while_the_first_could_still_run_is_409_with_retry_after(world):
    killed_during_the_invoice_call(world)

    with pytest.raises(IdempotencyConflict) as conflict:
        create(world)

    assert "in progress" in conflict.value.message
    assert 1 <= conflict.value.retry_after_seconds <= 32


def test_the_claim_lasts_as_long_as_the_claiming_invocation_could(world):
    deadlines.begin(Context(remaining_ms=6000))
    try:
        killed_during_the_invoice_call(world)
    finally:
        deadlines.end()

    with pytest.raises(IdempotencyConflict) as conflict:
        create(world)
    # 6 s left at the claim (5 s to the deadline + the 1 s answer margin) and 2 s of slack.
    assert conflict.value.retry_after_seconds == 8
    world.clock.advance(seconds=8)
    session, created = create(world)
    assert (session.status, created) == (PaymentStatus.PENDING, True)


def test_once_the_deadline_passed_a_retry_takes_over_and_finishes_under_the_same_session(world):
    killed_during_the_invoice_call(world)
    [claim] = [data for key, (data, _, _) in world.cache.items.items() if key.startswith("idem#")]
    world.clock.advance(seconds=33)

    session, created = create(world)
    again, replayed = create(world)

    assert (session.status, created) == (PaymentStatus.PENDING, True)
    assert session.session_id == claim["session_id"]
    assert (again.session_id, replayed) == (session.session_id, False)
    assert len(world.qpay.invoices) == 1


def test_a_dead_create_whose_invoice_reached_qpay_leaves_one_session_for_the_key(world):
    killed_during_the_invoice_call(world, after_qpay_made_it=True)
    world.clock.advance(seconds=33)

    session, created = create(world)
    again, _ = create(world)

    assert (session.status, created) == (PaymentStatus.PENDING, True)
    assert again.session_id == session.session_id
    # QPay holds the dead create's invoice (nobody got its QR) and the one the client was given.
    assert len(world.qpay.invoices) == 2
    assert session.invoice_id in world.qpay.invoices


def test_only_one_retry_takes_a_dead_claim_over(world):
    killed_during_the_invoice_call(world)
    world.clock.advance(seconds=33)
    # The first retry dies too, right after taking the claim over: the next one must wait again.
    world.qpay.during["create_invoice"] = die
    with pytest.raises(EnvironmentKilled):
        create(world)

    with pytest.raises(IdempotencyConflict):
        create(world)
    world.clock.advance(seconds=33)
    _, created = create(world)
    assert created
    assert len(world.qpay.invoices) == 1


def test_another_body_with_the_key_is_a_conflict_with_no_retry_advice(world):
    create(world)

    with pytest.raises(IdempotencyConflict) as conflict:
        create(world, body={"amount": 16000})

    assert conflict.value.retry_after_seconds is None
    assert "different request body" in conflict.value.message


def test_a_claim_from_before_claims_carried_a_deadline_stays_in_progress(world):
    killed_during_the_invoice_call(world)
    for key, (data, expires_at, tag) in list(world.cache.items.items()):
        data.pop("in_progress_until", None)
        world.cache.items[key] = (data, expires_at, tag)
    world.clock.advance(hours=1)

    with pytest.raises(IdempotencyConflict):
        create(world)
