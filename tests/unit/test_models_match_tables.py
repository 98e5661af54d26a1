"""The domain models and the pynamodb table models describe the same attributes: a field added to
one and forgotten in the other would be dropped on write or fail on read."""

import pytest

from qpay_common.domain import Order, PaymentSession
from qpay_common.tables import OrderItem, SessionItem

pytestmark = pytest.mark.unit


def test_a_session_and_its_stored_item_carry_the_same_fields():
    assert set(PaymentSession.model_fields) == set(SessionItem.get_attributes())


def test_an_order_and_its_stored_item_carry_the_same_fields_besides_the_key_and_kind():
    assert set(Order.model_fields) == set(OrderItem.get_attributes()) - {"pk", "kind"}


def test_every_index_key_of_the_sessions_table_is_a_session_field():
    for index in (
        SessionItem.by_user,
        SessionItem.reconcile_due,
        SessionItem.pending_since,
        SessionItem.ebarimt_due,
    ):
        for key in index.Meta.attributes:
            assert key in PaymentSession.model_fields
