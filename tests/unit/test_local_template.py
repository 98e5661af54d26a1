"""template.yaml as the local stack reads it: resolution of intrinsics, Globals, routes, schedules,
tables; and create_tables building the same tables in moto."""

import textwrap
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local.template import TemplateError, create_tables, load_template

pytestmark = pytest.mark.unit

REPO_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def write_template(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_real_template_functions_get_globals_and_resolved_environment():
    # Given the project's template
    # When the local stack loads it
    template = load_template(REPO_TEMPLATE)

    # Then the payment function runs with the Globals' timeout and memory
    create = template.functions["CreatePaymentFunction"]
    assert create.timeout_s == 29
    assert create.memory_size_mb == 512
    assert create.code_uri == REPO_TEMPLATE.parent / "functions" / "create_payment"
    assert create.handler == "app.lambda_handler"
    # And its environment names the local tables (logical ids) and the resolved bus name
    assert create.environment["SESSIONS_TABLE"] == "SessionsTable"
    assert create.environment["ORDERS_TABLE"] == "OrdersTable"
    assert create.environment["CACHE_TABLE"] == "CacheTable"
    assert create.environment["EVENT_BUS_NAME"] == "qpay-local-payments"
    # And parameters are their defaults, as strings (CloudFormation passes numbers as strings)
    assert create.environment["SESSION_EXPIRY_MINUTES"] == "30"
    assert create.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    # And the layer is known, with its folder
    assert [layer.content_uri for layer in template.layers] == [
        REPO_TEMPLATE.parent / "layers" / "qpay_common"
    ]


def test_real_template_routes_know_which_need_the_jwt_authorizer():
    template = load_template(REPO_TEMPLATE)

    routes = {route.route_key: route for route in template.routes}

    assert routes["POST /payments"].function_id == "CreatePaymentFunction"
    assert routes["POST /payments"].auth_required
    assert not routes["GET /webhooks/qpay"].auth_required
    assert not routes["POST /webhooks/qpay"].auth_required


def test_real_template_tables_and_bus():
    template = load_template(REPO_TEMPLATE)

    sessions = template.tables["SessionsTable"]
    assert sessions.key_schema == [{"AttributeName": "session_id", "KeyType": "HASH"}]
    assert "by_user" in [index["IndexName"] for index in sessions.global_secondary_indexes]
    assert sessions.ttl_attribute == "purge_at"
    assert template.tables["CacheTable"].ttl_attribute == "expires_at"
    assert template.tables["OrdersTable"].ttl_attribute is None
    assert [bus.name for bus in template.event_buses] == ["qpay-local-payments"]


def test_an_index_projecting_more_than_dynamodb_allows_is_refused_as_aws_would(tmp_path):
    attributes = ", ".join(f"a{number}" for number in range(21))
    template = tmp_path / "template.yaml"
    template.write_text(
        textwrap.dedent(
            f"""
            Resources:
              Things:
                Type: AWS::DynamoDB::Table
                Properties:
                  TableName: Things
                  AttributeDefinitions:
                    - {{AttributeName: pk, AttributeType: S}}
                    - {{AttributeName: owner, AttributeType: S}}
                  KeySchema: [{{AttributeName: pk, KeyType: HASH}}]
                  GlobalSecondaryIndexes:
                    - IndexName: by_owner
                      KeySchema: [{{AttributeName: owner, KeyType: HASH}}]
                      Projection: {{ProjectionType: INCLUDE, NonKeyAttributes: [{attributes}]}}
            """
        )
    )
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        with pytest.raises(TemplateError, match="projects 21 NonKeyAttributes; DynamoDB allows at most 20"):
            create_tables(client, template)
        assert client.list_tables()["TableNames"] == []


def test_parameter_overrides_reach_the_environment():
    template = load_template(REPO_TEMPLATE, {"SessionExpiryMinutes": 5, "LogLevel": "DEBUG"})

    environment = template.functions["ExpireFunction"].environment

    assert environment["SESSION_EXPIRY_MINUTES"] == "5"
    assert environment["POWERTOOLS_LOG_LEVEL"] == "DEBUG"


def test_override_of_an_unknown_parameter_is_an_error():
    with pytest.raises(TemplateError, match="Nope"):
        load_template(REPO_TEMPLATE, {"Nope": "x"})


SHORT_TAGS_TEMPLATE = """\
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Stage:
        Type: String
        Default: dev
      Names:
        Type: CommaDelimitedList
        Default: "a,b,c"
    Mappings:
      Sizes:
        dev: {Memory: 256}
    Conditions:
      IsDev: !Equals [!Ref Stage, dev]
      IsProd: !Not [!Condition IsDev]
    Globals:
      Function:
        Timeout: 10
        Environment:
          Variables:
            SHARED: from-globals
            OVERRIDDEN: from-globals
    Resources:
      Bus:
        Type: AWS::Events::EventBus
        Properties:
          Name: !Sub "${AWS::StackName}-${Stage}-bus"
      Table:
        Type: AWS::DynamoDB::Table
        Properties:
          AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
          KeySchema: [{AttributeName: pk, KeyType: HASH}]
      ProdOnlyTable:
        Type: AWS::DynamoDB::Table
        Condition: IsProd
        Properties:
          AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
          KeySchema: [{AttributeName: pk, KeyType: HASH}]
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: src/fn/
          Handler: app.handler
          MemorySize: !FindInMap [Sizes, !Ref Stage, Memory]
          Environment:
            Variables:
              OVERRIDDEN: from-function
              TABLE: !Ref Table
              TABLE_ARN: !GetAtt Table.Arn
              BUS: !Ref Bus
              BUS_ARN: !GetAtt [Bus, Arn]
              SUB_LIST: !Sub ["${Word}-${AWS::Region}-${AWS::AccountId}", {Word: !Ref Stage}]
              SUB_ATTR: !Sub "${Table.Arn}/index/x"
              ESCAPED: !Sub "${!NotAVariable}"
              JOINED: !Join ["+", [!Ref Stage, !Ref "AWS::URLSuffix"]]
              SECOND: !Select [1, !Ref Names]
              SPLIT: !Select [2, !Split [",", "x,y,z"]]
              CHOSEN: !If [IsDev, dev-value, prod-value]
              ENCODED: !Base64 hi
              ZONE: !Select [0, !GetAZs ""]
              IMPORTED: !ImportValue other-stack-export
              NUMBER: 7
              FLAG: true
              REMOVED: !If [IsProd, x, !Ref "AWS::NoValue"]
"""


def test_short_tags_and_pseudo_parameters_resolve_to_local_values(tmp_path):
    # Given a template using CloudFormation's short tags
    path = write_template(tmp_path, SHORT_TAGS_TEMPLATE)

    # When it is loaded
    template = load_template(path)

    # Then every intrinsic has its local value
    function = template.functions["Fn"]
    env = function.environment
    assert env["SHARED"] == "from-globals"
    assert env["OVERRIDDEN"] == "from-function"
    assert env["TABLE"] == "Table"
    assert env["TABLE_ARN"] == "arn:aws:dynamodb:us-east-1:123456789012:table/Table"
    assert env["BUS"] == "qpay-local-dev-bus"
    assert env["BUS_ARN"] == "arn:aws:events:us-east-1:123456789012:event-bus/qpay-local-dev-bus"
    assert env["SUB_LIST"] == "dev-us-east-1-123456789012"
    assert env["SUB_ATTR"] == "arn:aws:dynamodb:us-east-1:123456789012:table/Table/index/x"
    assert env["ESCAPED"] == "${NotAVariable}"
    assert env["JOINED"] == "dev+amazonaws.com"
    assert env["SECOND"] == "b"
    assert env["SPLIT"] == "z"
    assert env["CHOSEN"] == "dev-value"
    assert env["ENCODED"] == "aGk="
    assert env["ZONE"] == "us-east-1a"
    assert env["IMPORTED"] == "imported-other-stack-export"
    assert env["NUMBER"] == "7"
    assert env["FLAG"] == "true"
    assert "REMOVED" not in env
    # And Globals and mappings apply
    assert function.timeout_s == 10
    assert function.memory_size_mb == 256
    assert function.code_uri == tmp_path / "src" / "fn"
    # And a resource whose condition is false does not exist locally
    assert set(template.tables) == {"Table"}


def test_ref_to_an_unknown_name_is_a_clear_error(tmp_path):
    path = write_template(
        tmp_path,
        """\
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: fn/
              Handler: app.handler
              Environment:
                Variables:
                  X: !Ref Missing
        """,
    )

    with pytest.raises(TemplateError, match="Missing"):
        load_template(path)


def test_routes_follow_the_api_default_authorizer_and_auth_none(tmp_path):
    # Given an implicit API whose default authorizer comes from Globals, and an explicit API
    path = write_template(
        tmp_path,
        """\
        Globals:
          HttpApi:
            Auth:
              DefaultAuthorizer: Jwt
              Authorizers:
                Jwt:
                  IdentitySource: $request.header.X-Token
                  JwtConfiguration: {issuer: x, audience: [y]}
        Resources:
          OpenApi:
            Type: AWS::Serverless::HttpApi
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: fn/
              Handler: app.handler
              Timeout: 5
              Events:
                Private:
                  Type: HttpApi
                  Properties: {Path: "/things/{id}", Method: get}
                Public:
                  Type: HttpApi
                  Properties: {Path: /health, Method: GET, Auth: {Authorizer: NONE}}
                Scoped:
                  Type: HttpApi
                  Properties:
                    Path: /admin
                    Method: ANY
                    TimeoutInMillis: 2000
                    Auth: {Authorizer: Jwt, AuthorizationScopes: [admin]}
                CatchAll:
                  Type: HttpApi
                Tick:
                  Type: Schedule
                  Properties: {Schedule: rate(5 minutes)}
                Nightly:
                  Type: ScheduleV2
                  Properties: {ScheduleExpression: rate(1 day), State: DISABLED}
        """,
    )

    template = load_template(path)

    routes = {route.event_id: route for route in template.routes}
    assert routes["Private"].route_key == "GET /things/{id}"
    assert routes["Private"].auth_required
    assert routes["Private"].identity_header == "x-token"
    assert not routes["Public"].auth_required
    assert routes["Scoped"].authorization_scopes == ("admin",)
    assert routes["Scoped"].timeout_ms == 2000
    assert routes["CatchAll"].route_key == "$default"
    schedules = {schedule.event_id: schedule for schedule in template.schedules}
    assert schedules["Tick"].expression == "rate(5 minutes)"
    assert schedules["Tick"].enabled
    assert not schedules["Nightly"].enabled


def test_two_functions_claiming_one_route_is_an_error(tmp_path):
    path = write_template(
        tmp_path,
        """\
        Resources:
          A:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: a/
              Handler: app.handler
              Events: {E: {Type: HttpApi, Properties: {Path: /x, Method: GET}}}
          B:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: b/
              Handler: app.handler
              Events: {E: {Type: HttpApi, Properties: {Path: /x, Method: GET}}}
        """,
    )

    with pytest.raises(TemplateError, match="GET /x"):
        load_template(path)


def test_create_tables_builds_the_template_tables_in_moto():
    # Given an empty moto DynamoDB
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        template = load_template(REPO_TEMPLATE)

        # When the tables are created from template.yaml
        created = create_tables(client, REPO_TEMPLATE)

        # Then every table exists, on demand, with its keys, GSIs and TTL
        assert sorted(created) == sorted(template.tables)
        for table in template.tables.values():
            description = client.describe_table(TableName=table.name)["Table"]
            assert description["KeySchema"] == table.key_schema
            assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
            indexes = {index["IndexName"]: index for index in description.get("GlobalSecondaryIndexes", [])}
            for expected in table.global_secondary_indexes:
                assert indexes[expected["IndexName"]]["KeySchema"] == expected["KeySchema"]
                assert indexes[expected["IndexName"]]["Projection"] == expected["Projection"]
            ttl = client.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
            if table.ttl_attribute:
                assert ttl["TimeToLiveStatus"] == "ENABLED"
                assert ttl["AttributeName"] == table.ttl_attribute
            else:
                assert ttl["TimeToLiveStatus"] == "DISABLED"

        # And running it again changes nothing and does not fail
        assert create_tables(client, template) == []


def test_a_setting_given_to_make_run_sets_the_parameter_its_variable_comes_from(monkeypatch):
    from local.stack import shell_parameter_overrides

    monkeypatch.setenv("SESSION_EXPIRY_MINUTES", "3")
    monkeypatch.setenv("CHECKOUT_SHOP_ORIGINS", "https://a.example https://b.example")

    overrides = shell_parameter_overrides(REPO_TEMPLATE)
    template = load_template(REPO_TEMPLATE, overrides)

    assert overrides["SessionExpiryMinutes"] == "3"
    assert template.cors is not None
    assert template.cors.allow_origins == ("https://a.example", "https://b.example")
    assert load_template(REPO_TEMPLATE).cors is None


FOR_EACH_TEMPLATE = """\
    Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]
    Resources:
      Fn::ForEach::Functions:
        - Name
        - [Create, Get]
        - ${Name}Function:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: !Sub src/${Name}
              Handler: app.handler
              Environment:
                Variables:
                  WHO: !Ref Name
                  TABLE: !Ref ${Name}Table
          Fn::ForEach::Tables:
            - Suffix
            - [a.b, c]
            - ${Name}&{Suffix}Table:
                Type: AWS::DynamoDB::Table
                Properties:
                  KeySchema: [{AttributeName: pk, KeyType: HASH}]
                  AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      CreateTable:
        Type: AWS::DynamoDB::Table
        Properties:
          KeySchema: [{AttributeName: pk, KeyType: HASH}]
          AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      GetTable:
        Type: AWS::DynamoDB::Table
        Properties:
          KeySchema: [{AttributeName: pk, KeyType: HASH}]
          AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
    """


def test_for_each_loops_are_expanded_as_the_language_extensions_transform_does(tmp_path):
    # Given a template whose functions and tables come from (nested) Fn::ForEach loops
    path = write_template(tmp_path, FOR_EACH_TEMPLATE)
    (tmp_path / "src" / "Create").mkdir(parents=True)

    # When the local stack reads it
    template = load_template(path)

    # Then each value made its copy: ${Name} in keys and strings, Ref Name as the value,
    # &{Suffix} without its non-alphanumeric characters
    assert set(template.functions) == {"CreateFunction", "GetFunction"}
    create = template.functions["CreateFunction"]
    assert create.code_uri == tmp_path / "src" / "Create"
    assert create.environment["WHO"] == "Create"
    assert create.environment["TABLE"] == "CreateTable"
    assert set(template.tables) == {
        "CreateTable",
        "GetTable",
        "CreateabTable",
        "CreatecTable",
        "GetabTable",
        "GetcTable",
    }


def test_a_for_each_that_makes_an_existing_resource_again_is_refused(tmp_path):
    path = write_template(
        tmp_path,
        FOR_EACH_TEMPLATE.replace("${Name}&{Suffix}Table", "${Name}Table").replace("[a.b, c]", "[x]"),
    )

    with pytest.raises(TemplateError, match="CreateTable is declared twice"):
        load_template(path)


def test_for_each_over_something_other_than_a_literal_list_is_a_clear_error(tmp_path):
    path = write_template(tmp_path, FOR_EACH_TEMPLATE.replace("[Create, Get]", "!Ref Names"))

    with pytest.raises(TemplateError, match="literal list"):
        load_template(path)


def test_without_the_language_extensions_transform_nothing_is_expanded(tmp_path):
    from local.template import load_yaml

    path = write_template(tmp_path, FOR_EACH_TEMPLATE.replace("AWS::LanguageExtensions, ", ""))

    assert "Fn::ForEach::Functions" in load_yaml(path)["Resources"]
