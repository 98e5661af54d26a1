"""One Lambda execution environment: a process that imports one handler and serves one invocation
at a time. Started by local.functions; not meant to be run by hand.

    python -I -u local/lambda_worker.py --request-fd R --response-fd W --parent-pid P
        --function-arn ARN --handler app.lambda_handler --code-uri DIR [--layer DIR ...]

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
    parser.add_argument("--request-fd", type=int, required=True)
    parser.add_argument("--response-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--function-arn", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--code-uri", required=True)
    parser.add_argument("--layer", action="append", default=[])
    # The function's IAM policy (local/iam.py): its AWS calls are checked against it.
    parser.add_argument("--iam-policy")
    return parser.parse_args(argv)


def _iam_guard(policy_json: str | None) -> Any:
    """Load local/iam.py by its path (the repository is not on the handler's path) and hook it
    into botocore before the handler can build a client."""
    if not policy_json:
        return None
    spec = importlib.util.spec_from_file_location(
        "_local_iam", os.path.join(os.path.dirname(__file__), "iam.py")
    )
    if spec is None or spec.loader is None:
        raise ImportError("local/iam.py is missing")
    iam = importlib.util.module_from_spec(spec)
    sys.modules["_local_iam"] = iam
    spec.loader.exec_module(iam)
    guard = iam.Guard(
        iam.Policy.from_json(policy_json), log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    iam.install(guard)
    return guard


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    requests_in = os.fdopen(args.request_fd, "rb")
    responses_out = os.fdopen(args.response_fd, "wb")

    def send(message: dict[str, Any]) -> None:
        responses_out.write(json.dumps(message).encode() + b"\n")
        responses_out.flush()

    guard = _iam_guard(args.iam_policy)

    def report() -> dict[str, Any]:
        return {"iam": guard.drain()} if guard is not None else {}

    _set_path(args.code_uri, args.layer)
    # A missing code folder fails below as Lambda reports it: no module named 'app'.
    with contextlib.suppress(OSError):
        os.chdir(args.code_uri)
    started = time.perf_counter()
    try:
        handler = _import_handler(args.handler)
    except Exception as error:
        log_error(error, "Runtime.ImportModuleError")
        send({"type": "init_error", "error": error_document(error, "", "Runtime.ImportModuleError")})
        return 1
    send({"type": "ready", "init_ms": (time.perf_counter() - started) * 1000})

    for line in requests_in:
        message = json.loads(line)
        request_id = message.get("request_id") or str(uuid.uuid4())
        # Powertools and the X-Ray SDK read the trace header from here, as in Lambda.
        os.environ["_X_AMZN_TRACE_ID"] = message.get("trace_id") or ""
        context = LambdaContext(request_id, int(message.get("remaining_ms", 3000)), args.function_arn)
        try:
            value = handler(message.get("event"), context)
        except Exception as error:
            log_error(error)
            send({"type": "error", "error": error_document(error, request_id), **report()})
            continue
        try:
            send({"type": "result", "value": value, **report()})
        except (TypeError, ValueError) as error:
            marshal = {
                "errorMessage": f"Unable to marshal response: {error}",
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
                "stackTrace": [],
            }
            send({"type": "error", "error": marshal, **report()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
