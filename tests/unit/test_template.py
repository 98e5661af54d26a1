"""template.yaml as AWS would deploy it: the custom domain, the two retained secrets and who may
read them, reconcile's SQS dispatcher and worker with their dead-letter queue and alarms, the
webhook's reserved concurrency and 5xx alarm, the by_user projection, and schedules that never
retry into overlapping runs. Read from the file (raw, and resolved with parameters as the local
stack resolves it), so the tests and the infrastructure cannot drift."""

import json
import re

import pytest

from local.template import Resolver, load_template, load_yaml
from qpay_common.adapters.dynamodb.tables import BY_USER_ATTRIBUTES, SessionItem
from qpay_common.domain.session import PaymentSession
from tests.support import ROOT, TEMPLATE

pytestmark = pytest.mark.unit

RAW = load_yaml(TEMPLATE)
RESOURCES = RAW["Resources"]
DOMAIN = {
    "DomainName": "pay.example.mn",
    "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
    "HostedZoneId": "Z0123456789",
}
QPAY_SECRET = {
    "Fn::If": ["CreatesQPaySecret", {"Ref": "QPayCredentialsSecret"}, {"Ref": "QPayCredentialsSecretArn"}]
}
WEBHOOK_SECRET = {
    "Fn::If": ["CreatesWebhookSecret", {"Ref": "WebhookKeysSecret"}, {"Ref": "WebhookKeysSecretArn"}]
}


def functions():
    return {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}


def statements(function):
    return [
        statement
        for policy in function["Properties"].get("Policies", [])
        for statement in policy["Statement"]
    ]


def secrets_readable_by(function):
    readable = []
    for statement in statements(function):
        if "secretsmanager:GetSecretValue" in json.dumps(statement["Action"]):
            resource = statement["Resource"]
            readable += resource if isinstance(resource, list) else [resource]
    return readable


def environment(function):
    return (function["Properties"].get("Environment") or {}).get("Variables") or {}


def condition_of(resource_id):
    return RESOURCES[resource_id].get("Condition")


class TestCustomDomain:
    def test_the_domain_its_mapping_and_dns_record_exist_only_when_a_domain_is_given(self):
        assert RESOURCES["ApiDomainName"]["Type"] == "AWS::ApiGatewayV2::DomainName"
        assert condition_of("ApiDomainName") == condition_of("ApiMapping") == "HasDomain"
        assert condition_of("ApiDomainRecord") == "HasDomainDns"
        assert RAW["Conditions"]["HasDomain"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]}
        assert RAW["Conditions"]["HasDomainDns"] == {
            "Fn::And": [
                {"Condition": "HasDomain"},
                {"Fn::Not": [{"Fn::Equals": [{"Ref": "HostedZoneId"}, ""]}]},
            ]
        }
        for name in DOMAIN:
            assert RAW["Parameters"][name]["Default"] == ""

    def test_the_domain_uses_the_certificate_and_maps_the_apis_default_stage(self):
        domain = RESOURCES["ApiDomainName"]["Properties"]
        assert domain["DomainName"] == {"Ref": "DomainName"}
        [configuration] = domain["DomainNameConfigurations"]
        assert configuration["CertificateArn"] == {"Ref": "CertificateArn"}
        assert configuration["EndpointType"] == "REGIONAL"
        assert configuration["SecurityPolicy"] == "TLS_1_2"
        mapping = RESOURCES["ApiMapping"]
        assert mapping["Properties"] == {
            "ApiId": {"Ref": "HttpApi"},
            "DomainName": {"Ref": "ApiDomainName"},
            "Stage": "$default",
        }
        # SAM generates the stage; the mapping must wait for it
        assert mapping["DependsOn"] == "HttpApiApiGatewayDefaultStage"

    def test_the_dns_record_aliases_the_domains_regional_endpoint(self):
        record = RESOURCES["ApiDomainRecord"]["Properties"]
        assert record["HostedZoneId"] == {"Ref": "HostedZoneId"}
        assert record["Name"] == {"Ref": "DomainName"}
        assert record["Type"] == "A"
        assert record["AliasTarget"] == {
            "DNSName": {"Fn::GetAtt": ["ApiDomainName", "RegionalDomainName"]},
            "HostedZoneId": {"Fn::GetAtt": ["ApiDomainName", "RegionalHostedZoneId"]},
        }

    def test_callback_urls_use_the_domain_when_set_and_an_explicit_public_base_url_wins(self):
        plain = load_template(TEMPLATE)
        with_domain = load_template(TEMPLATE, DOMAIN)
        explicit = load_template(TEMPLATE, {**DOMAIN, "PublicBaseUrl": "https://callbacks.example.mn"})
        for name in ("CreatePaymentFunction", "QPayWebhookFunction"):
            assert plain.function(name).environment["PUBLIC_BASE_URL"] == ""
            assert with_domain.function(name).environment["PUBLIC_BASE_URL"] == "https://pay.example.mn"
            assert explicit.function(name).environment["PUBLIC_BASE_URL"] == "https://callbacks.example.mn"

    def test_the_outputs_name_the_callback_base_and_the_dns_target(self):
        outputs = RAW["Outputs"]
        assert outputs["ApiDomainTarget"]["Condition"] == "HasDomain"
        assert "CallbackBaseUrl" in outputs


class TestSecrets:
    def test_credentials_and_webhook_keys_are_two_secrets_kept_when_the_stack_goes(self):
        for name in ("QPayCredentialsSecret", "WebhookKeysSecret"):
            secret = RESOURCES[name]
            assert secret["Type"] == "AWS::SecretsManager::Secret"
            assert secret["DeletionPolicy"] == "Retain"
            assert secret["UpdateReplacePolicy"] == "Retain"

    def test_the_credentials_secret_is_a_fixed_placeholder_never_regenerated(self):
        properties = RESOURCES["QPayCredentialsSecret"]["Properties"]
        assert "GenerateSecretString" not in properties
        assert json.loads(properties["SecretString"]) == {
            "client_id": "TEST_MERCHANT",
            "client_secret": "change-me",
        }

    def test_the_webhook_secret_holds_versioned_keys_starting_with_a_generated_k1(self):
        generator = RESOURCES["WebhookKeysSecret"]["Properties"]["GenerateSecretString"]
        assert json.loads(generator["SecretStringTemplate"]) == {"current_key_id": "k1"}
        assert generator["GenerateStringKey"] == "k1"
        assert generator["PasswordLength"] >= 32

    def test_existing_secrets_can_be_passed_in_so_a_new_stack_keeps_them(self):
        assert condition_of("QPayCredentialsSecret") == "CreatesQPaySecret"
        assert condition_of("WebhookKeysSecret") == "CreatesWebhookSecret"
        assert RAW["Outputs"]["QPayCredentialsSecretArn"]["Value"] == QPAY_SECRET
        assert RAW["Outputs"]["WebhookKeysSecretArn"]["Value"] == WEBHOOK_SECRET

    def test_no_secret_is_handed_to_every_function(self):
        globals_env = RAW["Globals"]["Function"]["Environment"]["Variables"]
        assert "QPAY_SECRET_ARN" not in globals_env
        assert "WEBHOOK_SECRET_ARN" not in globals_env

    @pytest.mark.parametrize(
        ("function", "qpay", "webhook"),
        [
            ("CreatePaymentFunction", True, True),
            ("QPayWebhookFunction", True, True),
            ("GetPaymentFunction", True, False),
            ("CancelPaymentFunction", True, False),
            ("ReconcileWorkerFunction", True, False),
            ("ExpireFunction", True, False),
            ("EbarimtFunction", True, False),
            ("ReconcileFunction", False, False),
            ("ListPaymentsFunction", False, False),
            ("OpenApiFunction", False, False),
            ("AdminFunction", True, True),
            ("CheckoutFunction", False, False),
        ],
    )
    def test_each_function_gets_and_may_read_only_the_secrets_it_uses(self, function, qpay, webhook):
        resource = functions()[function]
        env = environment(resource)
        readable = secrets_readable_by(resource)
        assert ("QPAY_SECRET_ARN" in env) is qpay
        assert ("WEBHOOK_SECRET_ARN" in env) is webhook
        assert (QPAY_SECRET in readable) is qpay
        assert (WEBHOOK_SECRET in readable) is webhook
        if qpay:
            assert env["QPAY_SECRET_ARN"] == QPAY_SECRET
        if webhook:
            assert env["WEBHOOK_SECRET_ARN"] == WEBHOOK_SECRET
        assert len(readable) == qpay + webhook

    def test_every_function_is_in_the_table_above(self):
        tested = {
            "CreatePaymentFunction",
            "QPayWebhookFunction",
            "GetPaymentFunction",
            "CancelPaymentFunction",
            "ReconcileWorkerFunction",
            "ExpireFunction",
            "EbarimtFunction",
            "ReconcileFunction",
            "ListPaymentsFunction",
            "OpenApiFunction",
            "AdminFunction",
            "CheckoutFunction",
        }
        # A new function must be placed in the secret table, so it gets no secret by accident
        assert {name for name, f in functions().items() if secrets_readable_by(f)} <= tested


class TestReconcileOnSqs:
    def test_the_dispatcher_runs_every_minute_never_retried_and_only_queues(self):
        dispatcher = functions()["ReconcileFunction"]["Properties"]
        schedule = dispatcher["Events"]["Schedule"]["Properties"]
        assert schedule["Schedule"] == "rate(1 minute)"
        assert schedule["RetryPolicy"]["MaximumRetryAttempts"] == 0
        assert dispatcher["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
        env = dispatcher["Environment"]["Variables"]
        assert env["RECONCILE_QUEUE_URL"] == {"Ref": "ReconcileQueue"}
        assert env["RECONCILE_PRIORITY_QUEUE_URL"] == {"Ref": "ReconcilePriorityQueue"}
        actions = {
            json.dumps(s["Action"]): s["Resource"] for s in statements(functions()["ReconcileFunction"])
        }
        assert actions['["sqs:SendMessage", "sqs:GetQueueAttributes"]'] == [
            {"Fn::GetAtt": ["ReconcileQueue", "Arn"]},
            {"Fn::GetAtt": ["ReconcilePriorityQueue", "Arn"]},
        ]

    def test_expire_and_ebarimt_schedules_do_not_retry_into_overlapping_runs(self):
        for name in ("ExpireFunction", "EbarimtFunction"):
            properties = functions()[name]["Properties"]
            assert properties["Events"]["Schedule"]["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
            assert properties["EventInvokeConfig"]["MaximumRetryAttempts"] == 0

    def test_the_worker_consumes_both_queues_with_partial_batch_responses_and_bounded_concurrency(self):
        events = functions()["ReconcileWorkerFunction"]["Properties"]["Events"]
        by_queue = {
            event["Properties"]["Queue"]["Fn::GetAtt"][0]: event["Properties"] for event in events.values()
        }
        assert set(by_queue) == {"ReconcileQueue", "ReconcilePriorityQueue"}
        for properties in by_queue.values():
            assert {event["Type"] for event in events.values()} == {"SQS"}
            assert properties["BatchSize"] == 10
            assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert by_queue["ReconcileQueue"]["ScalingConfig"]["MaximumConcurrency"] == {
            "Ref": "ReconcileWorkerMaxConcurrency"
        }
        assert by_queue["ReconcilePriorityQueue"]["ScalingConfig"]["MaximumConcurrency"] >= 2
        parameter = RAW["Parameters"]["ReconcileWorkerMaxConcurrency"]
        assert parameter["MinValue"] >= 2  # SQS event sources accept 2..1000

    def test_both_queues_dead_letter_after_a_few_receives_and_outlast_the_worker(self):
        worker_timeout = functions()["ReconcileWorkerFunction"]["Properties"]["Timeout"]
        for name in ("ReconcileQueue", "ReconcilePriorityQueue"):
            queue = RESOURCES[name]["Properties"]
            assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
                "Fn::GetAtt": ["ReconcileDeadLetterQueue", "Arn"]
            }
            assert 3 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 10
            # AWS: at least six times the function timeout for an event source mapping
            assert queue["VisibilityTimeout"] >= 6 * worker_timeout
        assert RESOURCES["ReconcileDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600

    def test_alarms_watch_the_age_of_the_oldest_message_and_arrivals_in_the_dead_letter_queue(self):
        for queue in ("ReconcileQueue", "ReconcilePriorityQueue"):
            queue_name = {"Fn::GetAtt": [queue, "QueueName"]}
            [age] = alarms_on("AWS/SQS", "ApproximateAgeOfOldestMessage", QueueName=queue_name)
            assert RESOURCES[age]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
            assert RESOURCES[age]["Properties"]["Threshold"] < 900  # before the 15-minute lease ends
        dead_letters = {"Fn::GetAtt": ["ReconcileDeadLetterQueue", "QueueName"]}
        [alarm] = alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=dead_letters)
        assert arrivals_alarm(alarm)

    def test_the_local_stack_reads_the_same_wiring(self):
        template = load_template(TEMPLATE)
        assert {(s.queue_name, s.report_batch_item_failures) for s in template.sqs_event_sources} == {
            ("ReconcileQueue", True),
            ("ReconcilePriorityQueue", True),
        }
        assert template.queues["ReconcileQueue"].dead_letter_queue_name == "ReconcileDeadLetterQueue"
        env = template.function("ReconcileFunction").environment
        assert env["RECONCILE_QUEUE_URL"].endswith("/123456789012/ReconcileQueue")


class TestWebhookProtection:
    def test_the_webhook_has_reserved_concurrency_from_a_parameter_that_can_be_turned_off(self):
        webhook = functions()["QPayWebhookFunction"]["Properties"]
        assert webhook["ReservedConcurrentExecutions"] == {
            "Fn::If": [
                "HasWebhookReservation",
                {"Ref": "WebhookReservedConcurrency"},
                {"Ref": "AWS::NoValue"},
            ]
        }
        assert RAW["Parameters"]["WebhookReservedConcurrency"]["Default"] > 0
        assert load_template(TEMPLATE).function("QPayWebhookFunction").reserved_concurrency == 20
        off = load_template(TEMPLATE, {"WebhookReservedConcurrency": "0"})
        assert off.function("QPayWebhookFunction").reserved_concurrency is None

    def test_routes_publish_detailed_metrics(self):
        settings = RESOURCES["HttpApi"]["Properties"]["DefaultRouteSettings"]
        assert settings["DetailedMetricsEnabled"] is True

    def test_the_webhook_alarm_is_the_share_of_callbacks_its_two_routes_answer_5xx(self):
        alarm = RESOURCES["Webhook5xxRateAlarm"]["Properties"]
        [rate] = [metric for metric in alarm["Metrics"] if "Expression" in metric]
        assert rate["ReturnData"] is True
        read = alarm_metrics(RESOURCES["Webhook5xxRateAlarm"])
        assert {(metric, dims["Route"]) for _, metric, dims in read} == {
            (metric, route)
            for metric in ("5xx", "Count")
            for route in ("GET /webhooks/qpay", "POST /webhooks/qpay")
        }
        # A rate of the callbacks, with a minimum count, over 2 of 3 windows: one QPay timeout
        # that reconcile absorbs is not a page
        expression = rate["Expression"]["Fn::Sub"]
        assert "100 * (FILL(get5xx, 0) + FILL(post5xx, 0)) / (FILL(gets, 0) + FILL(posts, 0))" in expression
        assert ">= ${FunctionFailuresMinimum}" in expression
        assert alarm["Threshold"] == {"Ref": "Webhook5xxRatePercent"}
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


class TestDataLayout:
    def test_by_user_projects_only_what_the_list_route_returns(self):
        table = RESOURCES["SessionsTable"]["Properties"]
        [by_user] = [index for index in table["GlobalSecondaryIndexes"] if index["IndexName"] == "by_user"]
        projection = by_user["Projection"]
        assert projection["ProjectionType"] == "INCLUDE"
        assert tuple(projection["NonKeyAttributes"]) == BY_USER_ATTRIBUTES
        for heavy in ("qr_image", "qr_text", "deeplinks", "items", "metadata"):
            assert heavy not in projection["NonKeyAttributes"]

    def test_every_index_stays_within_dynamodbs_projection_limits_and_projects_no_version(self):
        # DynamoDB refuses more than 20 NonKeyAttributes per index (DynamoDB Local does not).
        table = RESOURCES["SessionsTable"]["Properties"]
        projected = [
            index["Projection"].get("NonKeyAttributes", []) for index in table["GlobalSecondaryIndexes"]
        ]
        assert max(len(attributes) for attributes in projected) <= 20
        assert sum(len(attributes) for attributes in projected) <= 100
        # `version` changes on every write: projecting it would write the index each time.
        assert all("version" not in attributes for attributes in projected)

    def test_the_pynamodb_index_model_projects_the_same_and_a_session_can_be_read_from_it(self):
        assert SessionItem.by_user.Meta.projection.non_key_attributes == list(BY_USER_ATTRIBUTES)
        keys = {"session_id", "user_id", "created_at"}
        required = {name for name, field in PaymentSession.model_fields.items() if field.is_required()}
        assert required <= keys | set(BY_USER_ATTRIBUTES)

    def test_the_layer_pins_boto3_and_botocore_as_one_pair(self):
        pins = {}
        for line in (ROOT / "layers/qpay_common/requirements.txt").read_text().splitlines():
            match = re.match(r"^(boto3|botocore)==([0-9.]+)$", line.strip())
            if match:
                pins[match.group(1)] = match.group(2)
        assert set(pins) == {"boto3", "botocore"}
        assert pins["boto3"] == pins["botocore"]


# Launch readiness (issue 10): logs, alarms, dashboard, SnapStart, event delivery, stages.

HTTP_FUNCTIONS = {
    name
    for name, function in functions().items()
    if any(event["Type"] == "HttpApi" for event in (function["Properties"].get("Events") or {}).values())
}
MERCHANT_ENDPOINT = {
    "MerchantEndpointUrl": "https://orders.shop.example/qpay/events",
    "MerchantEndpointApiKeySecretArn": "arn:aws:secretsmanager:ap-east-1:123456789012:secret:merchant-AbCdEf",
}


def of_type(resource_type):
    return {name: r for name, r in RESOURCES.items() if r["Type"] == resource_type}


def alarm_metrics(alarm):
    """(namespace, metric name, dimensions) of every metric an alarm reads, math included."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        stats = [
            {
                "Namespace": properties["Namespace"],
                "MetricName": properties["MetricName"],
                "Dimensions": properties.get("Dimensions", []),
            }
        ]
    else:
        stats = [m["MetricStat"]["Metric"] for m in properties["Metrics"] if "MetricStat" in m]
    return [
        (s["Namespace"], s["MetricName"], {d["Name"]: as_ref(d["Value"]) for d in s.get("Dimensions", [])})
        for s in stats
    ]


def as_ref(value):
    """`!Sub "${Name}"` is `!Ref Name` to CloudFormation: the Fn::ForEach loops write the first."""
    text = value.get("Fn::Sub") if isinstance(value, dict) and set(value) == {"Fn::Sub"} else None
    if isinstance(text, str) and re.fullmatch(r"\$\{[A-Za-z0-9]+\}", text):
        return {"Ref": text[2:-1]}
    return value


def arrivals_alarm(name):
    """An alarm that fires when messages arrive (the depth rises), not while they wait."""
    properties = RESOURCES[name]["Properties"]
    [expression] = [metric["Expression"] for metric in properties["Metrics"] if "Expression" in metric]
    return (
        "DIFF(FILL(" in expression
        and properties["Threshold"] == 0
        and properties["ComparisonOperator"] == "GreaterThanThreshold"
        and properties["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    )


def alarms_on(namespace, metric, **dimensions):
    return [
        name
        for name, alarm in of_type("AWS::CloudWatch::Alarm").items()
        if any(
            (ns, mn) == (namespace, metric) and all(dims.get(k) == v for k, v in dimensions.items())
            for ns, mn, dims in alarm_metrics(alarm)
        )
    ]


def emitted_metrics(emit):
    """Each metric the code emits while `emit` runs (EMF printed to stdout, metrics flushed at
    the end as an invocation's are), by name: the dimensions CloudWatch gets for it."""
    import contextlib
    import io

    from qpay_common.observability import metrics

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics.log_metrics(lambda event, context: emit())({}, None)
    found = {}
    for line in out.getvalue().splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            dimensions = directive["Dimensions"][0] if directive["Dimensions"] else []
            for metric in directive["Metrics"]:
                found[metric["Name"]] = {name: document[name] for name in dimensions}
    return found


def metric_names_emitted_by_the_payment_flows():
    """Every metric name the use cases and the QPay client emit over the flows an operator
    watches: created, paid, paid late, under-paid, Ebarimt registered, failed, given up and
    cancelled on refund, an event the bus refused, reconcile's backlog, QPay answering and not."""
    import requests

    from qpay_common.adapters.aws.secrets import QPayCredentials
    from qpay_common.adapters.qpay.errors import QPayError, QPayRejected, QPayTransportError
    from qpay_common.composition import Graph
    from tests.fakes import FakeCache, FixedClock, World, unit_settings

    def flows():
        world = World(EBARIMT_ENABLED="true")
        paid = world.processed()
        world.jobs.ebarimt(60)  # registered
        world.refunds.refund("ops", paid.session_id, note="returned")  # refunded, receipt cancelled
        late = world.create()
        world.cancellation.cancel("alice", late.session_id)
        world.qpay.pay(late.invoice_id or "", late.amount)
        world.settlement.confirm_with_qpay(world.stored(late.session_id), source="reconcile")
        short = world.create()
        world.qpay.pay(short.invoice_id or "", short.amount - 1)
        world.settlement.confirm_with_qpay(short, source="webhook")  # AmountMismatch
        refused = world.create()
        world.qpay.pay(refused.invoice_id or "", refused.amount)
        world.publisher.fail_next = 1
        world.settlement.confirm_with_qpay(refused, source="webhook")  # EventPublishFailed
        failing = world.processed()
        world.qpay.fail_next["create_ebarimt"] = QPayTransportError("down")
        world.jobs.ebarimt(60)  # failed, retried later
        world.clock.advance(hours=1)
        world.qpay.fail_next["create_ebarimt"] = QPayRejected("no", code="EBARIMT_NOT_REGISTERED")
        world.jobs.ebarimt(60)  # rejected
        world.processed()
        world.qpay.down["create_ebarimt"] = QPayTransportError("down")
        world.jobs.ebarimt(60)  # failed, retried later
        world.clock.advance(hours=73)
        world.jobs.ebarimt(60)  # given up: past the retry window
        del world.qpay.down["create_ebarimt"]
        world.refunds.refund("ops", failing.session_id, note="x")
        cancel_failing = world.processed()
        world.jobs.ebarimt(60)
        world.qpay.fail_next["cancel_ebarimt"] = QPayTransportError("down")
        world.refunds.refund("ops", cancel_failing.session_id, note="x")  # receipt cancel failed
        world.create()
        world.clock.advance(minutes=5)
        world.reconcile()  # the backlog gauges

        answers = iter([requests.ConnectionError("down")])

        def qpay_answers(self, method, url, **kwargs):
            failure = next(answers, None)
            if failure is not None:
                raise failure
            response = requests.Response()
            response.status_code, response._content = 200, b'{"access_token": "t", "expires_in": 3600}'
            return response

        real = Graph(
            settings=unit_settings(QPAY_MAX_ATTEMPTS="1"),
            cache=FakeCache(FixedClock()),
            qpay_credentials=QPayCredentials(client_id="merchant", client_secret="secret"),
        )
        original = requests.Session.request
        requests.Session.request = qpay_answers  # type: ignore[method-assign]
        try:
            with contextlib.suppress(QPayError):
                real.qpay.check_payment("inv-1")  # QPayErrors
            with contextlib.suppress(QPayError):
                real.qpay.check_payment("inv-1")  # answered: QPayCalls, QPayLatency
        finally:
            requests.Session.request = original  # type: ignore[method-assign]

    import contextlib

    return set(emitted_metrics(flows))


def emitted_dimensions(emit):
    """The dimension names CloudWatch gets for a metric the code emits (EMF printed to stdout)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        emit()
    [line] = [json.loads(line) for line in out.getvalue().splitlines() if '"_aws"' in line]
    [dimensions] = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    return {name: line[name] for name in dimensions}


class TestLogs:
    def test_every_function_logs_json_to_its_own_group_kept_log_retention_days(self):
        assert RAW["Parameters"]["LogRetentionDays"]["Default"] == 30
        groups = []
        for name, function in functions().items():
            group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup", name
            assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
            groups.append(group)
        assert len(groups) == len(set(groups)) == 12
        logging = RAW["Globals"]["Function"]["LoggingConfig"]
        assert logging["LogFormat"] == "JSON"
        assert logging["SystemLogLevel"] == {"Ref": "SystemLogLevel"}
        assert "ApplicationLogLevel" in logging

    def test_lambda_never_drops_the_metric_lines_whatever_the_log_level(self):
        # EMF lines carry no level, which Lambda reads as INFO: the application level stays at
        # INFO or below for every LogLevel, and Powertools filters the rest itself.
        levels = RAW["Mappings"]["LambdaLogLevels"]
        assert set(levels) == set(RAW["Parameters"]["LogLevel"]["AllowedValues"])
        assert {level["Application"] for level in levels.values()} <= {"DEBUG", "INFO"}
        assert RAW["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == {
            "Ref": "LogLevel"
        }

    def test_log_groups_are_named_by_stage(self):
        prod = Resolver(RAW, {"Stage": "prod"})
        name = prod.resolve(RESOURCES["CreatePaymentLogGroup"]["Properties"]["LogGroupName"])
        assert name.startswith("/qpay-payments/prod/")

    def test_the_api_writes_json_access_logs_without_query_strings_or_personal_data(self):
        settings = RESOURCES["HttpApi"]["Properties"]["AccessLogSettings"]
        group = settings["DestinationArn"]["Fn::GetAtt"][0]
        assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        line = json.loads(settings["Format"])
        assert {"requestId", "routeKey", "status", "latencyMs", "integrationError"} <= set(line)
        # Callback URLs carry their token in the query string; IPs and JWT claims are personal
        for never in (
            "$context.path",
            "querystring",
            "sourceIp",
            "claims",
            '$context.identity.user"',
            "$context.identity.caller",
        ):
            assert never not in settings["Format"]


class TestAlarms:
    def test_every_function_has_an_errors_and_a_throttles_alarm_to_the_alarm_topic(self):
        for name in functions():
            errors = alarms_on("AWS/Lambda", "Errors", FunctionName={"Ref": name})
            throttles = alarms_on("AWS/Lambda", "Throttles", FunctionName={"Ref": name})
            assert errors, name
            assert throttles, name
            for alarm in errors + throttles:
                assert RESOURCES[alarm]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    @pytest.mark.parametrize("kind", ["Errors", "Throttles"])
    def test_function_alarms_are_rates_over_several_windows_with_a_minimum_count(self, kind):
        for name in functions():
            [alarm] = alarms_on("AWS/Lambda", kind, FunctionName={"Ref": name})
            properties = RESOURCES[alarm]["Properties"]
            # The rate's denominator is the function's own invocations
            assert ("AWS/Lambda", "Invocations", {"FunctionName": {"Ref": name}}) in alarm_metrics(
                RESOURCES[alarm]
            )
            [rate] = [
                metric["Expression"]["Fn::Sub"] for metric in properties["Metrics"] if "Expression" in metric
            ]
            assert f"FILL({kind.lower()}, 0) >= ${{FunctionFailuresMinimum}}" in rate, alarm
            assert "100 * FILL(" in rate, alarm
            assert (properties["EvaluationPeriods"], properties["DatapointsToAlarm"]) == (3, 2), alarm
            assert properties["Threshold"]["Ref"] == f"Function{kind[:-1]}RatePercent"

    def test_failing_creates_page_at_any_traffic_level(self):
        alarm = RESOURCES["CreatePaymentFailingAlarm"]
        assert {(metric, dims["Route"]) for _, metric, dims in alarm_metrics(alarm)} == {
            ("5xx", "POST /payments"),
            ("Count", "POST /payments"),
        }
        properties = alarm["Properties"]
        [rate] = [metric["Expression"] for metric in properties["Metrics"] if "Expression" in metric]
        # One request in the window is enough (Api5xxRateAlarm needs 20); two windows running
        assert rate == "IF(FILL(creates, 0) > 0, 100 * FILL(failed, 0) / creates, 0)"
        assert (properties["EvaluationPeriods"], properties["DatapointsToAlarm"]) == (2, 2)
        assert properties["Threshold"] == {"Ref": "CreateFailureRatePercent"}

    def test_dynamodb_throttles_of_every_table_raise_one_alarm(self):
        for table in ("SessionsTable", "OrdersTable", "CacheTable"):
            for kind in ("ReadThrottleEvents", "WriteThrottleEvents"):
                assert alarms_on("AWS/DynamoDB", kind, TableName={"Ref": table}) == ["DynamoDbThrottlesAlarm"]

    def test_the_api_5xx_rate_and_p99_latency_are_alarmed(self):
        rate = RESOURCES["Api5xxRateAlarm"]["Properties"]
        assert alarm_metrics(RESOURCES["Api5xxRateAlarm"]) == [
            ("AWS/ApiGateway", "5xx", {"ApiId": {"Ref": "HttpApi"}, "Stage": "$default"}),
            ("AWS/ApiGateway", "Count", {"ApiId": {"Ref": "HttpApi"}, "Stage": "$default"}),
        ]
        assert "100 * FILL(errors, 0) / requests" in rate["Metrics"][0]["Expression"]
        latency = RESOURCES["ApiLatencyAlarm"]["Properties"]
        assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p99")

    def test_the_payment_check_failure_rate_reads_what_a_failed_payment_check_emits(self, monkeypatch):
        import requests

        from qpay_common.adapters.aws.secrets import QPayCredentials
        from qpay_common.adapters.qpay.errors import QPayError
        from qpay_common.composition import Graph
        from tests.fakes import FakeCache, FixedClock, unit_settings

        def no_answer(*args, **kwargs):
            raise requests.ConnectionError("QPay is down")

        # Given the QPay client as the functions build it, and a QPay that does not answer
        monkeypatch.setattr(requests.Session, "request", no_answer)
        graph = Graph(
            settings=unit_settings(QPAY_MAX_ATTEMPTS="1"),
            cache=FakeCache(FixedClock()),
            qpay_credentials=QPayCredentials(client_id="merchant", client_secret="secret"),
        )

        # When a payment check fails
        def failed_check():
            with pytest.raises(QPayError):
                graph.qpay.check_payment("inv-1")

        emitted = emitted_metrics(failed_check)

        # Then the alarm's numerator and denominator are exactly what was emitted
        [(_, failures, failed), (_, calls, checks)] = alarm_metrics(RESOURCES["PaymentCheckFailureAlarm"])
        assert (failures, calls) == ("QPayErrors", "QPayCalls")
        assert emitted[failures] == failed
        assert emitted[calls] == checks

    def test_the_reconcile_backlog_alarms_read_what_the_dispatcher_publishes(self):
        from qpay_common.observability import metrics
        from qpay_common.usecases.jobs import JobSummary

        summary = JobSummary(job="reconcile", gauges={"ReconcileOldestDueSeconds": 5.0})
        metrics.clear_metrics()
        summary.publish()
        published = metrics.serialize_metric_set()
        metrics.clear_metrics()
        [(namespace, metric, dimensions)] = alarm_metrics(RESOURCES["ReconcileOldestDueAlarm"])
        assert (namespace, metric) == ("QPayPayments", "ReconcileOldestDueSeconds")
        assert dimensions == {"service": published["service"]}
        assert published["ReconcileOldestDueSeconds"] == [5.0]
        # A dispatcher that stopped running is an alarm too
        assert RESOURCES["ReconcileOldestDueAlarm"]["Properties"]["TreatMissingData"] == "breaching"

    def test_thresholds_a_merchant_tunes_are_parameters(self):
        for alarm in (
            "Api5xxRateAlarm",
            "ApiLatencyAlarm",
            "PaymentCheckFailureAlarm",
            "ReconcileOldestDueAlarm",
            "DynamoDbThrottlesAlarm",
            "CreatePaymentErrorsAlarm",
            "CreatePaymentThrottlesAlarm",
        ):
            threshold = RESOURCES[alarm]["Properties"]["Threshold"]
            assert threshold["Ref"] in RAW["Parameters"], alarm

    def test_the_dashboard_shows_only_metrics_the_code_emits(self):
        body = Resolver(RAW).resolve(RESOURCES["PaymentsDashboard"]["Properties"]["DashboardBody"])
        widgets = json.loads(body)["widgets"]
        titles = " / ".join(widget["properties"]["title"] for widget in widgets)
        for wanted in (
            "created, confirmed, fulfilled",
            "Confirmation source",
            "Late payments",
            "Ebarimt",
            "QPay errors",
            "QPay latency",
            "Cold starts",
            "Reconcile backlog",
        ):
            assert wanted in titles
        ours = {
            metric[1]
            for widget in widgets
            for metric in widget["properties"]["metrics"]
            if isinstance(metric[0], str) and metric[0] == "QPayPayments"
        }
        powertools = {"ColdStart"}
        emitted = metric_names_emitted_by_the_payment_flows()
        for metric in ours - powertools:
            assert metric in emitted, f"the dashboard shows {metric}, which no code emits"


class TestSnapStart:
    def test_http_functions_publish_an_alias_with_snapstart_and_the_others_do_not(self):
        assert len(HTTP_FUNCTIONS) == 8
        for name, function in functions().items():
            properties = function["Properties"]
            if name in HTTP_FUNCTIONS:
                assert properties["SnapStart"] == {"ApplyOn": "PublishedVersions"}, name
                assert properties["AutoPublishAlias"] == "live", name
            else:
                assert "SnapStart" not in properties, name
                assert "AutoPublishAlias" not in properties, name
        assert RAW["Globals"]["Function"]["Runtime"] >= "python3.12"

    def test_sam_points_every_route_and_its_permission_at_the_alias(self):
        transformed = sam_transform()
        [api] = [r for r in transformed.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
        uris = [
            json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
            for operations in api["Properties"]["Body"]["paths"].values()
            for operation in operations.values()
        ]
        assert uris
        assert all(re.search(r"\$\{[A-Za-z]+FunctionAliaslive\}", uri) for uri in uris), uris
        permissions = [r for r in transformed.values() if r["Type"] == "AWS::Lambda::Permission"]
        http_permissions = [
            p for p in permissions if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
        ]
        assert http_permissions
        assert all(p["Properties"]["FunctionName"]["Ref"].endswith("Aliaslive") for p in http_permissions)

    def test_handlers_open_no_connection_and_start_no_thread_at_import(self):
        # What runs at import is in the snapshot every restored environment shares: a socket or
        # a thread started there would be shared (or dead) after a restore.
        import subprocess
        import sys

        probe = """
import importlib.util, socket, sys, threading
opened = []
socket.socket.connect = lambda self, *a: opened.append(a)
threading.Thread.start = lambda self: opened.append(self.name)
sys.path[:0] = [sys.argv[1], sys.argv[2]]
spec = importlib.util.spec_from_file_location("handler", sys.argv[3])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(len(opened))
"""
        template = load_template(TEMPLATE)
        for name in sorted(HTTP_FUNCTIONS):
            spec = template.function(name)
            module, _ = spec.module_and_attribute
            module_file = spec.code_uri.joinpath(*module.split(".")).with_suffix(".py")
            result = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    probe,
                    str(ROOT / "layers/qpay_common"),
                    str(spec.code_uri),
                    str(module_file),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
                env={
                    "POWERTOOLS_SERVICE_NAME": "qpay-payments",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "PATH": "/usr/bin:/bin",
                },
            )
            assert result.stdout.strip().splitlines()[-1] == "0", (name, result.stdout)

    def test_retry_jitter_does_not_come_from_random_module_state(self, monkeypatch):
        # Environments restored from one snapshot share random's state; the jitter must come from
        # the OS, so the module-level functions are made to fail.
        import random

        from qpay_common.adapters.qpay.client import QPayTransport
        from qpay_common.adapters.qpay.errors import QPayTransportError

        class Unavailable:
            status_code, content = 503, b"{}"

            def json(self):
                return {}

        class AlwaysUnavailable:
            def request(self, *args, **kwargs):
                return Unavailable()

        for name in ("random", "uniform", "randint", "randrange", "choice", "gauss", "triangular"):
            monkeypatch.setattr(
                random, name, lambda *args, **kwargs: pytest.fail("jitter from random's state")
            )
        pauses: list[float] = []
        transport = QPayTransport(
            "http://qpay.test/v2",
            connect_timeout=1,
            read_timeout=1,
            max_attempts=4,
            budget_seconds=20,
            session=AlwaysUnavailable(),
            sleep=pauses.append,
        )

        with pytest.raises(QPayTransportError, match="503"):
            transport.send("POST", "/payment/check", idempotent=True)

        assert len(pauses) == 3
        assert all(pause >= 0 for pause in pauses)


def sam_transform(parameters=None, template=None):
    """template.yaml (or `template`) as SAM would deploy it: SAM's own translator, offline, in
    .venv-sam (it pins a pydantic older than the layer's), through tests/sam_transform.py."""
    import subprocess

    python = ROOT / ".venv-sam" / "bin" / "python"
    assert python.exists(), "SAM's venv is missing: run `make install` (make unit installs it)"
    result = subprocess.run(
        [
            str(python),
            str(ROOT / "tests" / "sam_transform.py"),
            json.dumps(parameters or {}),
            *([str(template)] if template else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


class TestEventDelivery:
    def test_the_bus_archives_every_payments_event_for_a_parameter_of_days(self):
        archive = RESOURCES["PaymentsArchive"]["Properties"]
        assert archive["SourceArn"] == {"Fn::GetAtt": ["PaymentsBus", "Arn"]}
        assert archive["EventPattern"] == {"source": ["qpay.payments"]}
        assert archive["RetentionDays"] == {"Ref": "EventArchiveRetentionDays"}
        assert RAW["Parameters"]["EventArchiveRetentionDays"]["Default"] > 0

    def test_completed_and_refunded_always_reach_the_merchant_queue_with_retries_and_a_dead_letter_queue(
        self,
    ):
        rule = Resolver(RAW).resolve(RESOURCES["MerchantEventsRule"]["Properties"])
        assert rule["EventPattern"] == {
            "source": ["qpay.payments"],
            "detail-type": ["PaymentCompleted", "PaymentRefunded"],
        }
        [queue] = rule["Targets"]
        assert queue["Arn"].endswith(":MerchantEventsQueue")
        assert queue["DeadLetterConfig"]["Arn"].endswith(":EventDeliveryDeadLetterQueue")
        assert queue["RetryPolicy"]["MaximumEventAgeInSeconds"] == 86400
        assert alarms_on(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            QueueName={"Fn::GetAtt": ["EventDeliveryDeadLetterQueue", "QueueName"]},
        )

    def test_a_merchant_consumer_that_is_down_pages_before_its_events_expire(self):
        [alarm] = alarms_on(
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            QueueName={"Fn::GetAtt": ["MerchantEventsQueue", "QueueName"]},
        )
        properties = RESOURCES[alarm]["Properties"]
        assert properties["Threshold"] == {"Ref": "MerchantEventsMaxAgeSeconds"}
        retention = RESOURCES["MerchantEventsQueue"]["Properties"]["MessageRetentionPeriod"]
        assert RAW["Parameters"]["MerchantEventsMaxAgeSeconds"]["Default"] < retention / 24
        assert RAW["Parameters"]["MerchantEventsMaxAgeSeconds"]["MaxValue"] <= retention
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    def test_events_eventbridge_could_neither_deliver_nor_dead_letter_page(self):
        rule_name = {"Fn::Select": [1, {"Fn::Split": ["|", {"Ref": "MerchantEventsRule"}]}]}
        for metric in ("FailedInvocations", "InvocationsFailedToBeSentToDlq"):
            [alarm] = alarms_on("AWS/Events", metric, EventBusName={"Ref": "PaymentsBus"}, RuleName=rule_name)
            assert RESOURCES[alarm]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    def test_both_event_schemas_say_how_to_dedupe(self):
        for detail_type in ("PaymentCompleted", "PaymentRefunded"):
            schema = json.loads((ROOT / "docs" / "events" / f"{detail_type}.schema.json").read_text())
            assert "detail-type" in schema["description"], detail_type
            assert "detail.order_id" in schema["description"], detail_type
            assert "MerchantEventsQueue" in schema["description"], detail_type

    API_DESTINATION_PARTS = (
        "MerchantConnection",
        "MerchantApiDestination",
        "MerchantApiDestinationRole",
        "MerchantEndpointDeadLetterQueue",
        "MerchantEndpointDeadLetterAlarm",
    )

    def test_without_a_merchant_endpoint_no_api_destination_is_created(self):
        resolver = Resolver(RAW)
        assert not any(resolver.resource_enabled(part) for part in self.API_DESTINATION_PARTS)
        assert len(resolver.resolve(RESOURCES["MerchantEventsRule"]["Properties"]["Targets"])) == 1

    def test_with_a_merchant_endpoint_the_api_destination_is_wired_with_its_own_dead_letter_queue(self):
        resolver = Resolver(RAW, MERCHANT_ENDPOINT)
        assert all(resolver.resource_enabled(part) for part in self.API_DESTINATION_PARTS)
        targets = resolver.resolve(RESOURCES["MerchantEventsRule"]["Properties"]["Targets"])
        [endpoint] = [t for t in targets if t["Id"] == "MerchantEndpoint"]
        assert endpoint["Arn"] == resolver.resolve({"Fn::GetAtt": ["MerchantApiDestination", "Arn"]})
        assert endpoint["RoleArn"] == resolver.resolve({"Fn::GetAtt": ["MerchantApiDestinationRole", "Arn"]})
        assert endpoint["DeadLetterConfig"]["Arn"].endswith(":MerchantEndpointDeadLetterQueue")
        assert endpoint["RetryPolicy"] == {"MaximumRetryAttempts": "185", "MaximumEventAgeInSeconds": 86400}
        destination = resolver.resolve(RESOURCES["MerchantApiDestination"]["Properties"])
        assert destination["InvocationEndpoint"] == MERCHANT_ENDPOINT["MerchantEndpointUrl"]
        assert destination["HttpMethod"] == "POST"
        connection = resolver.resolve(RESOURCES["MerchantConnection"]["Properties"])
        # The key is read from the merchant's secret at deploy time, never a parameter value
        assert connection["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyValue"] == (
            "{{resolve:secretsmanager:"
            + MERCHANT_ENDPOINT["MerchantEndpointApiKeySecretArn"]
            + ":SecretString:api_key}}"
        )
        role = resolver.resolve(RESOURCES["MerchantApiDestinationRole"]["Properties"])
        [statement] = role["Policies"][0]["PolicyDocument"]["Statement"]
        assert statement["Action"] == "events:InvokeApiDestination"
        # EventBridge may write to the endpoint's dead-letter queue, for this rule only
        policy = resolver.resolve(RESOURCES["EventDeliveryQueuePolicy"]["Properties"])
        assert any(q.endswith("/MerchantEndpointDeadLetterQueue") for q in policy["Queues"])
        # SAM passes it through as is, for CloudFormation to create only under its condition
        transformed = sam_transform(MERCHANT_ENDPOINT)
        assert all(
            transformed[part]["Condition"] == "HasMerchantEndpoint" for part in self.API_DESTINATION_PARTS
        )

    def test_an_endpoint_without_its_key_is_refused_by_a_rule(self):
        rule = RAW["Rules"]["MerchantEndpointNeedsItsKey"]
        assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MerchantEndpointUrl"}, ""]}]}
        assert "MerchantEndpointApiKeySecretArn" in json.dumps(rule["Assertions"])


class TestStages:
    def test_prod_protects_the_tables_from_deletion_and_dev_does_not(self):
        for stage, protected in (("prod", True), ("dev", False)):
            resolver = Resolver(RAW, {"Stage": stage})
            for table in ("SessionsTable", "OrdersTable", "CacheTable"):
                resolved = resolver.resolve(RESOURCES[table]["Properties"]["DeletionProtectionEnabled"])
                assert resolved is protected, (stage, table)

    def test_the_local_stack_still_reads_the_template_in_both_stages(self):
        for stage in ("dev", "prod"):
            template = load_template(TEMPLATE, {"Stage": stage})
            assert len(template.functions) == 12
            assert "MerchantEventsQueue" in template.queues

    def test_samconfig_has_a_dev_and_a_prod_environment(self):
        import tomllib

        config = tomllib.loads((ROOT / "samconfig.toml").read_text())
        for stage in ("dev", "prod"):
            deploy = config[stage]["deploy"]["parameters"]
            assert f"Stage={stage}" in deploy["parameter_overrides"]
            assert stage in config[stage]["global"]["parameters"]["stack_name"]
        assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True

    def test_the_ebarimt_settings_are_parameters_every_function_gets_and_samconfig_sets(self):
        import tomllib

        from qpay_common.settings import load_settings

        feeds = {
            "EbarimtEnabled": "EBARIMT_ENABLED",
            "EbarimtReceiverType": "EBARIMT_RECEIVER_TYPE",
            "EbarimtDistrictCode": "EBARIMT_DISTRICT_CODE",
            "EbarimtClassificationCode": "EBARIMT_CLASSIFICATION_CODE",
            "EbarimtMaxAgeHours": "EBARIMT_MAX_AGE_HOURS",
        }
        overrides = {
            "EbarimtReceiverType": "COMPANY",
            "EbarimtDistrictCode": "2301",
            "EbarimtMaxAgeHours": "24",
        }
        template = load_template(TEMPLATE, overrides)
        for function in template.functions.values():
            environment = function.environment
            for parameter, variable in feeds.items():
                expected = overrides.get(parameter, str(RAW["Parameters"][parameter]["Default"]))
                assert environment[variable] == expected, (function.name, variable)
        settings = load_settings(template.function("EbarimtFunction").environment)
        assert (settings.ebarimt_receiver_type, settings.ebarimt_district_code) == ("COMPANY", "2301")
        assert settings.ebarimt_max_age_hours == 24
        config = tomllib.loads((ROOT / "samconfig.toml").read_text())
        for stage in ("dev", "prod"):
            named = config[stage]["deploy"]["parameters"]["parameter_overrides"]
            for parameter in feeds:
                assert f"{parameter}=" in named, (stage, parameter)
            for pair in named.split():
                assert pair.split("=")[0] in RAW["Parameters"], pair


PROD_READY = {
    "Stage": "prod",
    "AlarmEmail": "ops@shop.mn",
    "JwtIssuer": "https://cognito-idp.ap-east-1.amazonaws.com/ap-east-1_AbCdEf",
    "JwtAudience": "1example23456789",
    "QPayInvoiceCode": "SHOP_INVOICE",
    "DomainName": "pay.shop.mn",
    "CertificateArn": "arn:aws:acm:ap-east-1:123456789012:certificate/abc",
}


def refused_by_rules(parameters):
    """What CloudFormation says when it refuses a deploy with these parameters (the template's
    Rules, evaluated as it evaluates them before creating anything)."""
    resolver = Resolver(RAW, parameters)
    refused = []
    for rule in RAW["Rules"].values():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        refused += [a["AssertDescription"] for a in rule["Assertions"] if not resolver.resolve(a["Assert"])]
    return refused


class TestProdRefusesPlaceholders:
    def test_a_prod_deploy_with_the_defaults_is_refused_for_each_placeholder(self):
        refused = refused_by_rules({"Stage": "prod"})
        for parameter in ("AlarmEmail", "JwtIssuer", "JwtAudience", "QPayInvoiceCode", "DomainName"):
            assert any(f"needs {parameter}" in message for message in refused), parameter

    @pytest.mark.parametrize(
        "parameter", ["AlarmEmail", "JwtIssuer", "JwtAudience", "QPayInvoiceCode", "DomainName"]
    )
    def test_each_placeholder_alone_is_enough_to_refuse_prod(self, parameter):
        default = RAW["Parameters"][parameter].get("Default", "")
        [message] = refused_by_rules({**PROD_READY, parameter: default})
        assert f"needs {parameter}" in message

    def test_prod_with_real_values_and_dev_with_the_defaults_deploy(self):
        assert refused_by_rules(PROD_READY) == []
        assert refused_by_rules({"Stage": "dev"}) == []

    def test_samconfig_prod_names_everything_the_rule_asks_for(self):
        config = (ROOT / "samconfig.toml").read_text()
        prod = config[config.index("# prod:") :]
        asserted = re.findall(
            r"\{\"Ref\": \"([A-Za-z]+)\"\}", json.dumps(RAW["Rules"]["ProdIsConfigured"]["Assertions"])
        )
        assert set(asserted) == {"AlarmEmail", "JwtIssuer", "JwtAudience", "QPayInvoiceCode", "DomainName"}
        for parameter in asserted:
            assert f"{parameter}=" in prod, parameter


def role_of(function_name):
    """SAM names a function's generated role <Function>Role."""
    return {"Fn::GetAtt": [f"{function_name}Role", "Arn"]}


def secret_policy_principals(policy_id):
    [statement] = RESOURCES[policy_id]["Properties"]["ResourcePolicy"]["Statement"]
    split = statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]["Fn::Split"]
    functions_joined, extra_joined = split[1]["Fn::Join"][1]
    return statement, functions_joined["Fn::Join"][1], extra_joined


class TestResourcePolicies:
    def test_only_the_functions_that_publish_may_put_events_on_the_bus(self):
        policy = RESOURCES["PaymentsBusPolicy"]["Properties"]
        assert policy["EventBusName"] == {"Ref": "PaymentsBus"}
        statement = policy["Statement"]
        assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
            "Deny",
            "*",
            "events:PutEvents",
        )
        publishers = [
            name
            for name, function in functions().items()
            if any("events:PutEvents" in json.dumps(s["Action"]) for s in statements(function))
        ]
        assert publishers
        assert statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [role_of(n) for n in publishers]
        # EventBridge itself (archive replays) is not denied
        assert statement["Condition"]["BoolIfExists"] == {"aws:PrincipalIsAWSService": "false"}

    @pytest.mark.parametrize(
        ("policy_id", "secret"),
        [("QPayCredentialsSecretPolicy", QPAY_SECRET), ("WebhookKeysSecretPolicy", WEBHOOK_SECRET)],
    )
    def test_only_the_functions_that_read_a_secret_may_read_it(self, policy_id, secret):
        properties = RESOURCES[policy_id]["Properties"]
        # On the secret in use, created or passed in, and kept when a stack that shares it goes
        assert properties["SecretId"] == secret
        assert properties["BlockPublicPolicy"] is True
        assert RESOURCES[policy_id]["DeletionPolicy"] == "Retain"
        statement, allowed, extra = secret_policy_principals(policy_id)
        assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
            "Deny",
            "*",
            "secretsmanager:GetSecretValue",
        )
        readers = [name for name, function in functions().items() if secret in secrets_readable_by(function)]
        assert readers
        assert allowed == [role_of(name) for name in readers]
        assert extra == {"Fn::Join": [",", {"Ref": "SecretReaderRoleArns"}]}

    def test_nobody_but_the_merchant_rule_sends_to_the_merchant_queues(self):
        policy = RESOURCES["EventDeliveryQueuePolicy"]["Properties"]["PolicyDocument"]
        [deny] = [statement for statement in policy["Statement"] if statement["Effect"] == "Deny"]
        assert (deny["Principal"], deny["Action"]) == ("*", "sqs:SendMessage")
        assert {"Fn::GetAtt": ["MerchantEventsQueue", "Arn"]} in deny["Resource"]
        assert deny["Condition"] == {
            "ArnNotEquals": {"aws:SourceArn": {"Fn::GetAtt": ["MerchantEventsRule", "Arn"]}}
        }


class TestTemplateLintSuppressions:
    def test_every_checkov_skip_names_its_check_and_says_why_in_one_line(self):
        skips = [
            (name, skip)
            for name, resource in RESOURCES.items()
            for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
        ]
        assert skips
        for name, skip in skips:
            assert re.fullmatch(r"CKV_AWS_[0-9]+", skip["id"]), name
            assert len(skip["comment"]) > 20, (name, skip["id"])
            assert "\n" not in skip["comment"], (name, skip["id"])

    def test_make_test_always_lints_the_template_and_make_lint_only_when_it_changed(self, tmp_path):
        import os
        import subprocess
        import time

        def planned(target: str, stamps: object) -> str:
            # What make would run (-n), with installs already done in `stamps`.
            return subprocess.run(
                ["make", "-n", target, f"STAMPS={stamps}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        # Given every install done, and the template linters passed after the template last changed
        stamps = tmp_path / "stamps"
        stamps.mkdir()
        later = time.time() + 3600
        for name in ("venv", "sam", "checkov", "npm", "java", "chromium", "template-lint"):
            (stamps / name).touch()
            os.utime(stamps / name, (later, later))

        # Then make lint skips cfn-lint and checkov, and make test runs them anyway
        assert "cfn-lint template.yaml" not in planned("lint", stamps)
        assert "ruff check" in planned("lint", stamps)
        for wanted in ("cfn-lint template.yaml", "bin/checkov -f"):
            assert wanted in planned("test", stamps)
        # And once the template changes, make lint runs them again
        (stamps / "template-lint").unlink()
        assert "cfn-lint template.yaml" in planned("lint", stamps)
        assert re.search(r"^cfn-lint==[0-9.]+$", (ROOT / "requirements/dev.txt").read_text(), re.M)
        assert re.search(r"^checkov==[0-9.]+$", (ROOT / "requirements/checkov.txt").read_text(), re.M)


class TestWrittenOnce:
    """The per-function log group and alarms are Fn::ForEach loops (AWS::LanguageExtensions):
    one definition, expanded by CloudFormation before SAM's transform."""

    def test_the_local_reader_expands_the_loops_exactly_as_sam_cli_does(self):
        import subprocess

        python = ROOT / ".venv-sam" / "bin" / "python"
        assert python.exists(), "SAM's venv is missing: run `make install` (make unit installs it)"
        result = subprocess.run(
            [str(python), str(ROOT / "tests" / "sam_transform.py"), "{}", "--loops-only"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        by_sam_cli = json.loads(result.stdout)
        assert by_sam_cli["Resources"] == RAW["Resources"]
        assert by_sam_cli.get("Conditions") == RAW.get("Conditions")
        assert by_sam_cli.get("Outputs") == RAW.get("Outputs")

    def test_every_function_is_in_the_loops_and_the_loops_name_only_functions(self):
        written = load_yaml(TEMPLATE, expand=False)
        assert written["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
        loops = {key: value for key, value in written["Resources"].items() if key.startswith("Fn::ForEach::")}
        assert loops
        names = {name.removesuffix("Function") for name in functions()}
        for key, (_, collection, _) in loops.items():
            assert set(collection) == names, key


# The template as CloudFormation runs it in prod: the loops expanded, then SAM's transform
# (tests/sam_transform.py). Each check lists what it finds missing, so a test can also show that
# taking an alarm or a policy away is caught.


def referenced_ids(node):
    """Logical ids a fragment refers to: Ref, GetAtt and ${Id} in a Sub."""
    if isinstance(node, list):
        return {name for item in node for name in referenced_ids(item)}
    if not isinstance(node, dict):
        return set()
    if set(node) == {"Ref"} and isinstance(node["Ref"], str):
        return {node["Ref"]}
    if set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        return {target[0] if isinstance(target, list) else target.split(".")[0]}
    if set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
        return set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text)) | referenced_ids(node["Fn::Sub"][1:])
    return {name for value in node.values() for name in referenced_ids(value)}


def watched(resources, namespace, metric):
    """{logical id: [alarm ids]} of what alarms read `metric` of, by the ids in the dimensions."""
    found: dict[str, list[str]] = {}
    for alarm_id, alarm in resources.items():
        if alarm["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = alarm["Properties"]
        stats = (
            [properties]
            if "MetricName" in properties
            else [m["MetricStat"]["Metric"] for m in properties["Metrics"] if "MetricStat" in m]
        )
        for stat in stats:
            if (stat["Namespace"], stat["MetricName"]) == (namespace, metric):
                for name in referenced_ids(stat.get("Dimensions", [])):
                    found.setdefault(name, []).append(alarm_id)
    return found


def of(resources, resource_type):
    return {name: r for name, r in resources.items() if r["Type"] == resource_type}


def rule_targets(properties):
    """A rule's targets, both branches of a conditional one (an Fn::If) included."""
    targets = []
    for target in properties.get("Targets") or []:
        branches = target["Fn::If"][1:] if set(target) == {"Fn::If"} else [target]
        targets += [branch for branch in branches if isinstance(branch, dict) and "Arn" in branch]
    return targets


def dead_letter_queues(resources):
    """Queues something sends its failures to: a redrive policy, a rule target, a function."""
    queues = set()
    for resource in resources.values():
        properties = resource.get("Properties") or {}
        redrive = properties.get("RedrivePolicy") or {}
        queues |= referenced_ids(redrive.get("deadLetterTargetArn"))
        for target in rule_targets(properties):
            queues |= referenced_ids((target.get("DeadLetterConfig") or {}).get("Arn"))
        queues |= referenced_ids((properties.get("DeadLetterConfig") or {}).get("TargetArn"))
    return queues & set(of(resources, "AWS::SQS::Queue"))


def alarms_without_action(resources):
    return sorted(
        name
        for name, alarm in of(resources, "AWS::CloudWatch::Alarm").items()
        if not alarm["Properties"].get("AlarmActions")
    )


def queues_without_alarm(resources):
    dead_letters = dead_letter_queues(resources)
    arrivals = watched(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    ages = watched(resources, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    missing = []
    for queue in of(resources, "AWS::SQS::Queue"):
        if queue in dead_letters:
            alarms = [a for a in arrivals.get(queue, []) if "DIFF(" in json.dumps(resources[a])]
        else:
            alarms = ages.get(queue, [])
        if not alarms:
            missing.append(queue)
    return sorted(missing)


def rules_without_alarm(resources):
    failed = watched(resources, "AWS/Events", "FailedInvocations")
    undeadlettered = watched(resources, "AWS/Events", "InvocationsFailedToBeSentToDlq")
    missing = []
    for name, rule in of(resources, "AWS::Events::Rule").items():
        if name not in failed:
            missing.append(f"{name}: FailedInvocations")
        has_dead_letters = any("DeadLetterConfig" in t for t in rule_targets(rule["Properties"]))
        if has_dead_letters and name not in undeadlettered:
            missing.append(f"{name}: InvocationsFailedToBeSentToDlq")
    return missing


def resources_without_policy(resources):
    secret_policies = of(resources, "AWS::SecretsManager::ResourcePolicy").values()
    bus_policies = of(resources, "AWS::Events::EventBusPolicy").values()
    missing = [
        secret
        for secret in of(resources, "AWS::SecretsManager::Secret")
        if not any(secret in referenced_ids(p["Properties"]["SecretId"]) for p in secret_policies)
    ]
    missing += [
        bus
        for bus in of(resources, "AWS::Events::EventBus")
        if not any(bus in referenced_ids(p["Properties"]["EventBusName"]) for p in bus_policies)
    ]
    return sorted(missing)


@pytest.fixture(scope="module")
def prod_stack():
    return sam_transform(PROD_READY)


class TestExpandedProdTemplate:
    def test_every_alarm_pages_someone(self, prod_stack):
        assert alarms_without_action(prod_stack) == []
        # ... the topic that ProdIsConfigured makes sure has an address
        subscription = prod_stack["AlarmEmailSubscription"]
        assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}
        assert Resolver(RAW, PROD_READY).condition(subscription["Condition"]) is True

    def test_every_queue_dead_letter_queue_and_event_rule_has_its_alarm(self, prod_stack):
        assert len(of(prod_stack, "AWS::SQS::Queue")) >= 6
        assert dead_letter_queues(prod_stack) >= {
            "ReconcileDeadLetterQueue",
            "ScheduledJobsDeadLetterQueue",
            "EventDeliveryDeadLetterQueue",
            "MerchantEventsConsumerDeadLetterQueue",
        }
        assert queues_without_alarm(prod_stack) == []
        # The schedules' rules are SAM's, the merchant rule ours
        assert len(of(prod_stack, "AWS::Events::Rule")) == 4
        assert rules_without_alarm(prod_stack) == []

    def test_every_secret_and_the_bus_have_a_policy(self, prod_stack):
        assert set(of(prod_stack, "AWS::SecretsManager::Secret")) == {
            "QPayCredentialsSecret",
            "WebhookKeysSecret",
        }
        assert resources_without_policy(prod_stack) == []

    def test_taking_an_alarm_or_a_policy_away_is_caught(self, prod_stack):
        import copy

        def without(*names, silence=None):
            resources = copy.deepcopy(prod_stack)
            for name in names:
                del resources[name]
            if silence:
                resources[silence]["Properties"].pop("AlarmActions")
            return resources

        assert alarms_without_action(without(silence="ReconcileBacklogAlarm")) == ["ReconcileBacklogAlarm"]
        assert queues_without_alarm(without("MerchantEventsAgeAlarm")) == ["MerchantEventsQueue"]
        assert queues_without_alarm(without("ReconcileDeadLetterAlarm")) == ["ReconcileDeadLetterQueue"]
        assert rules_without_alarm(without("ScheduleFailuresAlarm")) == [
            "ReconcileFunctionSchedule: FailedInvocations",
            "ExpireFunctionSchedule: FailedInvocations",
            "EbarimtFunctionSchedule: FailedInvocations",
        ]
        assert rules_without_alarm(without("MerchantEventsRuleFailuresAlarm")) == [
            "MerchantEventsRule: FailedInvocations",
            "MerchantEventsRule: InvocationsFailedToBeSentToDlq",
        ]
        assert resources_without_policy(without("WebhookKeysSecretPolicy")) == ["WebhookKeysSecret"]
        assert resources_without_policy(without("PaymentsBusPolicy")) == ["PaymentsBus"]
        # A dead-letter alarm on what waits (not what arrives) does not count
        waiting = copy.deepcopy(prod_stack)
        waiting["DeadLetterAlarm"]["Properties"]["Metrics"][0]["Expression"] = "FILL(dlq, 0)"
        assert queues_without_alarm(waiting) == ["ScheduledJobsDeadLetterQueue"]

    def test_http_functions_deploy_gradually_in_prod_and_roll_back_on_their_alarms(self, prod_stack):
        for name in sorted(HTTP_FUNCTIONS):
            alias = prod_stack[f"{name}Aliaslive"]
            group_id = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"]["Ref"]
            group = prod_stack[group_id]["Properties"]
            alarms = {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]}
            own = {
                alarm
                for metric in ("Errors", "Throttles")
                for alarm in alarms_on("AWS/Lambda", metric, FunctionName={"Ref": name})
            }
            assert own <= alarms, name
            assert group["AlarmConfiguration"]["Enabled"] is True
            assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
            config = Resolver(RAW, PROD_READY).resolve(group["DeploymentConfigName"])
            assert config == "CodeDeployDefault.LambdaCanary10Percent15Minutes", name
            dev = Resolver(RAW, {"Stage": "dev"}).resolve(group["DeploymentConfigName"])
            assert dev == "CodeDeployDefault.LambdaAllAtOnce", name
        assert "CreatePaymentFailingAlarm" in {
            a["Name"]["Ref"]
            for a in prod_stack["CreatePaymentFunctionDeploymentGroup"]["Properties"]["AlarmConfiguration"][
                "Alarms"
            ]
        }


def test_the_readme_alarm_table_gives_every_alarm_its_rule_and_threshold():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Alarms and what to do") : readme.index("### Deploying and rolling back")]
    rows = {line.split("|")[1]: line for line in table.splitlines() if line.startswith("| `")}
    per_function = {
        f"{name.removesuffix('Function')}{kind}Alarm"
        for name in functions()
        for kind in ("Errors", "Throttles")
    }
    for name, alarm in of_type("AWS::CloudWatch::Alarm").items():
        kind = "ErrorsAlarm" if name.endswith("ErrorsAlarm") else "ThrottlesAlarm"
        key = f"<Function>{kind}" if name in per_function else name
        [row] = [line for cell, line in rows.items() if f"`{key}`" in cell]
        threshold = alarm["Properties"]["Threshold"]
        if isinstance(threshold, dict):
            assert f"`{threshold['Ref']}`" in row, (name, threshold)
