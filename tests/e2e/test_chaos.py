"""A short `make chaos` in the suite: payments with random plans under AWS's faults, killed
environments and QPay's faults, then every invariant checked from outside; and one run with only
DynamoDB's conflicts and throttles, where no payment that ends correctly may see a 5xx."""

import pytest

from local.chaos import AWS_FAULTS, PLANS, QPAY_FAULTS, print_table, run_chaos
from tests.e2e.conftest import start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    running = start_stack({"LOCAL_SCHEDULES": "off"})
    yield running
    stop_stack(running)


def test_200_payments_under_every_fault_hold_every_invariant(stack):
    run = run_chaos(stack, 200, seed=2026, aws_faults=AWS_FAULTS, qpay_faults=QPAY_FAULTS)

    print_table(run.outcomes)
    assert run.violations == []
    assert set(run.outcomes) == set(PLANS)
    ended = sum(sum(counter.values()) for counter in run.outcomes.values())
    assert ended >= 200


def test_with_dynamodb_conflicts_and_throttles_on_every_function_create_and_the_webhook_never_5xx(stack):
    conflicts_and_throttles = [
        {"service": "dynamodb", "operation": "writes", "fault": "TransactionConflict", "rate": 0.05},
        {"service": "dynamodb", "operation": "*", "fault": "Throttling", "rate": 0.05},
    ]

    run = run_chaos(stack, 80, seed=7, aws_faults=conflicts_and_throttles)

    print_table(run.outcomes)
    assert run.violations == []
    assert (run.five_xx("create"), run.five_xx("webhook")) == (0, 0)
