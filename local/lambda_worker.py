"""One Lambda execution environment: a process that imports one handler and serves one invocation
at a time. Started by local.functions; not meant to be run by hand.

    python -I -u local/lambda_worker.py --request-fd R --response-fd W --parent-pid P
        --function-arn ARN --handler app.lambda_handler --code-uri DIR [--layer DIR ...]
        [--iam-policy JSON]

With --snapshot-fd S instead of the two pipes, it is a SnapStart function's snapshot: it
initialises and runs the before-snapshot hooks, then, for each request on the UNIX socket S
(which carries the new environment's two pipe ends), forks an execution environment that starts
from this initialised state, as Lambda resumes environments from a snapshot:

    <- {"type": "ready", "init_ms": ...}   -> {"restore": true} + 2 fds   <- {"type": "forked", "pid": N}
    <- {"type": "exited", "pid": N, "status": 0}   (each environment, when it ends)

It speaks newline-delimited JSON over two pipes (the handler's own stdout and stderr stay free for
its logs, as in Lambda where they go to CloudWatch):

    <- {"type": "ready", "init_ms": 412.3}            after the handler's module was imported
    <- {"type": "init_error", "error": {...}}         the import failed (Runtime.ImportModuleError)
    -> {"type": "invoke", "request_id": "...", "event": ..., "remaining_ms": 29000}
    <- {"type": "result", "value": ...} | {"type": "error", "error": {...}}
       (with --iam-policy, both carry "iam": the calls allowed and refused, the clients built)

Only the standard library is imported before the handler, so `init_ms` is the handler's own
import cost. sys.path is the function's code folder, then its layers (as /var/task and
/opt/python are in Lambda), then the interpreter's own packages; the repository root is not on
it, so a handler that imports something Lambda would not have fails here too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any

PARENT_CHECK_INTERVAL_S = 0.5


class LambdaContext:
    """The attributes and method of the Python runtime's context object that handlers use."""

    def __init__(self, request_id: str, remaining_ms: int, function_arn: str):
        function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{function_name}")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def error_document(error: BaseException, request_id: str, error_type: str | None = None) -> dict[str, Any]:
    """The body Lambda's Python runtime returns for an unhandled error."""
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
    }


def log_error(error: BaseException, error_type: str | None = None) -> None:
    """What the runtime prints to the function's log for an unhandled error."""
    detail = "".join(traceback.format_exception(error)).rstrip()
    name = error_type or type(error).__name__
    print(f"[ERROR] {name}: {error}\n{detail}", file=sys.stderr, flush=True)


def _watch_parent(parent_pid: int) -> None:
    # The stack may die without stopping us (kill -9); an environment must not outlive it.
    while True:
        time.sleep(PARENT_CHECK_INTERVAL_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def _import_handler(handler: str) -> Any:
    module_name, _, attribute = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ImportError(f"Unable to import module '{module_name}': {error}") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ImportError(f"Handler '{attribute}' missing on module '{module_name}'")
    return function


def _set_path(code_uri: str, layers: list[str]) -> None:
    script_folder = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if entry and os.path.abspath(entry) != script_folder]
    sys.path[:] = [code_uri, *layers, *rest]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lambda_worker")
    parser.add_argument("--request-fd", type=int)
    parser.add_argument("--response-fd", type=int)
    # SnapStart: initialise, run the before-snapshot hooks, then fork environments on request.
    parser.add_argument("--snapshot-fd", type=int)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--function-arn", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--code-uri", required=True)
    parser.add_argument("--layer", action="append", default=[])
    # The function's IAM policy (local/iam.py): its AWS calls are checked against it.
    parser.add_argument("--iam-policy")
    return parser.parse_args(argv)


def _load_sibling(name: str) -> Any:
    """local/<name>.py, loaded by its path: the repository is not on the handler's path."""
    spec = importlib.util.spec_from_file_location(
        f"_local_{name}", os.path.join(os.path.dirname(__file__), f"{name}.py")
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"local/{name}.py is missing")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"_local_{name}"] = module
    spec.loader.exec_module(module)
    return module


def _botocore_hooks(policy_json: str | None) -> tuple[Any, Any]:
    """The IAM guard (with --iam-policy) and the AWS faults injector (with _LOCAL_AWS_FAULTS_FILE
    set), hooked into botocore, IAM's first, before the handler can build a client."""

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    handlers: list[Any] = []
    guard = injector = None
    if policy_json:
        iam = _load_sibling("iam")
        guard = iam.Guard(iam.Policy.from_json(policy_json), log=log)
        handlers += guard.handlers()
    faults_file = os.environ.pop("_LOCAL_AWS_FAULTS_FILE", "")
    if faults_file:
        faults = _load_sibling("aws_faults")
        injector = faults.Injector(
            os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function"), faults.Path(faults_file), log=log
        )
        handlers += injector.handlers()
    if handlers:
        _load_sibling("botocore_hooks").install(handlers)
    return guard, injector


# A killed invocation dies at a random point within its expected length: this environment's
# typical invocation (a moving average), this long until it has served one.
FIRST_INVOCATION_GUESS_S = 0.25


class _Killer:
    """Kill rules (LOCAL_LAMBDA_KILLS, or PUT /_local/aws-faults): at their rate, an invocation's
    environment is killed (SIGKILL, no clean-up, as an out-of-memory kill or a crash ends it in
    Lambda) at a random point in it."""

    def __init__(self, injector: Any) -> None:
        self.injector = injector
        self._random = random.SystemRandom()
        self._timer: threading.Timer | None = None
        self._typical_s = FIRST_INVOCATION_GUESS_S
        self._started = 0.0

    def arm(self, remaining_ms: int) -> None:
        self._started = time.monotonic()
        if self.injector is None or self.injector.fault_for("lambda", "Invoke") != "Kill":
            return
        delay = self._random.uniform(0, min(self._typical_s, remaining_ms / 1000))
        self._timer = threading.Timer(delay, self._kill)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._typical_s = 0.7 * self._typical_s + 0.3 * (time.monotonic() - self._started)

    @staticmethod
    def _kill() -> None:
        print(
            "[LOCAL] execution environment killed mid-invocation (LOCAL_LAMBDA_KILLS)",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGKILL)


# This environment's killer (main sets it; a SnapStart fork inherits it with the snapshot).
_KILLER = _Killer(None)


def _sender(stream: Any) -> Any:
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            stream.write(json.dumps(message).encode() + b"\n")
            stream.flush()

    return send


def _run_hooks(hooks: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> None:
    for function, args, kwargs in hooks:
        function(*args, **kwargs)


def _snapshot_hooks() -> tuple[list[Any], list[Any]]:
    """The runtime hooks registered with snapshot_restore_py (part of Lambda's managed Python
    runtime): before-snapshot ones run in the reverse order of registration, after-restore ones
    in the order of registration (Lambda's "SnapStart runtime hooks for Python")."""
    try:
        import snapshot_restore_py
    except ImportError:
        return [], []
    return list(reversed(snapshot_restore_py.get_before_snapshot())), list(
        snapshot_restore_py.get_after_restore()
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    guard, injector = _botocore_hooks(args.iam_policy)
    global _KILLER
    _KILLER = _Killer(injector)
    if args.snapshot_fd is not None:
        control = socket.socket(fileno=args.snapshot_fd)
        send = _sender(control.makefile("wb"))
    else:
        send = _sender(os.fdopen(args.response_fd, "wb"))

    _set_path(args.code_uri, args.layer)
    # A missing code folder fails below as Lambda reports it: no module named 'app'.
    with contextlib.suppress(OSError):
        os.chdir(args.code_uri)
    started = time.perf_counter()
    try:
        handler = _import_handler(args.handler)
        if args.snapshot_fd is not None:
            before_snapshot, _ = _snapshot_hooks()
            _run_hooks(before_snapshot)
    except Exception as error:
        log_error(error, "Runtime.ImportModuleError")
        send({"type": "init_error", "error": error_document(error, "", "Runtime.ImportModuleError")})
        return 1
    send({"type": "ready", "init_ms": (time.perf_counter() - started) * 1000})
    if args.snapshot_fd is not None:
        return _keep_snapshot(control, send, handler, guard, args)
    return _serve(os.fdopen(args.request_fd, "rb"), send, handler, guard, args.function_arn)


def _keep_snapshot(
    control: socket.socket, send: Any, handler: Any, guard: Any, args: argparse.Namespace
) -> int:
    """The snapshot: this initialised process forks an execution environment for each request of
    the runtime, which passes the new environment's two pipe ends along (SCM_RIGHTS)."""

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.2)
                continue
            send({"type": "exited", "pid": pid, "status": os.waitstatus_to_exitcode(status)})

    threading.Thread(target=reap, daemon=True).start()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 4096, 2)
        except OSError:
            return 0
        if not data:
            return 0
        request = json.loads(data)
        # Python reseeds `random` in a forked child; a restored snapshot is not reseeded (every
        # environment resumes with the same generator state), so the child gets that state back.
        snapshot_random = random.getstate()
        pid = os.fork()
        if pid == 0:
            random.setstate(snapshot_random)
            # The environment keeps no hold on the runtime's socket to the snapshot.
            with contextlib.suppress(OSError):
                os.close(args.snapshot_fd)
            os._exit(_restored(fds, handler, guard, args, restore=bool(request.get("restore"))))
        for fd in fds:
            os.close(fd)
        send({"type": "forked", "pid": pid})


def _restored(fds: list[int], handler: Any, guard: Any, args: argparse.Namespace, *, restore: bool) -> int:
    """An environment started from the snapshot. The first one is the environment that
    initialised (its REPORT carries the Init Duration); every later one is a restore: its
    after-restore hooks run, and its REPORT carries the Restore Duration."""
    snapshot_pid = os.getppid()
    threading.Thread(target=_watch_parent, args=(snapshot_pid,), daemon=True).start()
    os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = (
        os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "").rsplit("]", 1)[0] + "]" + uuid.uuid4().hex
    )
    request_fd, response_fd = fds
    send = _sender(os.fdopen(response_fd, "wb"))
    if guard is not None:
        guard.drain()
    started = time.perf_counter()
    if restore:
        _, after_restore = _snapshot_hooks()
        try:
            _run_hooks(after_restore)
        except Exception as error:
            log_error(error, "Runtime.RestoreError")
            send({"type": "init_error", "error": error_document(error, "", "Runtime.RestoreError")})
            return 1
        send({"type": "ready", "restore_ms": (time.perf_counter() - started) * 1000})
    else:
        send({"type": "ready", "init_ms": None})
    return _serve(os.fdopen(request_fd, "rb"), send, handler, guard, args.function_arn)


def _serve(requests_in: Any, send: Any, handler: Any, guard: Any, function_arn: str) -> int:
    def report() -> dict[str, Any]:
        return {"iam": guard.drain()} if guard is not None else {}

    for line in requests_in:
        message = json.loads(line)
        request_id = message.get("request_id") or str(uuid.uuid4())
        # Powertools and the X-Ray SDK read the trace header from here, as in Lambda.
        os.environ["_X_AMZN_TRACE_ID"] = message.get("trace_id") or ""
        remaining_ms = int(message.get("remaining_ms", 3000))
        context = LambdaContext(request_id, remaining_ms, function_arn)
        _KILLER.arm(remaining_ms)
        try:
            value = handler(message.get("event"), context)
        except Exception as error:
            log_error(error)
            send({"type": "error", "error": error_document(error, request_id), **report()})
            _KILLER.disarm()
            continue
        try:
            send({"type": "result", "value": value, **report()})
            _KILLER.disarm()
        except (TypeError, ValueError) as error:
            marshal = {
                "errorMessage": f"Unable to marshal response: {error}",
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
                "stackTrace": [],
            }
            send({"type": "error", "error": marshal, **report()})
            _KILLER.disarm()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
