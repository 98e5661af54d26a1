"""What the benchmarks run against: DynamoDB Local, moto (EventBridge) and the QPay simulator,
each a child process on a free port (the simulator too, so its threads never share the GIL with
the code being measured), and the function environments template.yaml gives the handlers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from local.dynamodb_local import DynamoDBLocal
from local.endpoints import LocalPorts, free_port, local_client
from local.environment import build_function_environment, child_process_environment
from local.eventbridge import MotoServer, setup_event_buses
from local.sqs import create_queues
from local.template import FunctionSpec, Template, create_tables, load_template

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "qpay_common"
TEMPLATE_PATH = ROOT / "template.yaml"
SIM_CLIENT_ID = "TEST_MERCHANT"
SIM_CLIENT_SECRET = "local-sim-secret"


def ensure_import_paths() -> None:
    """The layer is on Lambda's path; put it (and the function folders' root) on ours."""
    for path in (str(ROOT), str(LAYER)):
        if path not in sys.path:
            sys.path.insert(0, path)


class QPayCallTimer:
    """The seconds spent in QPay calls (QPayTransport.send), summed over threads."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        self._original: Any = None

    def __enter__(self) -> QPayCallTimer:
        from qpay_common.adapters.qpay.client import QPayTransport

        original = QPayTransport.send
        timer = self

        def timed(transport: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(transport, *args, **kwargs)
            finally:
                took = time.perf_counter() - started
                with timer._lock:
                    timer.calls += 1
                    timer.seconds += took

        self._original = original
        QPayTransport.send = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        from qpay_common.adapters.qpay.client import QPayTransport

        QPayTransport.send = self._original  # type: ignore[method-assign]


class Simulator:
    """`python -m local.qpay_simulator` on a free port, with its control API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        env = child_process_environment()
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(LAYER)])
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.qpay_simulator",
                "--port",
                str(self.port),
                "--client-id",
                SIM_CLIENT_ID,
                "--client-secret",
                SIM_CLIENT_SECRET,
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.base_url}/_sim/stats", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                if self._process.poll() is not None:
                    raise RuntimeError("the QPay simulator exited on start") from None
                time.sleep(0.1)
        raise RuntimeError("the QPay simulator did not start")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def post(self, path: str, body: Any = None) -> Any:
        response = requests.post(f"{self.base_url}{path}", json=body if body is not None else {}, timeout=60)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.post("/_sim/reset")

    def delay(self, path: str, milliseconds: int) -> None:
        """Every call to `path` (a QPay API path such as /v2/payment/check) takes this long."""
        requests.delete(f"{self.base_url}/_sim/faults", timeout=10).raise_for_status()
        if milliseconds:
            self.post("/_sim/faults", {"rules": [{"path": path, "delay_ms": milliseconds}]})

    def clear_faults(self) -> None:
        requests.delete(f"{self.base_url}/_sim/faults", timeout=10).raise_for_status()

    def calls(self) -> Counter[str]:
        stats = requests.get(f"{self.base_url}/_sim/stats", timeout=10).json()
        return Counter({key: int(value) for key, value in stats["calls"].items()})

    def pay(self, invoice_id: str, *, callback: bool = False) -> Any:
        return self.post("/_sim/pay", {"invoice_id": invoice_id, "callback": callback})

    def callback_url(self, invoice_id: str) -> str:
        invoice = requests.get(f"{self.base_url}/_sim/invoices/{invoice_id}", timeout=10).json()
        return str(invoice["callback_url"])


@dataclass
class Backends:
    """DynamoDB Local + moto + the simulator, and each function's environment pointed at them."""

    template: Template
    ports: LocalPorts
    dynamodb: DynamoDBLocal
    moto: MotoServer
    simulator: Simulator

    def function(self, name: str) -> FunctionSpec:
        return self.template.functions[name]

    def environment(self, function_name: str) -> dict[str, str]:
        env = build_function_environment(self.function(function_name), self.ports, {})
        env["QPAY_CLIENT_SECRET"] = SIM_CLIENT_SECRET
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        return env

    def dynamodb_client(self) -> Any:
        return local_client("dynamodb", self.dynamodb.endpoint_url)

    def recreate_tables(self) -> None:
        client = self.dynamodb_client()
        for table in client.list_tables()["TableNames"]:
            client.delete_table(TableName=table)
        create_tables(client, TEMPLATE_PATH)


@contextmanager
def backends() -> Iterator[Backends]:
    ports = LocalPorts(api=free_port(), invoke=free_port(), dynamodb=free_port(), moto=free_port())
    template = load_template(TEMPLATE_PATH)
    dynamodb = DynamoDBLocal(port=ports.dynamodb)
    moto = MotoServer(port=ports.moto)
    simulator = Simulator()
    ports = LocalPorts(
        api=ports.api, invoke=ports.invoke, dynamodb=ports.dynamodb, moto=ports.moto, simulator=simulator.port
    )
    running: list[Any] = []
    try:
        # One after the other, from this thread: local.processes asks the kernel to end a child
        # when the thread that started it ends (PR_SET_PDEATHSIG), so no helper threads here.
        for part in (dynamodb, moto, simulator):
            part.start()
            running.append(part)
        create_tables(local_client("dynamodb", dynamodb.endpoint_url), TEMPLATE_PATH)
        setup_event_buses(moto.client("events"), moto.client("logs"), template)
        # The reconcile dispatcher asks its queues' depth on its first invocation.
        create_queues(moto.client("sqs"), template)
        yield Backends(template, ports, dynamodb, moto, simulator)
    finally:
        for part in reversed(running):
            with contextlib.suppress(Exception):  # stop the others anyway
                part.stop()


@contextmanager
def function_environment(backends: Backends, function_name: str) -> Iterator[dict[str, str]]:
    """os.environ as the function sees it, for code run in this process; restored after."""
    saved = dict(os.environ)
    env = backends.environment(function_name)
    os.environ.clear()
    os.environ.update(env)
    from qpay_common import composition

    composition.reset()
    try:
        yield env
    finally:
        composition.reset()
        os.environ.clear()
        os.environ.update(saved)


class AwsCallCounter:
    """Counts every AWS API call botocore makes in this process (boto3 and pynamodb alike), by
    service and operation, and the seconds spent in them (summed over threads)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._original: Any = None

    def __enter__(self) -> AwsCallCounter:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        counter = self

        def counting(client: Any, operation_name: str, api_params: Any) -> Any:
            service = client.meta.service_model.service_name
            started = time.perf_counter()
            try:
                return original(client, operation_name, api_params)
            finally:
                took = time.perf_counter() - started
                with counter._lock:
                    counter.calls[f"{service}.{operation_name}"] += 1
                    counter.seconds += took

        self._original = original
        BaseClient._make_api_call = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        from botocore.client import BaseClient

        BaseClient._make_api_call = self._original  # type: ignore[method-assign]

    def snapshot(self) -> Counter[str]:
        """The calls counted so far."""
        with self._lock:
            return Counter(self.calls)
