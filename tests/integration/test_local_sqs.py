"""SQS in the local stack (local/sqs.py): a template's queues created in moto with their redrive
policies, and its SQS events run as Lambda's event source mappings through the local runtime's
worker processes: batches, partial batch responses, failures returned after the visibility
timeout and dead-lettered after maxReceiveCount, bounded concurrency, and a clean stop."""

import json
import time
import uuid
from pathlib import Path

import pytest

from local.endpoints import local_client
from local.functions import FunctionRuntime
from local.sqs import EventSourceMappings, SqsSettings, create_queues, failed_message_ids
from local.template import load_template

pytestmark = pytest.mark.integration

HANDLER = """\
import json
import os
import time
from pathlib import Path

LOG = Path({log!r})


def lambda_handler(event, context):
    started = time.time()
    time.sleep({sleep})
    records = event["Records"]
    bodies = [record["body"] for record in records]
    line = {{
        "pid": os.getpid(),
        "bodies": bodies,
        "started": started,
        "ended": time.time(),
        "source": records[0]["eventSource"],
        "receives": [record["attributes"]["ApproximateReceiveCount"] for record in records],
    }}
    with LOG.open("a") as log:
        log.write(json.dumps(line) + "\\n")
    if "crash" in bodies:
        raise RuntimeError("the whole batch fails")
    return {{"batchItemFailures": [
        {{"itemIdentifier": record["messageId"]}} for record in event["Records"] if record["body"] == "fail"
    ]}}
"""

TEMPLATE = """\
Resources:
  WorkFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {name}/
      Handler: app.lambda_handler
      Timeout: 10
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: {batch}
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig:
              MaximumConcurrency: 2
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: work-{name}
      VisibilityTimeout: 60
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDeadLetters.Arn
        maxReceiveCount: 2
  WorkDeadLetters:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: dead-{name}
"""


class Setup:
    def __init__(self, tmp_path: Path, moto_url: str, *, sleep: float = 0.0, batch: int = 10) -> None:
        name = uuid.uuid4().hex[:8]
        self.log = tmp_path / f"{name}.jsonl"
        code = tmp_path / name
        code.mkdir()
        (code / "app.py").write_text(HANDLER.format(log=str(self.log), sleep=sleep))
        (tmp_path / "template.yaml").write_text(TEMPLATE.format(name=name, batch=batch))
        self.template = load_template(tmp_path / "template.yaml")
        self.sqs = local_client("sqs", moto_url)
        # A retry after a failure comes back in a second rather than the queue's minute
        create_queues(self.sqs, self.template, visibility_timeout_cap_s=1)
        self.queue_url = self.sqs.get_queue_url(QueueName=f"work-{name}")["QueueUrl"]
        self.dead_letters = self.sqs.get_queue_url(QueueName=f"dead-{name}")["QueueUrl"]
        self.runtime = FunctionRuntime(self.template)
        self.mappings = EventSourceMappings(
            self.runtime, self.template, lambda: local_client("sqs", moto_url, read_timeout=20), SqsSettings()
        )

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def invocations(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def wait_for(self, condition, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out; invocations: {self.invocations()}")

    def waiting(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def stop(self) -> None:
        self.mappings.stop()
        self.runtime.stop()


@pytest.fixture
def setup(tmp_path, moto_events):
    made: list[Setup] = []

    def make(**options) -> Setup:
        made.append(Setup(tmp_path, moto_events, **options))
        return made[-1]

    yield make
    for one in made:
        one.stop()


def test_the_templates_queues_are_created_with_their_redrive_policy(setup):
    work = setup()

    attributes = work.sqs.get_queue_attributes(QueueUrl=work.queue_url, AttributeNames=["All"])["Attributes"]

    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 2
    assert redrive["deadLetterTargetArn"].endswith(":" + work.dead_letters.rsplit("/", 1)[-1])
    assert attributes["VisibilityTimeout"] == "1"  # capped from 60 by LOCAL_SQS_VISIBILITY_TIMEOUT


def test_messages_are_delivered_in_batches_as_an_sqs_event_and_deleted_when_done(setup):
    work = setup()
    work.send(*[f"m{n}" for n in range(25)])

    work.mappings.start()
    work.wait_for(lambda: sum(len(i["bodies"]) for i in work.invocations()) >= 25)
    work.wait_for(lambda: work.waiting(work.queue_url) == 0)

    invocations = work.invocations()
    assert sorted(body for i in invocations for body in i["bodies"]) == sorted(f"m{n}" for n in range(25))
    assert all(len(i["bodies"]) <= 10 for i in invocations)
    assert {i["source"] for i in invocations} == {"aws:sqs"}
    time.sleep(1.5)  # past the visibility timeout: nothing comes back
    assert sum(len(i["bodies"]) for i in work.invocations()) == 25


def test_only_the_messages_a_partial_batch_response_names_come_back_then_go_to_the_dead_letter_queue(setup):
    work = setup()
    work.send("ok-1", "fail", "ok-2")

    work.mappings.start()
    work.wait_for(lambda: work.waiting(work.dead_letters) == 1, timeout_s=30)

    deliveries = [body for i in work.invocations() for body in i["bodies"]]
    assert deliveries.count("ok-1") == deliveries.count("ok-2") == 1
    assert deliveries.count("fail") == 2  # maxReceiveCount, then the dead-letter queue
    [dead] = work.sqs.receive_message(QueueUrl=work.dead_letters)["Messages"]
    assert dead["Body"] == "fail"
    assert work.waiting(work.queue_url) == 0


def test_a_failed_invocation_returns_its_whole_batch_for_a_retry(setup):
    work = setup(batch=2)
    work.sqs.send_message_batch(
        QueueUrl=work.queue_url,
        Entries=[{"Id": "1", "MessageBody": "crash"}, {"Id": "2", "MessageBody": "innocent"}],
    )

    work.mappings.start()
    work.wait_for(lambda: work.waiting(work.dead_letters) >= 1, timeout_s=30)

    first = work.invocations()[0]
    assert first["receives"] == ["1"] * len(first["bodies"])
    retried = [i for i in work.invocations() if "2" in i["receives"]]
    assert retried, "the batch came back after the visibility timeout"


def test_at_most_maximum_concurrency_invocations_run_at_once(setup):
    work = setup(sleep=0.5, batch=1)
    work.send(*[f"m{n}" for n in range(8)])

    work.mappings.start()
    work.wait_for(lambda: len(work.invocations()) >= 8)

    spans = [(i["started"], i["ended"]) for i in work.invocations()]
    most = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most == 2  # ScalingConfig.MaximumConcurrency
    assert len({i["pid"] for i in work.invocations()}) == 2  # each in its own execution environment


def test_stop_ends_the_pollers(setup):
    work = setup()
    work.mappings.start()

    started = time.monotonic()
    work.mappings.stop()

    assert time.monotonic() - started < 5
    assert not any(thread.is_alive() for mapping in work.mappings.mappings for thread in mapping._threads)
    work.send("after-stop")
    time.sleep(1.5)
    assert work.invocations() == []


def test_an_invalid_partial_batch_response_fails_the_whole_batch():
    ids = {"a", "b"}
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "a"}]}, ids) == {"a"}
    assert failed_message_ids({"batchItemFailures": []}, ids) == set()
    assert failed_message_ids(None, ids) == set()
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, ids) is None
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, ids) is None
    assert failed_message_ids("not json", ids) is None
