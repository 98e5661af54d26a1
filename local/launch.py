"""The local stack started as `make run` starts it (DynamoDB Local, the simulator, the front door
and invoke API), on free ports, in a process of its own: for the end-to-end suite and for tools
that drive it from outside (`make chaos`)."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from local.dev_token import mint_token
from local.dynamodb_local import REPO_ROOT
from local.endpoints import free_port, local_client
from local.inspect import orders_for_session, read_events

READY_LINE = "LOCAL STACK READY"
START_TIMEOUT_SECONDS = 240


@dataclass
class Stack:
    api: str
    invoke: str
    dynamodb: str
    moto: str
    sim: str
    process: subprocess.Popen[str]
    # The env-vars file for `sam local invoke` this stack wrote.
    sam_env_file: Path
    output: list[str] = field(default_factory=list)

    def token(self, user_id: str = "alice", minutes: float = 60) -> str:
        return mint_token(user_id, minutes)

    def headers(self, user_id: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    def create(self, body: Any, user_id: str = "alice", **kwargs: Any) -> requests.Response:
        return requests.post(
            f"{self.api}/payments", json=body, headers=self.headers(user_id), timeout=30, **kwargs
        )

    def pay(self, invoice_id: str, **options: Any) -> dict[str, Any]:
        response = requests.post(
            f"{self.sim}/_sim/pay", json={"invoice_id": invoice_id, **options}, timeout=60
        )
        response.raise_for_status()
        return response.json()

    def sim_calls(self, key: str) -> int:
        return int(requests.get(f"{self.sim}/_sim/stats", timeout=10).json()["calls"].get(key, 0))

    def sim_invoice(self, invoice_id: str) -> dict[str, Any]:
        return requests.get(f"{self.sim}/_sim/invoices/{invoice_id}", timeout=10).json()

    def dynamodb_client(self) -> Any:
        return local_client("dynamodb", self.dynamodb)

    def lambda_client(self) -> Any:
        return local_client("lambda", self.invoke)

    def orders(self, session_id: str) -> list[dict[str, Any]]:
        return orders_for_session(self.dynamodb_client(), session_id)

    def events(self, session_id: str) -> list[dict[str, Any]]:
        return read_events(self.moto, session_id=session_id)


def start_stack(extra_env: dict[str, str] | None = None, template: Path | None = None) -> Stack:
    ports = {name: free_port() for name in ("API", "INVOKE", "DYNAMODB", "MOTO", "SIMULATOR")}
    env = {**os.environ, **{f"LOCAL_{name}_PORT": str(port) for name, port in ports.items()}}
    # Not the checkout's .local/: a `make run` of the developer's own may be using it.
    sam_env_file = Path(tempfile.mkdtemp(prefix="sam-env-")) / "sam-env.json"
    env.update({"LOCAL_SCHEDULES": "off", "PYTHONUNBUFFERED": "1", "LOCAL_SAM_ENV_FILE": str(sam_env_file)})
    env.update(extra_env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack", *(["--template", str(template)] if template else [])],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = "http://127.0.0.1:{}".format
    stack = Stack(
        api=url(ports["API"]),
        invoke=url(ports["INVOKE"]),
        dynamodb=url(ports["DYNAMODB"]),
        moto=url(ports["MOTO"]),
        sim=url(ports["SIMULATOR"]),
        process=process,
        sam_env_file=sam_env_file,
    )
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.output.append(line.rstrip("\n"))
            if READY_LINE in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stack(stack)
            tail = "\n".join(stack.output[-40:])
            raise RuntimeError(f"local stack did not become ready:\n{tail}")
    return stack


def stop_stack(stack: Stack) -> int:
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        try:
            return stack.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            return stack.process.wait(timeout=10)
    return int(stack.process.returncode)
