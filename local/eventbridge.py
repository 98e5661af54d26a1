"""moto server as the local EventBridge (and SQS, CloudWatch Logs, SSM, Secrets Manager) endpoint.

Handlers put their events on the template's buses in moto. So that a person (or a test) can see
what was emitted, every bus gets one catch-all rule whose target is a CloudWatch Logs log group:
moto delivers each matching event there as the full EventBridge envelope in JSON, the same
shape an EventBridge -> CloudWatch Logs target gets in AWS. `local.inspect` reads it back.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from local.dynamodb_local import REPO_ROOT
from local.endpoints import LOCAL_HOST, local_client
from local.environment import child_process_environment
from local.processes import ManagedProcess, ProcessError
from local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, Template

logger = logging.getLogger(__name__)

INSPECT_LOG_GROUP = "/local/qpay-events"
INSPECT_RULE = "local-inspect-all"
# moto's pattern matcher (and EventBridge) accept an empty prefix as "source is any string".
MATCH_EVERY_EVENT = {"source": [{"prefix": ""}]}
FULL_EVENT_TEMPLATE = "<aws.events.event.json>"


class MotoServer:
    """moto's server (`python -m local.moto_server`) on host:port as a child process."""

    def __init__(self, port: int, *, host: str = LOCAL_HOST):
        self.port = port
        self.host = host
        self.process: ManagedProcess | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, service: str, **config: Any) -> Any:
        return local_client(service, self.endpoint_url, **config)

    def start(self, timeout_s: float = 120.0) -> None:
        # moto.server, with a cheaper clock for its SQS backend (local/moto_server.py).
        command = [sys.executable, "-m", "local.moto_server", "-H", self.host, "-p", str(self.port)]
        # moto runs boto3 itself: a profile or session token from the user's shell would break it.
        self.process = ManagedProcess("moto", command, cwd=REPO_ROOT, env=child_process_environment())
        self.process.start()
        probe = local_client("events", self.endpoint_url, connect_timeout=0.5, read_timeout=2, max_attempts=1)
        try:
            self.process.wait_until_ready(
                lambda: probe.list_event_buses() is not None,
                timeout_s=timeout_s,
                what=f"moto server on port {self.port}",
            )
        except ProcessError:
            self.stop()
            raise
        logger.info("moto ready at %s", self.endpoint_url)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def log_group_arn(name: str = INSPECT_LOG_GROUP) -> str:
    # No trailing ":*": moto takes everything after "log-group:" as the group name.
    return f"arn:aws:logs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:log-group:{name}"


def setup_event_buses(events_client: Any, logs_client: Any, template: Template) -> list[str]:
    """Create the template's buses and wire each (and `default`) to the inspection log group.

    Returns the bus names. Idempotent, so re-running against the same moto is harmless.
    """
    existing_groups = {
        group["logGroupName"]
        for group in logs_client.describe_log_groups(logGroupNamePrefix=INSPECT_LOG_GROUP).get(
            "logGroups", []
        )
    }
    if INSPECT_LOG_GROUP not in existing_groups:
        logs_client.create_log_group(logGroupName=INSPECT_LOG_GROUP)

    existing_buses = {bus["Name"] for bus in events_client.list_event_buses().get("EventBuses", [])}
    names = ["default"] + [bus.name for bus in template.event_buses if bus.name != "default"]
    for name in names:
        if name not in existing_buses:
            events_client.create_event_bus(Name=name)
        events_client.put_rule(
            Name=INSPECT_RULE,
            EventBusName=name,
            EventPattern=json.dumps(MATCH_EVERY_EVENT),
            State="ENABLED",
            Description="local stack: copy every event to the inspection log group",
        )
        events_client.put_targets(
            Rule=INSPECT_RULE,
            EventBusName=name,
            Targets=[
                {
                    "Id": "inspection-log-group",
                    "Arn": log_group_arn(),
                    # The whole event: moto's default delivery template leaves out `account`.
                    "InputTransformer": {"InputTemplate": FULL_EVENT_TEMPLATE},
                }
            ],
        )
        logger.info("event bus %s -> log group %s", name, INSPECT_LOG_GROUP)
    return names
