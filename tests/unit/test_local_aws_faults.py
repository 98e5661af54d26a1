"""The local runtime's AWS faults (local/aws_faults.py): rules are validated with a message that
says what is wrong, and a faulted call fails through botocore's own code path as AWS would fail it;
and what the payment flow makes of those failures."""

import botocore.session
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from local.aws_faults import FaultSpecError, Injector, kill_rules, load_spec, parse_rules, write_rules
from qpay_common.domain.errors import StaleSession
from qpay_common.domain.session import PaymentStatus
from tests.fakes import World

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("{", "LOCAL_AWS_FAULTS is not JSON"),
        ('{"fault": "Throttling"}', "a JSON list of rules"),
        ('[{"fault": "Meltdown"}]', "fault rule 1: fault must be one of"),
        ('[{"fault": "Throttling", "rate": 1.5}]', "rate must be a number from 0 to 1"),
        ('[{"fault": "Throttling", "rate": true}]', "rate must be a number from 0 to 1"),
        ('[{"fault": "Throttling", "service": "s3"}]', "applies to dynamodb, events, sqs, not 's3'"),
        ('[{"fault": "PartialFailure", "service": "events", "operation": "PutRule"}]', "PutEvents only"),
        ('[{"fault": "Throttling", "function": "Nope"}]', "no function 'Nope' in the template"),
        ('[{"fault": "Throttling", "when": "always"}]', "unknown fields when"),
        ("@/nonexistent/faults.json", "cannot read /nonexistent/faults.json"),
    ],
)
def test_a_malformed_spec_is_refused_naming_what_is_wrong(spec, says):
    with pytest.raises(FaultSpecError, match="LOCAL_AWS_FAULTS") as refused:
        load_spec(spec, functions={"CreatePaymentFunction"})
    assert says in str(refused.value)


def test_kills_are_rules_of_their_own():
    assert [rule.as_json() for rule in kill_rules({"CreatePaymentFunction": 0.5, "*": 0})] == [
        {
            "function": "CreatePaymentFunction",
            "service": "lambda",
            "operation": "Invoke",
            "fault": "Kill",
            "rate": 0.5,
        }
    ]
    assert parse_rules([{"fault": "Kill", "function": "*"}])[0].operation == "Invoke"


def faulted_client(tmp_path, service, rules, function="QPayWebhookFunction"):
    path = tmp_path / "faults.json"
    write_rules(path, parse_rules(rules))
    injector = Injector(function, path)
    client = botocore.session.get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # nothing listens: a call that is sent fails differently
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    for event, handler in injector.handlers():
        client.meta.events.register(event, handler)
    return client, injector


def test_a_plain_write_meets_a_transaction_conflict_and_a_transaction_is_cancelled(tmp_path):
    client, injector = faulted_client(
        tmp_path, "dynamodb", [{"fault": "TransactionConflict", "operation": "writes", "rate": 1}]
    )

    with pytest.raises(ClientError) as conflict:
        client.update_item(
            TableName="t",
            Key={"k": {"S": "1"}},
            UpdateExpression="SET a = :a",
            ExpressionAttributeValues={":a": {"S": "x"}},
        )
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(
            TransactItems=[{"Put": {"TableName": "t", "Item": {"k": {"S": "1"}}}}] * 2
        )

    assert conflict.value.response["Error"]["Code"] == "TransactionConflictException"
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in cancelled.value.response["CancellationReasons"]] == [
        "TransactionConflict",
        "None",
    ]
    assert injector.injected == 2


def test_throttles_timeouts_and_failed_entries_as_aws_answers_them(tmp_path):
    dynamodb, _ = faulted_client(tmp_path, "dynamodb", [{"fault": "Throttling", "operation": "GetItem"}])
    events, _ = faulted_client(tmp_path / "e", "events", [{"fault": "PartialFailure", "service": "events"}])
    sqs, _ = faulted_client(tmp_path / "s", "sqs", [{"fault": "Timeout", "service": "sqs"}])

    with pytest.raises(ClientError) as throttled:
        dynamodb.get_item(TableName="t", Key={"k": {"S": "1"}})
    answer = events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}])
    with pytest.raises(ReadTimeoutError):
        sqs.send_message(QueueUrl="http://127.0.0.1:9/q", MessageBody="x")

    assert throttled.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][0]["ErrorCode"] == "InternalFailure"


def test_rules_for_another_function_or_at_rate_0_leave_calls_alone(tmp_path):
    path = tmp_path / "faults.json"
    write_rules(
        path,
        parse_rules(
            [{"fault": "Throttling", "function": "CreatePaymentFunction"}, {"fault": "Throttling", "rate": 0}]
        ),
    )

    assert Injector("QPayWebhookFunction", path).fault_for("dynamodb", "GetItem") is None
    assert Injector("CreatePaymentFunction", path).fault_for("dynamodb", "GetItem") == "Throttling"


def test_a_rules_file_changed_while_running_is_read_again(tmp_path):
    path = tmp_path / "faults.json"
    write_rules(path, [])
    injector = Injector("CreatePaymentFunction", path)
    assert injector.fault_for("dynamodb", "PutItem") is None

    write_rules(path, parse_rules([{"fault": "InternalServerError", "operation": "PutItem"}]))

    assert injector.fault_for("dynamodb", "PutItem") == "InternalServerError"


class TestWhatTheFlowMakesOfThem:
    def test_a_write_that_meets_an_in_flight_transaction_is_retried(self, monkeypatch):
        world = World()
        session = world.create()
        world.qpay.pay(session.invoice_id or "", session.amount)
        real = world.sessions._update
        conflicts = iter([True, True])

        def update(current, changes, **kwargs):
            if next(conflicts, False):
                raise StaleSession(current.session_id, in_flight=True)
            return real(current, changes, **kwargs)

        monkeypatch.setattr(world.sessions, "_update", update)

        done = world.settlement.confirm_with_qpay(session, source="webhook")

        assert done.status == PaymentStatus.PROCESSED
        assert len(world.sessions.orders) == 1

    def test_a_payment_settled_against_another_order_is_not_fulfilled_twice_and_raises_nothing(self):
        world = World()
        session = world.create()
        payment_id = world.qpay.pay(session.invoice_id or "", session.amount)
        world.sessions.settlements[payment_id] = "ord_someone_else"

        result = world.settlement.confirm_with_qpay(session, source="webhook")

        assert result.status == PaymentStatus.PAID
        assert world.sessions.orders == {}
        assert world.publisher.published == []


class TestStorageCalls:
    @staticmethod
    def refusal(code):
        from pynamodb.exceptions import UpdateError

        return UpdateError(
            "refused", cause=ClientError({"Error": {"Code": code, "Message": "x"}}, "UpdateItem")
        )

    def test_a_throttled_call_is_tried_again_then_reported_as_storage_unavailable(self, monkeypatch):
        from qpay_common.adapters.dynamodb import tables
        from qpay_common.domain.errors import StorageUnavailable

        monkeypatch.setattr(tables, "STORAGE_RETRY_SECONDS", 0)
        calls = []

        @tables.storage_call
        def throttled():
            calls.append(1)
            raise self.refusal("ProvisionedThroughputExceededException")

        with pytest.raises(StorageUnavailable) as unavailable:
            throttled()
        assert len(calls) == tables.STORAGE_ATTEMPTS
        assert unavailable.value.retry_after_seconds == 1

    def test_a_call_that_recovers_answers_and_a_refusal_that_is_not_transient_is_raised_as_is(
        self, monkeypatch
    ):
        from pynamodb.exceptions import UpdateError

        from qpay_common.adapters.dynamodb import tables

        monkeypatch.setattr(tables, "STORAGE_RETRY_SECONDS", 0)
        answers = iter([self.refusal("InternalServerError"), self.refusal("TransactionConflictException")])

        @tables.storage_call
        def flaky():
            failure = next(answers, None)
            if failure is not None:
                raise failure
            return "done"

        @tables.storage_call
        def refused():
            raise self.refusal("ValidationException")

        assert flaky() == "done"
        with pytest.raises(UpdateError):
            refused()

    def test_a_callback_met_by_unavailable_storage_is_left_to_reconcile_not_answered_5xx(self, monkeypatch):
        from qpay_common.domain.errors import StorageUnavailable

        world = World()
        session = world.create()
        world.qpay.pay(session.invoice_id or "", session.amount)

        def unavailable(session_id):
            raise StorageUnavailable()

        monkeypatch.setattr(world.sessions, "get", unavailable)

        assert world.settlement.handle_callback(session.session_id, world.token(session.session_id)) is None
