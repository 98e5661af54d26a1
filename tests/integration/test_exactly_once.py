"""No race and no crash can lose a paid payment or fulfil it twice: real threads against DynamoDB
Local (AWS's engine), the simulator over HTTP, events through moto's EventBridge."""

import threading
from urllib.parse import parse_qsl, urlsplit

import pytest

from qpay_common import composition
from tests.support import create_payment, invoke, overridden, settlement_with, webhook_event

pytestmark = pytest.mark.integration

RACE_ROUNDS = 50
DUPLICATE_CALLBACKS = 20


def race_once(live_aws, sim):
    """One payment raced by 20 duplicate callbacks, a status poll and a direct fulfilment.

    The racers call the use cases the handlers call, in threads. Not the handlers themselves:
    Powertools keeps the current event on a class attribute (BaseRouter.current_event) shared by
    every resolver in a process, so two handlers in one process read each other's requests. In
    Lambda each runs in an environment of its own; the e2e suite races handlers that way."""
    created = create_payment()
    payment = sim.pay(created["invoice_id"])
    callback_query = dict(parse_qsl(urlsplit(sim.callback_url(created["invoice_id"])).query))
    assert payment["payment_id"]
    start = threading.Barrier(DUPLICATE_CALLBACKS + 2)
    answers, failures = [], []

    def run(work):
        start.wait()
        try:
            answers.append(work())
        except Exception as exc:
            failures.append(exc)

    def callback():
        composition.settlement().handle_callback(callback_query["session_id"], callback_query["token"])
        return "SUCCESS"

    def poll():
        return composition.queries().get_payment("alice", created["session_id"]).status

    def direct_fulfilment():
        session = composition.queries().get_payment("alice", created["session_id"])
        return composition.settlement().confirm_with_qpay(session, source="reconcile").status

    workers = [threading.Thread(target=run, args=(callback,)) for _ in range(DUPLICATE_CALLBACKS)]
    workers.append(threading.Thread(target=run, args=(poll,)))
    workers.append(threading.Thread(target=run, args=(direct_fulfilment,)))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return created, answers, failures


def test_twenty_duplicate_callbacks_a_poll_and_a_direct_fulfilment_make_one_order_fifty_times(live_aws, sim):
    for round_number in range(RACE_ROUNDS):
        created, answers, failures = race_once(live_aws, sim)
        session_id = created["session_id"]

        assert failures == [], f"round {round_number}"
        webhook_answers = [answer for answer in answers if answer == "SUCCESS"]
        assert len(webhook_answers) == DUPLICATE_CALLBACKS, f"round {round_number}: {answers}"
        assert live_aws.session(session_id)["status"]["S"] == "PROCESSED", f"round {round_number}"
        assert len(live_aws.orders(session_id)) == 1, f"round {round_number}"
        assert len(live_aws.settlements(session_id)) == 1, f"round {round_number}"
        assert len(live_aws.events(session_id)) == 1, f"round {round_number}"


class Crash(Exception):
    pass


@pytest.mark.parametrize("stage", ["before_order", "before_event", "before_processed"])
def test_a_crash_mid_fulfilment_is_finished_by_the_next_attempt_without_doubles(live_aws, sim, stage):
    created = create_payment()
    sim.pay(created["invoice_id"])
    callback = webhook_event(sim.callback_url(created["invoice_id"]))

    def crash(current_stage, session):
        if current_stage == stage:
            raise Crash(stage)

    # A crashed worker's publish lease must lapse before another may publish: make it lapse at once.
    crashing = settlement_with(fault_hook=crash, emit_lease_seconds=0)
    with overridden("qpay_webhook", composition.settlement, crashing):
        status, _ = invoke("qpay_webhook", callback)
    assert status == 500
    assert live_aws.session(created["session_id"])["status"]["S"] == "PAID"

    status, answer = invoke("qpay_webhook", callback)

    assert (status, answer) == (200, "SUCCESS")
    assert live_aws.session(created["session_id"])["status"]["S"] == "PROCESSED"
    assert len(live_aws.orders(created["session_id"])) == 1
    assert len(live_aws.settlements(created["session_id"])) == 1
    expected_events = 2 if stage == "before_processed" else 1  # at least once: consumers dedupe on order_id
    events = live_aws.events(created["session_id"])
    assert len(events) == expected_events
    assert {event["detail"]["order_id"] for event in events} == {"ord_" + created["session_id"][3:]}
