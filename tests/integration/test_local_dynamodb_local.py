"""DynamoDB Local (AWS's engine from the npm package) started by the stack's code, with the tables of
template.yaml; it is stricter than moto, which is why create_tables must be idempotent."""

from pathlib import Path

import boto3
import pytest

from local.dynamodb_local import DynamoDBLocal, DynamoDBLocalError
from local.endpoints import free_port
from local.template import create_tables, load_template

pytestmark = pytest.mark.integration

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")


@pytest.fixture(scope="module")
def engine():
    running = DynamoDBLocal(free_port())
    running.start()
    yield running
    running.stop()


def test_tables_from_the_template_exist_with_gsis_and_ttl(engine):
    client = engine.client()

    created = create_tables(client, TEMPLATE)

    assert sorted(created) == sorted(TEMPLATE.tables)
    sessions = client.describe_table(TableName="SessionsTable")["Table"]
    assert sessions["KeySchema"] == TEMPLATE.tables["SessionsTable"].key_schema
    assert {index["IndexName"] for index in sessions["GlobalSecondaryIndexes"]} == {
        index["IndexName"] for index in TEMPLATE.tables["SessionsTable"].global_secondary_indexes
    }
    ttl = client.describe_time_to_live(TableName="SessionsTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "purge_at"}
    # A second run (DynamoDB Local rejects enabling TTL twice) is harmless
    assert create_tables(client, TEMPLATE) == []


def test_conditional_put_has_one_winner(engine):
    client = engine.client()
    create_tables(client, TEMPLATE)
    item = {"pk": {"S": "order#ord_1"}, "session_id": {"S": "ps_1"}}

    client.put_item(TableName="OrdersTable", Item=item, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(TableName="OrdersTable", Item=item, ConditionExpression="attribute_not_exists(pk)")


def test_any_credentials_see_the_same_tables(engine):
    # -sharedDb: a client with other keys or region (make inspect, a test) sees the same database.
    create_tables(engine.client(), TEMPLATE)
    other = boto3.client(
        "dynamodb",
        endpoint_url=engine.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id="SomeoneElse",
        aws_secret_access_key="x",
    )

    assert set(TEMPLATE.tables) <= set(other.list_tables()["TableNames"])


def test_a_missing_npm_package_says_how_to_fix_it(tmp_path):
    with pytest.raises(DynamoDBLocalError, match="make install"):
        DynamoDBLocal(free_port(), repo_root=tmp_path).start()
