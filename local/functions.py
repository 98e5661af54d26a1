"""Run the template's Lambda handlers in this process.

Each handler module is imported from `<CodeUri>/<module>.py` under a name derived from its
CodeUri (functions/create_payment/ + app -> `functions.create_payment.app`), so two functions'
`app.py` never shadow each other, and a test importing `functions.create_payment.app` gets the
same module object. Layer folders go on sys.path first, as /opt/python is in Lambda.

An invocation runs in its own thread with a fake Lambda context. The caller waits at most the
function's Timeout; a handler still running then is reported as timed out (Lambda would kill
it; a Python thread cannot be killed, so it is left to finish in the background and logged).
A handler whose import fails is reported per invocation as Runtime.ImportModuleError, like
Lambda does, and its import is retried on the next invocation so a fix is picked up.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from local.template import FunctionSpec, Template

logger = logging.getLogger(__name__)


class LambdaContext:
    """The attributes and method of the Python runtime's context object that handlers use."""

    def __init__(self, function: FunctionSpec, request_id: str, timeout_s: float | None = None):
        self.function_name = function.logical_id
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_size_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function.logical_id}"
        started = datetime.now(UTC)
        self.log_stream_name = f"{started:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + (function.timeout_s if timeout_s is None else timeout_s)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InvocationResult:
    function_id: str
    request_id: str
    duration_ms: float
    value: Any = None
    error: BaseException | None = None
    error_type: str | None = None
    stack_trace: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None or self.timed_out

    def error_payload(self) -> dict[str, Any]:
        """The body Lambda returns for an unhandled error (Python runtime format)."""
        if self.timed_out:
            return {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {self.request_id} Error: Task timed out after "
                f"{self.duration_ms / 1000:.2f} seconds",
            }
        return {
            "errorMessage": str(self.error),
            "errorType": self.error_type or type(self.error).__name__,
            "requestId": self.request_id,
            "stackTrace": self.stack_trace,
        }


class HandlerImportError(Exception):
    """The handler's module could not be imported or has no such function."""


def _identifier(part: str) -> str:
    cleaned = re.sub(r"\W", "_", part)
    return f"_{cleaned}" if cleaned[:1].isdigit() else cleaned


def module_name_for(function: FunctionSpec, root: Path) -> str:
    """`functions.create_payment.app` for CodeUri functions/create_payment/ and Handler app.x."""
    module, _ = function.module_and_attribute
    try:
        relative_parts = function.code_uri.relative_to(root).parts
    except ValueError:
        relative_parts = (function.code_uri.name,)
    return ".".join([_identifier(part) for part in relative_parts] + module.split("."))


def module_file_for(function: FunctionSpec) -> Path:
    module, _ = function.module_and_attribute
    base = function.code_uri.joinpath(*module.split("."))
    package_init = base / "__init__.py"
    return package_init if package_init.exists() else base.with_suffix(".py")


def add_layers_to_path(template: Template) -> None:
    """Put each layer's code where Lambda would (/opt/python): ahead of site-packages."""
    for layer in reversed(template.layers):
        for folder in (layer.content_uri, layer.content_uri / "python"):
            if folder.is_dir() and str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
                logger.debug("layer %s on sys.path: %s", layer.logical_id, folder)


def warn_about_shadowing(template: Template) -> None:
    """Sibling modules are top-level imports in Lambda; in one process, same names collide."""
    owners: dict[str, str] = {}
    for function in template.functions.values():
        handler_module = function.module_and_attribute[0].split(".")[0]
        if not function.code_uri.is_dir():
            continue
        for entry in function.code_uri.iterdir():
            name = (
                entry.stem
                if entry.suffix == ".py"
                else entry.name
                if (entry / "__init__.py").exists()
                else None
            )
            if name is None or name == handler_module or name.startswith("_"):
                continue
            if name in owners and owners[name] != function.logical_id:
                logger.warning(
                    "module %r exists in the code of %s and %s; locally both import the first one loaded",
                    name,
                    owners[name],
                    function.logical_id,
                )
            owners.setdefault(name, function.logical_id)


class FunctionRuntime:
    """Loads the template's handlers and invokes them with a fake Lambda context."""

    def __init__(self, template: Template):
        self.template = template
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._import_errors: dict[str, HandlerImportError] = {}
        self._lock = threading.Lock()

    @property
    def function_ids(self) -> list[str]:
        return list(self.template.functions)

    def resolve_function_name(self, name_or_arn: str) -> str | None:
        """Accept a logical id, `Name:qualifier`, or a full/partial ARN ending in the logical id."""
        name = name_or_arn.split(":function:", 1)[1] if ":function:" in name_or_arn else name_or_arn
        name = name.split(":", 1)[0]
        return name if name in self.template.functions else None

    def load_all(self) -> dict[str, HandlerImportError]:
        """Import every handler now (after the environment is set); return the failures."""
        add_layers_to_path(self.template)
        # The template's folder is the root of handler packages (relative imports in app.py).
        if str(self.template.root) not in sys.path:
            sys.path.append(str(self.template.root))
        warn_about_shadowing(self.template)
        for function_id in self.template.functions:
            try:
                self._load(function_id)
            except HandlerImportError as error:
                logger.error("%s: %s", function_id, error)
        return dict(self._import_errors)

    def _load(self, function_id: str) -> Callable[[Any, Any], Any]:
        with self._lock:
            if function_id in self._handlers:
                return self._handlers[function_id]
            function = self.template.functions[function_id]
            try:
                handler = self._import_handler(function)
            except HandlerImportError as error:
                self._import_errors[function_id] = error
                raise
            self._import_errors.pop(function_id, None)
            self._handlers[function_id] = handler
            return handler

    def _import_handler(self, function: FunctionSpec) -> Callable[[Any, Any], Any]:
        module_name = module_name_for(function, self.template.root)
        module_file = module_file_for(function)
        _, attribute = function.module_and_attribute
        if not module_file.exists():
            raise HandlerImportError(
                f"Unable to import module '{function.handler}': {module_file} does not exist"
            )
        module = self._import_module(module_name, module_file, function.code_uri)
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise HandlerImportError(
                f"Handler '{attribute}' missing on module '{module_name}' ({module_file})"
            )
        logger.debug("%s -> %s.%s", function.logical_id, module_name, attribute)
        return handler

    @staticmethod
    def _import_module(module_name: str, module_file: Path, code_uri: Path) -> ModuleType:
        existing = sys.modules.get(module_name)
        if (
            existing is not None
            and Path(getattr(existing, "__file__", "") or "").resolve() == module_file.resolve()
        ):
            return existing
        # In Lambda the code folder is the working directory on sys.path: sibling imports work.
        # Appended, so it can never hide an installed package.
        if str(code_uri) not in sys.path:
            sys.path.append(str(code_uri))
        spec = importlib.util.spec_from_file_location(module_name, module_file)
        if spec is None or spec.loader is None:
            raise HandlerImportError(f"Unable to import module '{module_name}' from {module_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            sys.modules.pop(module_name, None)
            detail = "".join(traceback.format_exception(error)).rstrip()
            raise HandlerImportError(f"Unable to import module '{module_name}': {error}\n{detail}") from error
        return module

    def invoke(
        self,
        function_id: str,
        event: Any,
        *,
        wait_s: float | None = None,
        request_id: str | None = None,
    ) -> InvocationResult:
        """Run the handler; wait at most `wait_s` (default: the function's Timeout)."""
        function = self.template.functions[function_id]
        request_id = request_id or str(uuid.uuid4())
        timeout_s = float(function.timeout_s) if wait_s is None else min(float(function.timeout_s), wait_s)
        started = time.monotonic()

        try:
            handler = self._load(function_id)
        except HandlerImportError as error:
            return InvocationResult(
                function_id,
                request_id,
                duration_ms=0.0,
                error=error,
                error_type="Runtime.ImportModuleError",
            )

        outcome: dict[str, Any] = {}

        def run() -> None:
            context = LambdaContext(function, request_id)
            try:
                outcome["value"] = handler(event, context)
            except BaseException as error:
                outcome["error"] = error

        worker = threading.Thread(target=run, name=f"{function_id}-{request_id[:8]}", daemon=True)
        worker.start()
        worker.join(timeout_s)
        duration_ms = (time.monotonic() - started) * 1000
        if worker.is_alive():
            logger.error(
                "%s request %s timed out after %.2f s; the handler keeps running in the background "
                "(Lambda would have stopped it)",
                function_id,
                request_id,
                timeout_s,
            )
            return InvocationResult(function_id, request_id, duration_ms=timeout_s * 1000, timed_out=True)

        if "error" in outcome:
            error = outcome["error"]
            logger.error(
                "%s request %s failed:\n%s",
                function_id,
                request_id,
                "".join(traceback.format_exception(error)).rstrip(),
            )
            return InvocationResult(
                function_id,
                request_id,
                duration_ms,
                error=error,
                stack_trace=traceback.format_list(traceback.extract_tb(error.__traceback__)),
            )
        logger.info("REPORT %s RequestId: %s Duration: %.1f ms", function_id, request_id, duration_ms)
        return InvocationResult(function_id, request_id, duration_ms, value=outcome.get("value"))
