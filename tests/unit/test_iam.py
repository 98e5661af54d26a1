"""The local IAM check (local/iam.py): what each call is authorized as, how a policy decides, and
AWS's words for a refusal."""

import pytest

from local.iam import Policy, Statement, authorizations, denial_message, error_code, granted_actions, used_by

pytestmark = pytest.mark.unit

REGION, ACCOUNT = "us-east-1", "123456789012"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Sessions"
ROLE = f"arn:aws:sts::{ACCOUNT}:assumed-role/stack-FnRole/Fn"


def policy(*statements):
    return Policy(ROLE, tuple(Statement.from_document(statement) for statement in statements), ACCOUNT)


def test_a_transaction_is_authorized_item_by_item_with_each_items_own_action():
    params = {
        "TransactItems": [
            {"Put": {"TableName": "Orders", "Item": {}}},
            {"Update": {"TableName": "Sessions", "Key": {}}},
            {"ConditionCheck": {"TableName": "Sessions", "Key": {}}},
            {"Delete": {"TableName": TABLE, "Key": {}}},
        ]
    }

    assert authorizations("dynamodb", "TransactWriteItems", params, REGION, ACCOUNT) == [
        ("dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Orders"),
        ("dynamodb:UpdateItem", TABLE),
        ("dynamodb:ConditionCheckItem", TABLE),
        ("dynamodb:DeleteItem", TABLE),
    ]


def test_a_query_on_an_index_names_the_index_and_puts_events_name_each_bus():
    query = {"TableName": "Sessions", "IndexName": "by_user", "KeyConditionExpression": "x"}
    entries = {"Entries": [{"EventBusName": "payments"}, {"EventBusName": "payments"}, {}]}

    assert authorizations("dynamodb", "Query", query, REGION, ACCOUNT) == [
        ("dynamodb:Query", f"{TABLE}/index/by_user")
    ]
    assert authorizations("events", "PutEvents", entries, REGION, ACCOUNT) == [
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/payments"),
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"),
    ]


def test_sqs_batches_need_the_single_action_and_cloudwatch_metrics_are_checked_on_any_resource():
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/work"

    assert authorizations("sqs", "SendMessageBatch", {"QueueUrl": url}, REGION, ACCOUNT) == [
        ("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:work")
    ]
    assert authorizations("cloudwatch", "PutMetricData", {"Namespace": "x"}, REGION, ACCOUNT) == [
        ("cloudwatch:PutMetricData", "*")
    ]
    assert authorizations("sts", "GetCallerIdentity", {}, REGION, ACCOUNT) == []


def test_an_allow_grants_only_its_actions_on_its_resources_with_iam_wildcards():
    role = policy(
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Put*"], "Resource": TABLE},
        {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": f"{TABLE}/index/*"},
    )

    assert role.decide("dynamodb:GetItem", TABLE).allowed
    assert role.decide("DynamoDB:getitem", TABLE).allowed  # actions are case-insensitive
    assert role.decide("dynamodb:PutItem", TABLE).allowed
    assert not role.decide("dynamodb:UpdateItem", TABLE).allowed
    assert not role.decide("dynamodb:GetItem", TABLE + "2").allowed
    assert not role.decide("dynamodb:Query", TABLE).allowed  # the table is not its indexes
    assert role.decide("dynamodb:Query", f"{TABLE}/index/by_user").allowed
    assert not role.decide("dynamodb:GetItem", TABLE.replace("Sessions", "sessions")).allowed


def test_an_explicit_deny_wins_and_a_condition_is_never_taken_as_met():
    role = policy(
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": TABLE},
        {"Effect": "Allow", "NotAction": "dynamodb:*", "Resource": "*", "Condition": {"Bool": {"x": "true"}}},
    )

    denied = role.decide("dynamodb:DeleteItem", TABLE)
    assert not denied.allowed
    assert denied.explicit_deny
    assert role.decide("dynamodb:GetItem", TABLE).allowed
    assert not role.decide("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q").allowed


def test_a_refusal_is_worded_and_coded_as_aws_words_and_codes_it():
    assert denial_message(
        ROLE, "dynamodb:Query", f"{TABLE}/index/by_user", explicit=False, service="dynamodb"
    ) == (
        f"User: {ROLE} is not authorized to perform: dynamodb:Query on resource: {TABLE}/index/by_user "
        "because no identity-based policy allows the dynamodb:Query action"
    )
    assert "perform: sqs:sendmessage on resource" in denial_message(
        ROLE, "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q", explicit=False, service="sqs"
    )
    assert denial_message(ROLE, "dynamodb:DeleteItem", TABLE, explicit=True, service="dynamodb").endswith(
        "with an explicit deny in an identity-based policy"
    )
    assert error_code("dynamodb") == "AccessDeniedException"
    assert error_code("sqs") == "AccessDenied"


def test_a_grant_counts_as_used_when_a_recorded_call_falls_under_it():
    grants = granted_actions(
        [
            Statement.from_document(
                {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": f"{TABLE}/index/*"}
            )
        ]
    )

    assert grants == [("dynamodb:Query", f"{TABLE}/index/*", "inline")]
    assert used_by(grants[0], [("dynamodb:Query", f"{TABLE}/index/by_user")])
    assert not used_by(grants[0], [("dynamodb:Query", TABLE), ("dynamodb:GetItem", f"{TABLE}/index/x")])
