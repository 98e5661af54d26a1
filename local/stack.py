"""`make run`: the whole application on this machine, with no AWS account and no Docker.

    python -m local.stack [--api-port 3000 --invoke-port 3001 --dynamodb-port 8000
                           --moto-port 5000 --simulator-port 3100 --template template.yaml]

Starts DynamoDB Local (tables from template.yaml), moto (event buses + an inspection log group),
the QPay simulator, then runs the real handlers in Lambda-like execution environments (worker
processes, local/functions.py) behind the HTTP API front door, the Lambda Invoke API and the
schedules. Prints a banner, then the line
`LOCAL STACK READY`, and runs until SIGINT/SIGTERM (exit 0). If a child process dies on its
own, the stack stops everything and exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import requests
from botocore.exceptions import BotoCoreError, ClientError

from local.aws_faults import kill_rules, load_spec, write_rules
from local.dynamodb_local import REPO_ROOT, DynamoDBLocal
from local.endpoints import LocalPorts, port_is_free
from local.environment import build_function_environment, child_process_environment
from local.event_delivery import ApiDestinationDelivery, EventDeliverySettings, setup_event_rules
from local.eventbridge import INSPECT_LOG_GROUP, MotoServer, setup_event_buses
from local.front_door import FrontDoor
from local.functions import FunctionRuntime, RuntimeSettings
from local.jwt_auth import JwtSettings
from local.lambda_invoke import LambdaInvokeApi
from local.processes import ManagedProcess, ProcessError
from local.sam_env import env_file_path, sam_env_vars, write_sam_env_file
from local.scheduler import ScheduleError, Scheduler, SchedulerSettings
from local.sqs import EventSourceMappings, SqsSettings, create_queues
from local.template import (
    LOCAL_REGION,
    Template,
    TemplateError,
    create_tables,
    load_template,
    parameters_bound_to_variables,
)

logger = logging.getLogger("local.stack")

READY_LINE = "LOCAL STACK READY"
SIMULATOR_MODULE = "local.qpay_simulator"
SIMULATOR_PYTHONPATH = REPO_ROOT / "layers" / "qpay_common"
SIMULATOR_SETTINGS = {
    "QPAY_CLIENT_ID": "QPAY_SIM_CLIENT_ID",
    "QPAY_CLIENT_SECRET": "QPAY_SIM_CLIENT_SECRET",
    "QPAY_INVOICE_CODE": "QPAY_SIM_INVOICE_CODE",
}


class LocalStackError(Exception):
    """The stack cannot start; the message says what to do."""


class _Interrupted(Exception):
    """A stop signal arrived while the stack was still starting."""


def default_simulator_command(port: int, host: str) -> list[str]:
    return [sys.executable, "-m", SIMULATOR_MODULE, "--host", host, "--port", str(port)]


def shell_parameter_overrides(template_path: Path) -> dict[str, str]:
    """Template parameters set through the variables they feed: CHECKOUT_SHOP_ORIGINS=... make run
    sets ShopOrigins, so the front door's CORS and the functions agree."""
    overrides = {}
    for variable, (parameter, separator) in parameters_bound_to_variables(template_path).items():
        if variable in os.environ:
            value = os.environ[variable]
            # A list parameter joined into the variable: its items back as a list parameter's value.
            overrides[parameter] = ",".join(value.split(separator)) if separator else value
    return overrides


def check_ports(ports: LocalPorts) -> None:
    """Fail early, naming the port and how to change it, rather than half-starting."""
    described = ports.described()
    seen: dict[int, str] = {}
    for what, port, _ in described:
        if port in seen:
            raise LocalStackError(f"{what} and {seen[port]} are both configured for port {port}")
        seen[port] = what
    busy = [
        f"port {port} ({what}; change it with {how})"
        for what, port, how in described
        if not port_is_free(port)
    ]
    if busy:
        raise LocalStackError(
            "already in use: "
            + ", ".join(busy)
            + ". Is another `make run` (or DynamoDB Local, moto) running?"
        )


class LocalStack:
    def __init__(
        self,
        template_path: str | Path,
        ports: LocalPorts,
        *,
        simulator_command: Sequence[str] | None = None,
        repo_root: Path = REPO_ROOT,
    ):
        self.template_path = Path(template_path)
        self.ports = ports
        self.simulator_cmd = list(simulator_command or default_simulator_command(ports.simulator, ports.host))
        self.repo_root = repo_root
        self.template: Template | None = None
        self.dynamodb: DynamoDBLocal | None = None
        self.moto: MotoServer | None = None
        self.simulator: ManagedProcess | None = None
        self.runtime: FunctionRuntime | None = None
        self.front_door: FrontDoor | None = None
        self.invoke_api: LambdaInvokeApi | None = None
        self.scheduler: Scheduler | None = None
        self.event_sources: EventSourceMappings | None = None
        self.deliveries: list[ApiDestinationDelivery] = []
        self.import_failures: dict[str, str] = {}
        self.tables: list[str] = []
        self.buses: list[str] = []
        self.queues: list[str] = []
        self.sam_env_file = env_file_path(self.repo_root)

    def start(self) -> None:
        scheduler_settings = SchedulerSettings.from_env()
        runtime_settings = RuntimeSettings.from_env()
        sqs_settings = SqsSettings.from_env()
        jwt_settings = JwtSettings.from_env()
        delivery_settings = EventDeliverySettings.from_env(os.environ)
        self.template = template = load_template(
            self.template_path,
            {**shell_parameter_overrides(self.template_path), **delivery_settings.parameter_overrides()},
        )
        check_ports(self.ports)

        self.dynamodb = DynamoDBLocal(self.ports.dynamodb, host=self.ports.host, repo_root=self.repo_root)
        self.dynamodb.start()
        create_tables(self.dynamodb.client(), template)
        self.tables = list(template.tables)

        self.moto = MotoServer(self.ports.moto, host=self.ports.host)
        self.moto.start()
        self.buses = setup_event_buses(self.moto.client("events"), self.moto.client("logs"), template)
        self.queues = create_queues(
            self.moto.client("sqs"), template, visibility_timeout_cap_s=sqs_settings.visibility_timeout_cap_s
        )
        moto_server = self.moto
        for target, queue_url in setup_event_rules(
            moto_server.client("events"), moto_server.client("sqs"), template
        ):
            delivery = ApiDestinationDelivery(
                target, queue_url, lambda: moto_server.client("sqs", read_timeout=10), delivery_settings
            )
            delivery.start()
            self.deliveries.append(delivery)

        shell = dict(os.environ)
        self._start_simulator(self._simulator_credentials(template, shell))

        # AWS's faults (LOCAL_AWS_FAULTS), refused here if malformed; PUT /_local/aws-faults on the
        # invoke API changes them while the stack runs. One file per stack: stacks may run side by side.
        fault_rules = load_spec(os.environ.get("LOCAL_AWS_FAULTS", ""), functions=set(template.functions))
        unknown = set(runtime_settings.kill_rates) - {"*"} - set(template.functions)
        if unknown:
            raise LocalStackError(
                f"LOCAL_LAMBDA_KILLS: no function {', '.join(sorted(unknown))} in the template"
            )
        fault_rules += kill_rules(runtime_settings.kill_rates)
        faults_file = Path(tempfile.mkdtemp(prefix="qpay-local-faults-")) / "aws-faults.json"
        write_rules(faults_file, fault_rules)
        self.runtime = FunctionRuntime(
            template,
            environment_for=lambda function: build_function_environment(function, self.ports, shell),
            settings=dataclasses.replace(runtime_settings, faults_file=faults_file),
        )
        write_sam_env_file(
            self.sam_env_file,
            sam_env_vars(
                template,
                lambda function: build_function_environment(function, self.ports, shell),
                host=os.environ.get("LOCAL_SAM_ENV_HOST") or self.ports.host,
            ),
        )
        # One environment per function, started in parallel: import failures show in the banner,
        # and the first request does not pay every cold start at once.
        self.import_failures = dict(self.runtime.prewarm())

        self.front_door = FrontDoor(
            template, self.runtime, host=self.ports.host, port=self.ports.api, jwt_settings=jwt_settings
        )
        self.front_door.start()
        self.invoke_api = LambdaInvokeApi(self.runtime, host=self.ports.host, port=self.ports.invoke)
        self.invoke_api.start()
        self.scheduler = Scheduler(self.runtime, template.schedules, scheduler_settings)
        self.scheduler.start()
        moto = self.moto
        self.event_sources = EventSourceMappings(
            self.runtime, template, lambda: moto.client("sqs", read_timeout=20), sqs_settings
        )
        self.event_sources.start()

    def _simulator_credentials(self, template: Template, shell: dict[str, str]) -> dict[str, str]:
        """What the handlers will send QPay, so the simulator accepts it."""
        merged: dict[str, str] = {}
        for function in template.functions.values():
            merged.update(build_function_environment(function, self.ports, shell))
        return merged

    def _start_simulator(self, handler_environment: dict[str, str]) -> None:
        health_url = f"{self.ports.simulator_url}/_sim/health"
        environment = child_process_environment(self.ports)
        # It answers with QPay's error codes from the layer (qpay_common.adapters.qpay.codes).
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(SIMULATOR_PYTHONPATH), environment.get("PYTHONPATH", "")) if part
        )
        # The simulator accepts the merchant credentials and invoice code the handlers will send,
        # also when the user overrides them in the shell of `make run`.
        for handler_name, simulator_name in SIMULATOR_SETTINGS.items():
            if handler_environment.get(handler_name):
                environment[simulator_name] = handler_environment[handler_name]
        self.simulator = ManagedProcess(
            "qpay-simulator",
            self.simulator_cmd,
            cwd=self.repo_root,
            env=environment,
            output_level=logging.INFO,
        )
        self.simulator.start()
        self.simulator.wait_until_ready(
            lambda: requests.get(health_url, timeout=1).status_code == 200,
            timeout_s=120,
            what=f"the QPay simulator on port {self.ports.simulator}",
        )
        logger.info("QPay simulator ready at %s", self.ports.simulator_url)

    def children(self) -> list[ManagedProcess]:
        parts = [self.dynamodb.process if self.dynamodb else None, self.moto.process if self.moto else None]
        return [child for child in [*parts, self.simulator] if child is not None]

    def dead_child(self) -> ManagedProcess | None:
        """A child that exited without being told to stop."""
        return next(
            (child for child in self.children() if not child.stopping and not child.is_running()), None
        )

    def stop(self) -> None:
        """Stop everything that was started, newest first. Safe after a failed start."""
        for part in (
            *self.deliveries,
            self.event_sources,
            self.scheduler,
            self.front_door,
            self.invoke_api,
            self.runtime,
        ):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    logger.exception("could not stop %s cleanly", type(part).__name__)
        for child in (self.simulator, self.moto, self.dynamodb):
            if child is not None:
                child.stop()
        faults_file = self.runtime.settings.faults_file if self.runtime is not None else None
        if faults_file is not None:
            shutil.rmtree(faults_file.parent, ignore_errors=True)

    def banner(self) -> str:
        assert self.template is not None
        template, ports = self.template, self.ports
        lines = [f"QPay local stack (template: {template.path})", ""]
        lines.append(f"  HTTP API front door   {ports.api_url}")
        width = max((len(route.route_key) for route in template.routes), default=0)
        for route in template.routes:
            auth = "JWT" if route.auth_required else "public"
            lines.append(f"      {route.route_key:<{width}}  -> {route.function_id} ({auth})")
        lines.append(
            f"  Lambda Invoke API     {ports.invoke_url}  functions: {', '.join(template.functions)}"
        )
        lines.append(f"  DynamoDB Local        {ports.dynamodb_url}  tables: {', '.join(self.tables)}")
        lines.append(
            f"  moto                  {ports.moto_url}  event buses: {', '.join(self.buses)}"
            f" (events copied to log group {INSPECT_LOG_GROUP})"
        )
        lines.append(
            f"  QPay simulator        {ports.simulator_url}/v2  control API: {ports.simulator_url}/_sim/..."
        )
        lines.append(f"  SQS (moto)            queues: {', '.join(self.queues)}")
        for description in self.scheduler.describe() if self.scheduler else []:
            lines.append(f"  schedule              {description}")
        for description in self.event_sources.describe() if self.event_sources else []:
            lines.append(f"  event source          {description}")
        for rule in template.event_rules:
            queues = [t.queue_name for t in rule.targets if t.kind == "sqs"]
            lines.append(f"  event rule            {rule.logical_id} -> SQS {', '.join(queues)}")
        for delivery in self.deliveries:
            lines.append(f"  API destination       {delivery.describe()} (retried; dead letters in SQS)")
        if not self.deliveries:
            lines.append(
                "  API destination       off (LOCAL_EVENT_DELIVERY_URL=http://... POSTs PaymentCompleted)"
            )
        for function_id, error in self.import_failures.items():
            first_line = str(error).splitlines()[0]
            lines.append(f"  WARNING {function_id} could not be imported ({first_line}); its calls fail")
        lines += ["", *self._walkthrough(), "", "Ctrl-C stops everything."]
        return "\n".join(lines)

    def _walkthrough(self) -> list[str]:
        assert self.template is not None
        ports = self.ports
        api, sim, invoke = ports.api_url, ports.simulator_url, ports.invoke_url
        scheduled = [schedule.function_id for schedule in self.template.schedules]
        example_function = (scheduled or list(self.template.functions) or ["FunctionName"])[0]
        extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"{}\"])'"
        lines = ["Try it, in another terminal in this folder:"]
        if ports != LocalPorts(host=ports.host):
            exports = " ".join(
                f"{variable}={getattr(ports, name)}"
                for name, variable in (
                    ("api", "LOCAL_API_PORT"),
                    ("invoke", "LOCAL_INVOKE_PORT"),
                    ("dynamodb", "LOCAL_DYNAMODB_PORT"),
                    ("moto", "LOCAL_MOTO_PORT"),
                )
            )
            lines.append(f"  0. export {exports}    # so make inspect and make invoke find this stack")
        lines += [
            "  1. TOKEN=$(make -s token USER=alice)",
            f'  2. RESP=$(curl -s -X POST {api}/payments -H "Authorization: Bearer $TOKEN" '
            '-H \'Content-Type: application/json\' -d \'{"amount": 15000, "description": "Order #123"}\')',
            '     echo "$RESP"',
            f"     SESSION_ID=$(printf '%s' \"$RESP\" | {extract.format('session_id')})",
            f"     INVOICE_ID=$(printf '%s' \"$RESP\" | {extract.format('invoice_id')})",
            f'  3. echo "{api}/checkout/$SESSION_ID#token=$TOKEN"   # the checkout page, for a browser',
            f"  4. pay as the customer's bank app: the buttons of {sim}/_sim/bank in a browser, or",
            f"     curl -s -X POST {sim}/_sim/pay -H 'Content-Type: application/json' "
            '-d "{\\"invoice_id\\": \\"$INVOICE_ID\\"}"',
            f'  5. curl -s {api}/payments/$SESSION_ID -H "Authorization: Bearer $TOKEN"   # PROCESSED',
            "  6. make inspect SESSION=$SESSION_ID     # the order and its PaymentCompleted event",
            f"  7. curl -s -X POST {invoke}/2015-03-31/functions/{example_function}/invocations -d '{{}}'",
            f"     or: aws lambda invoke --endpoint-url {invoke} --function-name {example_function} out.json",
            "  8. OPS=$(make -s token USER=ops SCOPES=payments/admin)    # an operator: the /admin routes",
            f'     curl -s {api}/admin/payments/$SESSION_ID -H "Authorization: Bearer $OPS"   # and QPay',
            "  9. make invoke FUNCTION=CreatePaymentFunction EVENT=events/create_payment.json",
            "     or, with a container engine: sam local invoke CreatePaymentFunction"
            f" -e events/create_payment.json --env-vars {self.sam_env_file}"
            f" --docker-network host --region {LOCAL_REGION}",
        ]
        return lines


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.stack", description="Run the application locally.")
    parser.add_argument("--api-port", type=int, help="HTTP API front door (env LOCAL_API_PORT, default 3000)")
    parser.add_argument(
        "--invoke-port", type=int, help="Lambda Invoke API (env LOCAL_INVOKE_PORT, default 3001)"
    )
    parser.add_argument(
        "--dynamodb-port", type=int, help="DynamoDB Local (env LOCAL_DYNAMODB_PORT, default 8000)"
    )
    parser.add_argument("--moto-port", type=int, help="moto server (env LOCAL_MOTO_PORT, default 5000)")
    parser.add_argument(
        "--simulator-port", type=int, help="QPay simulator (env LOCAL_SIMULATOR_PORT, default 3100)"
    )
    parser.add_argument("--template", default=str(REPO_ROOT / "template.yaml"), help="SAM template to serve")
    return parser.parse_args(argv)


def configure_logging() -> None:
    level = os.environ.get("LOCAL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # botocore's own INFO chatter (credential lookups) is noise next to the handlers' logs.
    logging.getLogger("botocore").setLevel(logging.WARNING)


def run(stack: LocalStack) -> int:
    """Start `stack`, announce it, and supervise it until a signal or a child's death."""
    stop_requested = threading.Event()
    starting = True

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        stop_requested.set()
        if starting:
            raise _Interrupted

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            stack.start()
        except _Interrupted:
            stack.stop()
            return 0
        except (
            LocalStackError,
            ProcessError,
            TemplateError,
            ScheduleError,
            BotoCoreError,
            ClientError,
            OSError,
            ValueError,  # FaultSpecError (LOCAL_AWS_FAULTS) among them
        ) as error:
            logger.error("the local stack cannot start: %s", error)
            stack.stop()
            return 1
        except BaseException:
            stack.stop()
            raise
        starting = False

        print(stack.banner(), flush=True)
        print(READY_LINE, flush=True)

        exit_code = 0
        while not stop_requested.wait(0.5):
            dead = stack.dead_child()
            if dead is not None:
                logger.error("%s; stopping the local stack", dead.describe_exit())
                exit_code = 1
                break
        stack.stop()
        logger.info("local stack stopped")
        return exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging()
    try:
        ports = LocalPorts.from_env(
            api=args.api_port,
            invoke=args.invoke_port,
            dynamodb=args.dynamodb_port,
            moto=args.moto_port,
            simulator=args.simulator_port,
        )
    except ValueError as error:
        logger.error("%s", error)
        return 1
    return run(LocalStack(args.template, ports))


if __name__ == "__main__":
    raise SystemExit(main())
