"""The POST /payments body of ARCHITECTURE section 3."""

import pytest
from pydantic import ValidationError

from qpay_common.domain.payment_request import CreatePaymentRequest

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


def test_an_empty_item_list_is_refused_as_the_schema_says():
    # It could never sum to an amount of at least 1; minItems states that in the schema.
    with pytest.raises(ValidationError) as error:
        CreatePaymentRequest.model_validate({"amount": 100, "items": []})
    assert [detail["type"] for detail in error.value.errors()] == ["too_short"]


def test_metadata_is_limited_to_4_kb_of_json():
    CreatePaymentRequest.model_validate({"amount": 1, "metadata": {"note": "x" * 4000}})
    with pytest.raises(ValidationError, match="metadata is"):
        CreatePaymentRequest.model_validate({"amount": 1, "metadata": {"note": "x" * 4100}})


def test_the_maximum_amount_is_allowed():
    assert CreatePaymentRequest.model_validate({"amount": 100_000_000}).amount == 100_000_000


def test_a_whole_number_written_as_a_float_is_that_integer():
    # JSON Schema's "integer" includes 765.0; the idempotency fingerprint sees 765 either way.
    request = CreatePaymentRequest.model_validate(
        {"amount": 765.0, "items": [{"name": "Tea", "quantity": 1.0, "unit_price": 765.0}]}
    )
    assert (request.amount, type(request.amount)) == (765, int)
    assert request.model_dump(mode="json") == CreatePaymentRequest.model_validate(
        {"amount": 765, "items": [{"name": "Tea", "quantity": 1, "unit_price": 765}]}
    ).model_dump(mode="json")


@pytest.mark.parametrize(
    ("metadata", "error_type"),
    [
        ({"a": [[[[1]]]]}, "metadata_too_deep"),
        ({"a": {"b": {"c": {"d": {}}}}}, "metadata_too_deep"),
        ({"big": 2**53}, "metadata_number_out_of_range"),
        ({"big": -1e300}, "metadata_number_out_of_range"),
        ({"note": "ж" * 2100}, "metadata_too_large"),
    ],
)
def test_metadata_beyond_what_the_schema_allows_is_refused(metadata, error_type):
    with pytest.raises(ValidationError) as error:
        CreatePaymentRequest.model_validate({"amount": 100, "metadata": metadata})
    assert error_type in {detail["type"] for detail in error.value.errors()}


def test_metadata_at_the_schemas_limits_is_accepted():
    metadata = {"cart": {"lines": [{"sku": "x", "qty": 2**53 - 1, "ok": True, "none": None}]}}
    assert CreatePaymentRequest.model_validate({"amount": 100, "metadata": metadata}).metadata == metadata


@pytest.mark.parametrize("name", ["", " ", "\t\n", "x" * 256])
def test_an_item_name_must_be_visible_and_at_most_255_characters(name):
    with pytest.raises(ValidationError):
        CreatePaymentRequest.model_validate(
            {"amount": 1, "items": [{"name": name, "quantity": 1, "unit_price": 1}]}
        )


def test_an_item_name_is_kept_as_given():
    request = CreatePaymentRequest.model_validate(
        {"amount": 1, "items": [{"name": " Tea ", "quantity": 1, "unit_price": 1}]}
    )
    assert request.items is not None
    assert request.items[0].name == " Tea "


def test_cross_field_refusals_name_their_rule():
    with pytest.raises(ValidationError) as error:
        CreatePaymentRequest.model_validate(
            {"amount": 2, "items": [{"name": "Tea", "quantity": 1, "unit_price": 1}]}
        )
    assert [detail["type"] for detail in error.value.errors()] == ["items_total_mismatch"]
