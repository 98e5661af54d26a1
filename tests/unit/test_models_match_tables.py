"""The domain models and the pynamodb table models describe the same attributes: a field added to
one and forgotten in the other would be dropped on write or fail on read."""

import pytest

from local.template import load_template
from qpay_common.adapters.dynamodb.tables import BY_STATUS_PROJECTED, OrderItem, SessionItem
from qpay_common.domain.session import Order, PaymentSession
from qpay_common.http.admin_models import AdminPaymentItem
from tests.support import TEMPLATE

pytestmark = pytest.mark.unit


def test_a_session_and_its_stored_item_carry_the_same_fields():
    assert set(PaymentSession.model_fields) == set(SessionItem.get_attributes())


def test_an_order_and_its_stored_item_carry_the_same_fields_besides_the_key_and_kind():
    assert set(Order.model_fields) == set(OrderItem.get_attributes()) - {"pk", "kind"}


def test_every_index_key_of_the_sessions_table_is_a_session_field():
    for index in (
        SessionItem.by_user,
        SessionItem.by_status,
        SessionItem.reconcile_due,
        SessionItem.pending_since,
        SessionItem.ebarimt_due,
    ):
        for key in index.Meta.attributes:
            assert key in PaymentSession.model_fields


def test_the_by_status_index_projects_what_the_admin_listing_shows_in_template_and_model():
    sessions = load_template(TEMPLATE).tables["SessionsTable"]
    [index] = [index for index in sessions.global_secondary_indexes if index["IndexName"] == "by_status"]

    assert index["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(BY_STATUS_PROJECTED)}
    assert SessionItem.by_status.Meta.projection.non_key_attributes == list(BY_STATUS_PROJECTED)
    keys = {"session_id", "status", "created_at"}
    # refunded_at is read from the projected `refund`; everything else by name.
    shown = set(AdminPaymentItem.model_fields) - {"refunded_at"}
    assert shown <= keys | set(BY_STATUS_PROJECTED)
    # A listed session must still be a valid PaymentSession: every required field is projected.
    required = {name for name, info in PaymentSession.model_fields.items() if info.is_required()}
    assert required <= keys | set(BY_STATUS_PROJECTED)
