"""template.yaml as AWS would deploy it: the custom domain, the two retained secrets and who may
read them, reconcile's SQS dispatcher and worker with their dead-letter queue and alarms, the
webhook's reserved concurrency and 5xx alarm, the by_user projection, and schedules that never
retry into overlapping runs. Read from the file (raw, and resolved with parameters as the local
stack resolves it), so the tests and the infrastructure cannot drift."""

import json
import re

import pytest

from local.template import load_template, load_yaml
from qpay_common.domain import PaymentSession
from qpay_common.tables import BY_USER_ATTRIBUTES, SessionItem
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

    def test_alarms_watch_the_age_of_the_oldest_message_and_the_dead_letter_queue(self):
        alarms = {
            name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"
        }

        def watching(metric, queue):
            return [
                alarm
                for alarm in alarms.values()
                if alarm.get("MetricName") == metric
                and alarm["Dimensions"]
                == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
            ]

        for queue in ("ReconcileQueue", "ReconcilePriorityQueue"):
            [age] = watching("ApproximateAgeOfOldestMessage", queue)
            assert age["AlarmActions"] == [{"Ref": "AlarmTopic"}]
            assert age["Threshold"] < 900  # before the dispatcher's 15-minute lease runs out
        [dead_letters] = watching("ApproximateNumberOfMessagesVisible", "ReconcileDeadLetterQueue")
        assert dead_letters["Threshold"] == 0
        assert dead_letters["ComparisonOperator"] == "GreaterThanThreshold"

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

    def test_the_webhook_alarm_adds_both_routes_5xx_to_the_functions_errors(self):
        alarm = RESOURCES["WebhookErrorsAlarm"]["Properties"]
        metrics = {metric["Id"]: metric for metric in alarm["Metrics"]}
        [expression] = [metric for metric in metrics.values() if "Expression" in metric]
        assert expression["ReturnData"] is True
        used = set(re.findall(r"[a-z][A-Za-z0-9]*", expression["Expression"])) - {"FILL"}
        stats = {metric_id: metrics[metric_id]["MetricStat"]["Metric"] for metric_id in used}
        assert {(stat["Namespace"], stat["MetricName"]) for stat in stats.values()} == {
            ("AWS/Lambda", "Errors"),
            ("AWS/ApiGateway", "5xx"),
        }
        routes = {
            next(d["Value"] for d in stat["Dimensions"] if d["Name"] == "Route")
            for stat in stats.values()
            if stat["MetricName"] == "5xx"
        }
        assert routes == {"GET /webhooks/qpay", "POST /webhooks/qpay"}
        assert alarm["Threshold"] == 0
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
