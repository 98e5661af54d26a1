"""The POST /payments body of ARCHITECTURE section 3."""

import pytest
from pydantic import ValidationError

from qpay_common.api_models import CreatePaymentRequest

pytestmark = pytest.mark.unit


def test_the_documented_example_is_accepted():
    request = CreatePaymentRequest.model_validate(
        {
            "amount": 15000,
            "description": "Order #123",
            "items": [{"name": "Tea", "quantity": 2, "unit_price": 7500}],
            "ebarimt": {
                "receiver_type": "CITIZEN",
                "receiver": "88112233",
                "district_code": "3505",
                "classification_code": "0000010",
            },
            "metadata": {"cart_id": "c-1"},
        }
    )
    assert request.amount == 15000
    assert request.items is not None
    assert request.items[0].unit_price == 7500


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": "15000"}, "amount"),
        ({"amount": 15000.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 100_000_001}, "amount"),
        ({"amount": 100, "colour": "red"}, "colour"),
        ({"amount": 100, "description": "x" * 256}, "description"),
        ({"amount": 100, "ebarimt": {"receiver_type": "INDIVIDUAL"}}, "receiver_type"),
        ({"amount": 100, "ebarimt": {"district_code": "35"}}, "district_code"),
        ({"amount": 100, "items": [{"name": "Tea", "quantity": 0, "unit_price": 100}]}, "quantity"),
    ],
)
def test_bad_input_is_rejected_naming_the_field(body, field):
    with pytest.raises(ValidationError) as error:
        CreatePaymentRequest.model_validate(body)
    assert field in str(error.value)


def test_items_must_sum_to_the_amount():
    with pytest.raises(ValidationError, match="items sum to 7500, not to amount 15000"):
        CreatePaymentRequest.model_validate(
            {"amount": 15000, "items": [{"name": "Tea", "quantity": 1, "unit_price": 7500}]}
        )


def test_an_empty_item_list_does_not_sum_to_the_amount():
    with pytest.raises(ValidationError, match="items sum to 0"):
        CreatePaymentRequest.model_validate({"amount": 100, "items": []})


def test_metadata_is_limited_to_4_kb_of_json():
    CreatePaymentRequest.model_validate({"amount": 1, "metadata": {"note": "x" * 4000}})
    with pytest.raises(ValidationError, match="metadata is"):
        CreatePaymentRequest.model_validate({"amount": 1, "metadata": {"note": "x" * 4100}})


def test_the_maximum_amount_is_allowed():
    assert CreatePaymentRequest.model_validate({"amount": 100_000_000}).amount == 100_000_000
