"""Run the template's Lambda functions the way Lambda does: in execution environments.

An execution environment is a worker process of its own (local/lambda_worker.py) that imports one
function's handler, with the function's code folder and layers on its path and the function's
environment variables, and then serves exactly one invocation at a time. Module-level state (a
Powertools resolver, the service graph, cached clients) therefore belongs to one environment and is
never shared by concurrent invocations, as in AWS.

- Each function has a pool that grows on demand up to its concurrency limit: the template's
  `ReservedConcurrentExecutions`, else LOCAL_LAMBDA_CONCURRENCY (default 32). A synchronous
  invocation beyond it is throttled (`Throttled`, which the invoke API answers 429
  TooManyRequestsException); an asynchronous one waits for capacity, as Lambda's event queue does.
- Idle environments are reused (warm starts, newest first) and retired after
  LOCAL_LAMBDA_IDLE_SECONDS (default 300) without work.
- The first invocation of an environment logs Lambda's REPORT line with `Init Duration`; warm
  ones do not.
- An invocation that passes the function's Timeout is stopped by killing its process (`Task timed
  out after N.NN seconds`); a worker that exits or crashes gives `Runtime.ExitError`; a failed
  import gives `Runtime.ImportModuleError`. In each case the environment is discarded and the next
  invocation gets a fresh one, so a fixed import is picked up.
- `stop()` kills every worker; a worker also exits on its own when the stack process is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.template import FunctionSpec, Template

logger = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("lambda_worker.py")
DEFAULT_CONCURRENCY = 32
DEFAULT_IDLE_SECONDS = 300.0
# Lambda gives on-demand init 10 s of its own; past that, init is retried inside the invocation.
INIT_TIMEOUT_S = 10.0
# SnapStart: the runtime must be restored and its after-restore hooks done within 10 s.
RESTORE_TIMEOUT_S = 10.0
_REAP_INTERVAL_S = 1.0
_STOP_GRACE_S = 2.0
_ASYNC_RETRY_MAX_S = 2.0
_OFF_VALUES = {"off", "false", "0", "no", "disabled"}


class Throttled(Exception):
    """The function already runs as many invocations as its concurrency limit allows."""

    def __init__(self, function_id: str, limit: int, reserved: bool):
        self.function_id = function_id
        self.limit = limit
        self.reason = (
            "ReservedFunctionConcurrentInvocationLimitExceeded"
            if reserved
            else "ConcurrentInvocationLimitExceeded"
        )
        super().__init__(f"Rate Exceeded. {function_id} is at its concurrency limit of {limit}")


@dataclass(frozen=True)
class RuntimeSettings:
    concurrency: int = DEFAULT_CONCURRENCY
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    # Each function's AWS calls checked against its IAM policy (LOCAL_IAM=off: not checked).
    iam: bool = True
    # Where the calls each function made are written when the runtime stops (make iam-unused).
    iam_usage_dir: Path | None = None
    # AWS faults (local/aws_faults.py): the rules file every execution environment reads.
    faults_file: Path | None = None
    # The share of invocations, per function ("*": any), whose environment is killed at a random
    # point (LOCAL_LAMBDA_KILLS), as an out-of-memory kill or a crash ends one in Lambda: the
    # stack writes them into the faults file as Kill rules.
    kill_rates: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if env is None else env
        concurrency = _positive(env, "LOCAL_LAMBDA_CONCURRENCY", DEFAULT_CONCURRENCY, int)
        idle_seconds = _positive(env, "LOCAL_LAMBDA_IDLE_SECONDS", DEFAULT_IDLE_SECONDS, float)
        iam = env.get("LOCAL_IAM", "on").strip().lower() not in _OFF_VALUES
        usage_dir = env.get("LOCAL_IAM_USAGE_DIR", "").strip()
        return cls(
            concurrency=int(concurrency),
            idle_seconds=float(idle_seconds),
            iam=iam,
            iam_usage_dir=Path(usage_dir) if usage_dir else None,
            kill_rates=kill_rates(env.get("LOCAL_LAMBDA_KILLS", "")),
        )


def kill_rates(value: str) -> dict[str, float]:
    """LOCAL_LAMBDA_KILLS: a share for every function (0.05), or JSON per function
    ({"CreatePaymentFunction": 0.2, "*": 0.01}); ValueError naming the variable otherwise."""
    text = value.strip()
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"LOCAL_LAMBDA_KILLS must be a number or a JSON object, got {text!r}") from None
    rates = parsed if isinstance(parsed, dict) else {"*": parsed}
    for name, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"LOCAL_LAMBDA_KILLS: the rate of {name} must be a number from 0 to 1")
    return {str(name): float(rate) for name, rate in rates.items()}


def _positive(env: Mapping[str, str], name: str, default: float, kind: Callable[[str], float]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be a positive number, got {raw!r}") from error
    if value <= 0:
        raise ValueError(f"{name} must be a positive number, got {raw!r}")
    return value


@dataclass
class InvocationResult:
    function_id: str
    request_id: str
    duration_ms: float
    value: Any = None
    error: dict[str, Any] | None = None
    timed_out: bool = False
    init_duration_ms: float | None = None
    restore_duration_ms: float | None = None
    # With IAM checked: the (action, resource) pairs the invocation was allowed and refused, and
    # how many SDK clients it built.
    aws_calls: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    clients_created: int | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.timed_out

    @property
    def cold_start(self) -> bool:
        return self.init_duration_ms is not None or self.restore_duration_ms is not None

    def error_payload(self) -> dict[str, Any]:
        """The body Lambda returns for a failed invocation (Python runtime format)."""
        if self.timed_out:
            return {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {self.request_id} Error: Task timed out after "
                f"{self.duration_ms / 1000:.2f} seconds",
            }
        return dict(self.error or {})


class _EnvironmentFailed(Exception):
    def __init__(self, error: dict[str, Any], *, timed_out: bool = False):
        self.error = error
        self.timed_out = timed_out
        super().__init__(error.get("errorMessage", ""))


_EXITED = object()


def lambda_environment(function: FunctionSpec) -> dict[str, str]:
    """The variables Lambda itself sets in every execution environment."""
    stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.logical_id}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if function.snap_start else "on-demand",
        "LAMBDA_TASK_ROOT": str(function.code_uri),
        "_HANDLER": function.handler,
        "TZ": ":UTC",
    }


class ExecutionEnvironment:
    """One worker process serving one function, one invocation at a time."""

    def __init__(
        self,
        function: FunctionSpec,
        layer_paths: list[Path],
        environment: dict[str, str],
        *,
        check_iam: bool = True,
    ):
        self.function = function
        self.layer_paths = layer_paths
        self.environment = environment
        self.check_iam = check_iam and function.policy is not None
        # What the worker reported with its last answer (IAM: calls, refusals, clients built).
        self.last_report: dict[str, Any] = {}
        self.invocations = 0
        self.init_ms: float | None = None
        # SnapStart: how long this environment took to start from the snapshot.
        self.restore_ms: float | None = None
        self.last_used = time.monotonic()
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: Any = None
        self._messages: queue.Queue[Any] = queue.Queue()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self, channel: list[str]) -> list[str]:
        """The worker's command line; `channel` says how it talks to the runtime."""
        command = [
            sys.executable,
            "-I",
            "-u",
            str(WORKER_SCRIPT),
            *channel,
            "--parent-pid",
            str(os.getpid()),
            "--function-arn",
            self.function.arn,
            "--handler",
            self.function.handler,
            "--code-uri",
            str(self.function.code_uri),
        ]
        for layer in self.layer_paths:
            command += ["--layer", str(layer)]
        if self.check_iam and self.function.policy is not None:
            command += ["--iam-policy", self.function.policy.to_json()]
        return command

    def start(self) -> None:
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        command = self.command(["--request-fd", str(request_read), "--response-fd", str(response_write)])
        try:
            # Its own session: the terminal's Ctrl-C reaches the stack, which stops the workers.
            self._process = subprocess.Popen(
                command,
                env=self.environment,
                stdin=subprocess.DEVNULL,
                pass_fds=(request_read, response_write),
                start_new_session=True,
            )
        finally:
            os.close(request_read)
            os.close(response_write)
        self._connect(request_write, response_read)

    def _connect(self, request_write: int, response_read: int) -> None:
        self._requests = os.fdopen(request_write, "wb")
        threading.Thread(
            target=self._read_messages,
            args=(os.fdopen(response_read, "rb"),),
            name=f"{self.function.logical_id}-env-{self.pid}",
            daemon=True,
        ).start()

    def _read_messages(self, responses: Any) -> None:
        with responses:
            for line in responses:
                try:
                    self._messages.put(json.loads(line))
                except json.JSONDecodeError:
                    break
        self._messages.put(_EXITED)

    def _next_message(self, timeout_s: float) -> Any:
        try:
            return self._messages.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def initialise(self, request_id: str) -> float:
        """Start the worker and wait for its handler import; the Init Duration in ms."""
        started = time.monotonic()
        try:
            self.start()
        except OSError as error:
            raise _EnvironmentFailed(
                {"errorType": "Runtime.Unknown", "errorMessage": f"cannot start a worker: {error}"}
            ) from error
        deadline = started + INIT_TIMEOUT_S + self.function.timeout_s
        message = self._next_message(deadline - time.monotonic())
        if message is None:
            self.kill()
            raise _EnvironmentFailed(
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out during init after "
                    f"{time.monotonic() - started:.2f} seconds",
                },
                timed_out=True,
            )
        if message is _EXITED:
            raise _EnvironmentFailed(self._exit_error(request_id))
        if message.get("type") == "init_error":
            self.kill()
            raise _EnvironmentFailed({**message["error"], "requestId": request_id})
        self.init_ms = float(message.get("init_ms", (time.monotonic() - started) * 1000))
        return self.init_ms

    def invoke(self, request_id: str, event: Any, timeout_s: float, trace_id: str | None) -> Any:
        """Run one invocation; the handler's return value, or _EnvironmentFailed."""
        self.invocations += 1
        request = {
            "type": "invoke",
            "request_id": request_id,
            "event": event,
            "remaining_ms": int(timeout_s * 1000),
            "trace_id": trace_id,
        }
        try:
            self._requests.write(json.dumps(request).encode() + b"\n")
            self._requests.flush()
        except (OSError, ValueError):  # a broken pipe, or one already closed
            raise _EnvironmentFailed(self._exit_error(request_id)) from None
        message = self._next_message(timeout_s)
        if message is None:
            self.kill()
            raise _EnvironmentFailed({}, timed_out=True)
        if message is _EXITED:
            raise _EnvironmentFailed(self._exit_error(request_id))
        self.last_report = message.get("iam") or {}
        if message.get("type") == "error":
            raise _EnvironmentFailed(message["error"])
        return message.get("value")

    def _exit_error(self, request_id: str) -> dict[str, Any]:
        status = "unknown"
        if self._process is not None:
            try:
                code = self._process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.kill()
                code = self._process.returncode
            status = f"signal: {-code}" if code is not None and code < 0 else f"exit status {code}"
        return {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {status}",
        }

    def max_memory_mb(self) -> int | None:
        """Peak resident memory of the worker (Linux), as Lambda's `Max Memory Used`."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return math.ceil(int(line.split()[1]) / 1024)
        return None

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_requests()

    def stop(self) -> None:
        """Let the worker finish its loop (EOF on its request pipe), else kill it."""
        self._close_requests()
        if self._process is None:
            return
        try:
            self._process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close_requests(self) -> None:
        if self._requests is not None:
            with contextlib.suppress(OSError):
                self._requests.close()


class Snapshot:
    """A SnapStart function's snapshot: one worker that initialised (imports, before-snapshot
    hooks) and then forks an execution environment per request, each starting from that state.

    As in Lambda, the snapshot is made once (here: on the function's first environment, a
    prewarm included) and every later environment is restored from it rather than initialised.
    The snapshot is made again only if its process dies (a fixed import is then picked up)."""

    def __init__(self, make_process: Callable[[], ExecutionEnvironment]):
        self.make_process = make_process
        self.init_ms: float | None = None
        self.forks = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._replies: queue.Queue[Any] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._exited = threading.Condition()
        self._lock = threading.Lock()

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self, request_id: str) -> None:
        spec = self.make_process()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = spec.command(["--snapshot-fd", str(theirs.fileno())])
        started = time.monotonic()
        try:
            self._process = subprocess.Popen(
                command,
                env=spec.environment,
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except OSError as error:
            raise _EnvironmentFailed(
                {"errorType": "Runtime.Unknown", "errorMessage": f"cannot start a worker: {error}"}
            ) from error
        finally:
            theirs.close()
        # Each snapshot process gets its own reply queue: the reader of a snapshot that died may
        # still be draining, and its end-of-stream must not reach the snapshot made after it.
        self._control, self._replies, self.forks = ours, queue.Queue(), 0
        threading.Thread(
            target=self._read,
            args=(ours, self._replies),
            name=f"{spec.function.logical_id}-snapshot",
            daemon=True,
        ).start()
        deadline = started + INIT_TIMEOUT_S + spec.function.timeout_s
        try:
            message = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.stop()
            raise _EnvironmentFailed(
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out during init after "
                    f"{time.monotonic() - started:.2f} seconds",
                },
                timed_out=True,
            ) from None
        if message is _EXITED or message.get("type") == "init_error":
            self.stop()
            error = message.get("error") if isinstance(message, dict) else None
            raise _EnvironmentFailed(
                {
                    **(error or {"errorType": "Runtime.ExitError", "errorMessage": "the snapshot exited"}),
                    "requestId": request_id,
                }
            )
        self.init_ms = float(message["init_ms"])

    def _read(self, control: socket.socket, replies: queue.Queue[Any]) -> None:
        with control.makefile("rb") as lines:
            for line in lines:
                message = json.loads(line)
                if message.get("type") == "exited":
                    with self._exited:
                        self._exits[int(message["pid"])] = int(message["status"])
                        self._exited.notify_all()
                else:
                    replies.put(message)
        replies.put(_EXITED)

    def restore(self, request_id: str) -> tuple[int, int, int, bool]:
        """A new environment: (pid, its request pipe, its response pipe, whether it is a restore
        rather than the environment that initialised)."""
        with self._lock:
            if not self._alive():
                self._start(request_id)
            assert self._control is not None
            restore = self.forks > 0
            self.forks += 1
            request_read, request_write = os.pipe()
            response_read, response_write = os.pipe()
            try:
                socket.send_fds(
                    self._control, [json.dumps({"restore": restore}).encode()], [request_read, response_write]
                )
            except OSError as error:
                raise _EnvironmentFailed(
                    {"errorType": "Runtime.Unknown", "errorMessage": f"snapshot gone: {error}"}
                ) from error
            finally:
                os.close(request_read)
                os.close(response_write)
            try:
                reply = self._replies.get(timeout=RESTORE_TIMEOUT_S)
            except queue.Empty:
                reply = _EXITED
            if reply is _EXITED:
                raise _EnvironmentFailed(
                    {"errorType": "Runtime.ExitError", "errorMessage": "the snapshot exited"}
                )
            return int(reply["pid"]), request_write, response_read, restore

    def exit_status(self, pid: int, timeout_s: float) -> int | None:
        with self._exited:
            self._exited.wait_for(lambda: pid in self._exits or not self._alive(), timeout_s)
            return self._exits.get(pid)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.close()


class RestoredEnvironment(ExecutionEnvironment):
    """An execution environment of a SnapStart function: a fork of its snapshot."""

    def __init__(self, snapshot: Snapshot):
        spec = snapshot.make_process()
        super().__init__(spec.function, spec.layer_paths, spec.environment, check_iam=spec.check_iam)
        self.snapshot = snapshot
        self._pid: int | None = None
        self._killed = False

    @property
    def pid(self) -> int | None:
        return self._pid

    def is_alive(self) -> bool:
        if self._pid is None or self._killed or self.snapshot.exit_status(self._pid, 0) is not None:
            return False
        try:
            os.kill(self._pid, 0)
        except OSError:
            return False
        return True

    def initialise(self, request_id: str) -> float:
        started = time.monotonic()
        self._pid, request_write, response_read, restore = self.snapshot.restore(request_id)
        self._connect(request_write, response_read)
        message = self._next_message(RESTORE_TIMEOUT_S)
        if message is None or message is _EXITED or message.get("type") != "ready":
            self.kill()
            error = message.get("error") if isinstance(message, dict) else None
            raise _EnvironmentFailed(
                error
                or {
                    "errorType": "SnapStartTimeoutException" if message is None else "Runtime.ExitError",
                    "errorMessage": f"RequestId: {request_id} Error: the environment did not restore",
                },
                timed_out=message is None,
            )
        if restore:
            self.restore_ms = (time.monotonic() - started) * 1000
            return self.restore_ms
        self.init_ms = self.snapshot.init_ms
        return float(self.init_ms or 0.0)

    def _exit_error(self, request_id: str) -> dict[str, Any]:
        code = self.snapshot.exit_status(self._pid, _STOP_GRACE_S) if self._pid else None
        status = "unknown" if code is None else f"signal: {-code}" if code < 0 else f"exit status {code}"
        return {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {status}",
        }

    def kill(self) -> None:
        if self._pid is not None and self.is_alive():
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
            self.snapshot.exit_status(self._pid, _STOP_GRACE_S)
        self._killed = True
        self._close_requests()

    def stop(self) -> None:
        self._close_requests()
        if self._pid is not None and self.snapshot.exit_status(self._pid, _STOP_GRACE_S) is None:
            self.kill()


class FunctionPool:
    """The execution environments of one function."""

    def __init__(
        self,
        function: FunctionSpec,
        make_environment: Callable[[], ExecutionEnvironment],
        limit: int,
        *,
        reserved: bool,
    ):
        self.function = function
        self.make_environment = make_environment
        self.limit = limit
        self.reserved = reserved
        self._idle: list[ExecutionEnvironment] = []
        self._busy: set[ExecutionEnvironment] = set()
        self._starting = 0
        self._lock = threading.Lock()
        self._capacity = threading.Condition(self._lock)

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._busy) + self._starting

    def environments(self) -> list[ExecutionEnvironment]:
        with self._lock:
            return [*self._idle, *self._busy]

    def acquire(self) -> ExecutionEnvironment | None:
        """A warm environment, or None when the caller may start a new one; Throttled when full."""
        with self._lock:
            while self._idle:
                environment = self._idle.pop()
                if environment.is_alive():
                    self._busy.add(environment)
                    return environment
                environment.kill()
            if len(self._busy) + self._starting >= self.limit:
                raise Throttled(self.function.logical_id, self.limit, self.reserved)
            self._starting += 1
            return None

    def wait_for_capacity(self, timeout_s: float) -> None:
        with self._capacity:
            if self._idle or len(self._busy) + self._starting < self.limit:
                return
            self._capacity.wait(timeout_s)

    def started(self, environment: ExecutionEnvironment) -> None:
        with self._lock:
            self._starting -= 1
            self._busy.add(environment)

    def start_failed(self) -> None:
        with self._capacity:
            self._starting -= 1
            self._capacity.notify()

    def release(self, environment: ExecutionEnvironment, *, reusable: bool) -> None:
        with self._capacity:
            self._busy.discard(environment)
            if reusable and environment.is_alive():
                environment.last_used = time.monotonic()
                self._idle.append(environment)
            else:
                environment.kill()
            self._capacity.notify()

    def add_idle(self, environment: ExecutionEnvironment) -> None:
        with self._capacity:
            self._idle.append(environment)
            self._capacity.notify()

    def retire_idle(self, idle_seconds: float) -> int:
        now = time.monotonic()
        with self._lock:
            retired = [env for env in self._idle if now - env.last_used >= idle_seconds]
            self._idle = [env for env in self._idle if env not in retired]
        for environment in retired:
            environment.stop()
        return len(retired)

    def stop_all(self) -> None:
        with self._lock:
            environments = [*self._idle, *self._busy]
            self._idle = []
        for environment in environments:
            environment.kill()


def default_environment(function: FunctionSpec) -> dict[str, str]:
    """This process's environment plus the function's variables (for tools and tests)."""
    return {**os.environ, **function.environment}


class FunctionRuntime:
    """Invokes the template's functions in pooled worker processes."""

    def __init__(
        self,
        template: Template,
        *,
        environment_for: Callable[[FunctionSpec], dict[str, str]] = default_environment,
        settings: RuntimeSettings | None = None,
    ):
        self.template = template
        self.settings = settings or RuntimeSettings.from_env()
        self.environment_for = environment_for
        layers = {layer.logical_id: layer.content_uri for layer in template.layers}
        self._snapshots: list[Snapshot] = []
        self._pools: dict[str, FunctionPool] = {}
        for function_id, function in template.functions.items():
            layer_paths = self._layer_paths(function, layers)
            reserved = function.reserved_concurrency is not None
            limit = function.reserved_concurrency if reserved else self.settings.concurrency
            self._pools[function_id] = FunctionPool(
                function,
                self._environment_factory(function, layer_paths),
                int(limit or 0),
                reserved=reserved,
            )
        # Every (action, resource) each function was allowed, for the unused-grants report.
        self.iam_usage: dict[str, set[tuple[str, str]]] = {function_id: set() for function_id in self._pools}
        self._usage_lock = threading.Lock()
        self._stopping = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="lambda-env-reaper", daemon=True)
        self._reaper.start()

    @staticmethod
    def _layer_paths(function: FunctionSpec, layers: dict[str, Path]) -> list[Path]:
        # Lambda unpacks each layer into /opt; Python layers are found in /opt/python.
        paths = []
        for layer_id in function.layers:
            content = layers.get(layer_id)
            if content is None:
                logger.warning("%s uses layer %s, not served locally", function.logical_id, layer_id)
                continue
            paths += [folder for folder in (content / "python", content) if folder.is_dir()]
        return paths

    def _environment_factory(
        self, function: FunctionSpec, layer_paths: list[Path]
    ) -> Callable[[], ExecutionEnvironment]:
        def environment() -> dict[str, str]:
            # The worker's own variable: it removes it before the handler is imported.
            faults = {}
            if self.settings.faults_file is not None:
                faults["_LOCAL_AWS_FAULTS_FILE"] = str(self.settings.faults_file)
            return {**self.environment_for(function), **lambda_environment(function), **faults}

        if function.snap_start:
            snapshot = Snapshot(
                lambda: ExecutionEnvironment(
                    function, layer_paths, environment(), check_iam=self.settings.iam
                )
            )
            self._snapshots.append(snapshot)
            return lambda: RestoredEnvironment(snapshot)

        def make() -> ExecutionEnvironment:
            return ExecutionEnvironment(function, layer_paths, environment(), check_iam=self.settings.iam)

        return make

    @property
    def function_ids(self) -> list[str]:
        return list(self.template.functions)

    def pool(self, function_id: str) -> FunctionPool:
        return self._pools[function_id]

    def resolve_function_name(self, name_or_arn: str) -> str | None:
        """Accept a logical id, `Name:qualifier`, or a full/partial ARN ending in the logical id."""
        name = name_or_arn.split(":function:", 1)[1] if ":function:" in name_or_arn else name_or_arn
        name = name.split(":", 1)[0]
        return name if name in self.template.functions else None

    def prewarm(self) -> dict[str, str]:
        """Start one environment per function now, in parallel; the functions whose init failed.

        A pre-warmed environment still reports its Init Duration on its first invocation."""
        failures: dict[str, str] = {}
        lock = threading.Lock()

        def warm(function_id: str) -> None:
            pool = self._pools[function_id]
            if pool.limit < 1:
                return
            environment = pool.make_environment()
            try:
                environment.initialise("prewarm")
            except _EnvironmentFailed as failure:
                with lock:
                    failures[function_id] = failure.error.get("errorMessage", "init failed")
                logger.error("%s: %s", function_id, failures[function_id])
                return
            pool.add_idle(environment)

        threads = [threading.Thread(target=warm, args=(function_id,)) for function_id in self._pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return failures

    def invoke(
        self,
        function_id: str,
        event: Any,
        *,
        wait_s: float | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
    ) -> InvocationResult:
        """A synchronous invocation (RequestResponse). Throttled when the pool is full.

        `wait_s` is how long the caller waits (API Gateway's integration timeout): past it the
        result says timed_out, while the invocation itself runs on to the function's Timeout."""
        pool = self._pools[function_id]
        request_id = request_id or str(uuid.uuid4())
        warm = pool.acquire()
        outcome: list[InvocationResult] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(self._run(pool, warm, request_id, event, trace_id))
            except Exception as error:  # a bug here must not leave the caller waiting forever
                logger.exception("%s: the local runtime failed on request %s", function_id, request_id)
                error_document = {"errorType": "Runtime.Unknown", "errorMessage": str(error)}
                outcome.append(InvocationResult(function_id, request_id, 0.0, error=error_document))
            finally:
                done.set()

        started = time.monotonic()
        if wait_s is None:
            run()
        else:
            threading.Thread(target=run, name=f"invoke-{function_id}-{request_id[:8]}", daemon=True).start()
            if not done.wait(wait_s):
                return InvocationResult(
                    function_id, request_id, (time.monotonic() - started) * 1000, timed_out=True
                )
        return outcome[0]

    def invoke_event(
        self, function_id: str, event: Any, *, request_id: str | None = None
    ) -> InvocationResult:
        """An asynchronous invocation (Event, schedules): waits for capacity instead of throttling."""
        pool = self._pools[function_id]
        while True:
            try:
                return self.invoke(function_id, event, request_id=request_id)
            except Throttled:
                if self._stopping.is_set():
                    raise
                pool.wait_for_capacity(_ASYNC_RETRY_MAX_S)

    def _run(
        self,
        pool: FunctionPool,
        environment: ExecutionEnvironment | None,
        request_id: str,
        event: Any,
        trace_id: str | None,
    ) -> InvocationResult:
        function = pool.function
        function_id = function.logical_id
        if environment is None:
            environment = pool.make_environment()
            try:
                init_ms = environment.initialise(request_id)
            except _EnvironmentFailed as failure:
                pool.start_failed()
                logger.error(
                    "%s INIT_REPORT Phase: init Status: %s Error Type: %s",
                    function_id,
                    "timeout" if failure.timed_out else "error",
                    failure.error.get("errorType"),
                )
                return InvocationResult(function_id, request_id, 0.0, error=failure.error)
            pool.started(environment)
            logger.debug("%s new environment (pid %s), init %.1f ms", function_id, environment.pid, init_ms)
        first = environment.invocations == 0
        init_duration = environment.init_ms if first else None
        restore_duration = environment.restore_ms if first else None

        logger.debug("%s START RequestId: %s Version: $LATEST", function_id, request_id)
        started = time.monotonic()
        result = InvocationResult(
            function_id,
            request_id,
            0.0,
            init_duration_ms=init_duration,
            restore_duration_ms=restore_duration,
        )
        reusable = True
        try:
            result.value = environment.invoke(request_id, event, float(function.timeout_s), trace_id)
        except _EnvironmentFailed as failure:
            if failure.timed_out:
                result.timed_out = True
                reusable = False
                logger.error(
                    "%s %s %s Task timed out after %.2f seconds",
                    function_id,
                    datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    request_id,
                    float(function.timeout_s),
                )
            else:
                result.error = failure.error
                reusable = failure.error.get("errorType") != "Runtime.ExitError"
        result.duration_ms = (time.monotonic() - started) * 1000
        self._record_calls(environment, result)
        if result.timed_out:
            result.duration_ms = function.timeout_s * 1000.0
        self._report(environment, result)
        pool.release(environment, reusable=reusable)
        return result

    def _record_calls(self, environment: ExecutionEnvironment, result: InvocationResult) -> None:
        report, environment.last_report = environment.last_report, {}
        if not report:
            return
        result.aws_calls = [(str(action), str(resource)) for action, resource in report.get("used", [])]
        result.refused = [(str(action), str(resource)) for action, resource in report.get("refused", [])]
        result.clients_created = int(report.get("clients_created", 0))
        with self._usage_lock:
            self.iam_usage[result.function_id].update(result.aws_calls)
        for action, resource in result.refused:
            logger.warning(
                "%s AccessDenied: %s on %s (its IAM policy in template.yaml does not allow it)",
                result.function_id,
                action,
                resource,
            )

    def record_service_calls(self, function_id: str, calls: list[tuple[str, str]]) -> None:
        """Calls Lambda makes with the function's role (an event source mapping's polling)."""
        with self._usage_lock:
            self.iam_usage[function_id].update(calls)

    def write_iam_usage(self) -> Path | None:
        folder = self.settings.iam_usage_dir
        if folder is None or not self.settings.iam:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"usage-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        with self._usage_lock:
            usage = {name: sorted(calls) for name, calls in self.iam_usage.items()}
        target.write_text(json.dumps({"template": str(self.template.path), "calls": usage}, indent=1))
        return target

    @staticmethod
    def _report(environment: ExecutionEnvironment, result: InvocationResult) -> None:
        function = environment.function
        parts = [
            f"REPORT RequestId: {result.request_id}",
            f"Duration: {result.duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(result.duration_ms)} ms",
            f"Memory Size: {function.memory_size_mb} MB",
        ]
        memory = environment.max_memory_mb()
        if memory is not None:
            parts.append(f"Max Memory Used: {memory} MB")
        if result.init_duration_ms is not None:
            parts.append(f"Init Duration: {result.init_duration_ms:.2f} ms")
        if result.restore_duration_ms is not None:
            parts.append(f"Restore Duration: {result.restore_duration_ms:.2f} ms")
            parts.append(f"Billed Restore Duration: {math.ceil(result.restore_duration_ms)} ms")
        if result.timed_out:
            parts.append("Status: timeout")
        elif result.error is not None and result.error.get("errorType", "").startswith("Runtime."):
            parts.append(f"Status: error\tError Type: {result.error['errorType']}")
        logger.info("%s %s", function.logical_id, "\t".join(parts))

    def _reap(self) -> None:
        while not self._stopping.wait(_REAP_INTERVAL_S):
            for pool in self._pools.values():
                retired = pool.retire_idle(self.settings.idle_seconds)
                if retired:
                    logger.info("%s: retired %d idle environment(s)", pool.function.logical_id, retired)

    def stop(self) -> None:
        """Kill every worker, busy or idle."""
        self._stopping.set()
        for pool in self._pools.values():
            pool.stop_all()
        for snapshot in self._snapshots:
            snapshot.stop()
        self._reaper.join(timeout=_STOP_GRACE_S)
        self.write_iam_usage()
