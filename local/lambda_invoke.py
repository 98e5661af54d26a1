"""The Lambda Invoke API, like `sam local start-lambda`: boto3 and the AWS CLI can invoke any function.

`POST /2015-03-31/functions/{FunctionName}/invocations`, FunctionName being the template's logical
id (a full or partial ARN ending in it, or `Name:qualifier`, works too). Responses follow the Lambda
service: 200 with the result, 202 for `Event`, 204 for `DryRun`; a handler error is still 200, with
`X-Amz-Function-Error: Unhandled` and the runtime's error document; service errors carry
`x-amzn-ErrorType`, which botocore turns into the right exception class. A synchronous call to a
function at its concurrency limit is refused with 429 TooManyRequestsException; an `Event` waits
for capacity, as Lambda's event queue does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from local.aws_faults import FaultSpecError, parse_rules, write_rules
from local.functions import FunctionRuntime, Throttled
from local.http_server import BackgroundServer, BodyTooLarge, LocalRequestHandler
from local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION

logger = logging.getLogger(__name__)

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT = 1024 * 1024
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")


class LambdaInvokeApi:
    def __init__(self, runtime: FunctionRuntime, *, host: str = "127.0.0.1", port: int = 3001):
        self.runtime = runtime
        self.server = BackgroundServer("Lambda Invoke API", _InvokeRequestHandler, self, host, port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def run_in_background(self, function_id: str, event: Any, request_id: str) -> None:
        # Errors are logged by the runtime; an Event caller never sees them, as in Lambda, whose
        # event queue also waits out throttling instead of refusing the event.
        threading.Thread(
            target=self._run_event,
            args=(function_id, event),
            kwargs={"request_id": request_id},
            name=f"event-{function_id}",
            daemon=True,
        ).start()

    def _run_event(self, function_id: str, event: Any, request_id: str) -> None:
        try:
            self.runtime.invoke_event(function_id, event, request_id=request_id)
        except Throttled:
            logger.warning("%s: event %s dropped, the stack is stopping", function_id, request_id)


def service_error(
    status: int, error_type: str, message: str
) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    return status, {"Type": "User", "Message": message}, [("x-amzn-ErrorType", error_type)]


# The local stack's own control route (not Lambda's API): the AWS faults of local/aws_faults.py.
FAULTS_PATH = "/_local/aws-faults"


class _InvokeRequestHandler(LocalRequestHandler):
    max_body_bytes = SYNC_PAYLOAD_LIMIT

    def _faults_file(self) -> Any:
        api: LambdaInvokeApi = self.server.app
        return api.runtime.settings.faults_file

    def do_GET(self) -> None:
        if urlsplit(self.path).path != FAULTS_PATH or self._faults_file() is None:
            self.send_json(
                *service_error(404, "UnknownOperationException", f"No operation at {self.path}")[:2]
            )
            return
        self.send_json(200, {"rules": json.loads(self._faults_file().read_text())})

    def do_PUT(self) -> None:
        api: LambdaInvokeApi = self.server.app
        if urlsplit(self.path).path != FAULTS_PATH or self._faults_file() is None:
            self._discard_body()
            self.send_json(
                *service_error(404, "UnknownOperationException", f"No operation at {self.path}")[:2]
            )
            return
        try:
            document = json.loads(self.read_body() or b"[]")
            rules = parse_rules(document, functions=set(api.runtime.template.functions))
        except BodyTooLarge:
            self.reply_too_large()
            return
        except (UnicodeDecodeError, json.JSONDecodeError, FaultSpecError) as error:
            message = str(error) if isinstance(error, FaultSpecError) else "the body is not JSON"
            self.send_json(400, {"error": message})
            return
        write_rules(self._faults_file(), rules)
        logger.info("AWS faults now: %s", [rule.as_json() for rule in rules] or "none")
        self.send_json(200, {"rules": [rule.as_json() for rule in rules]})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path != FAULTS_PATH or self._faults_file() is None:
            self.send_json(
                *service_error(404, "UnknownOperationException", f"No operation at {self.path}")[:2]
            )
            return
        write_rules(self._faults_file(), [])
        logger.info("AWS faults cleared")
        self.send_json(200, {"rules": []})

    def reply_too_large(self) -> None:
        self.close_connection = True
        status, body, headers = service_error(
            413,
            "RequestTooLargeException",
            f"Request must be smaller than {self.max_body_bytes} bytes for the InvokeFunction operation",
        )
        self.send_json(status, body, [*headers, ("Connection", "close")])

    def do_POST(self) -> None:
        api: LambdaInvokeApi = self.server.app
        request_id = str(uuid.uuid4())
        common = [("x-amzn-RequestId", request_id)]
        match = _INVOKE_PATH.match(urlsplit(self.path).path)
        if match is None:
            self._discard_body()
            status, body, headers = service_error(
                404, "UnknownOperationException", f"No operation at {self.path}"
            )
            self.send_json(status, body, [*headers, *common])
            return

        requested = unquote(match.group("name"))
        function_id = api.runtime.resolve_function_name(requested)
        if function_id is None:
            self._discard_body()
            arn = (
                requested
                if requested.startswith("arn:")
                else (f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{requested}")
            )
            status, body, headers = service_error(
                404, "ResourceNotFoundException", f"Function not found: {arn}"
            )
            self.send_json(status, body, [*headers, *common])
            return

        try:
            payload = self.read_body()
        except BodyTooLarge:
            self.reply_too_large()
            return
        invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "Event" and len(payload) > ASYNC_PAYLOAD_LIMIT:
            status, body, headers = service_error(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {ASYNC_PAYLOAD_LIMIT} bytes for Event",
            )
            self.send_json(status, body, [*headers, *common])
            return
        try:
            event = json.loads(payload) if payload.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            status, body, headers = service_error(
                400, "InvalidRequestContentException", f"Could not parse request body into json: {error}"
            )
            self.send_json(status, body, [*headers, *common])
            return

        version = [("X-Amz-Executed-Version", "$LATEST")]
        if invocation_type == "DryRun":
            self.send_plain(204, b"", [*common])
            return
        if invocation_type == "Event":
            api.run_in_background(function_id, event, request_id)
            self.send_plain(202, b"", [*common])
            return
        if invocation_type != "RequestResponse":
            status, body, headers = service_error(
                400, "InvalidParameterValueException", f"Unsupported invocation type {invocation_type}"
            )
            self.send_json(status, body, [*headers, *common])
            return

        try:
            result = api.runtime.invoke(function_id, event, request_id=request_id)
        except Throttled as throttled:
            self.send_json(
                429,
                {"Type": "User", "message": "Rate Exceeded.", "Reason": throttled.reason},
                [("x-amzn-ErrorType", "TooManyRequestsException"), ("Retry-After", "1"), *common],
            )
            return
        if result.failed:
            self.send_json(
                200, result.error_payload(), [("X-Amz-Function-Error", "Unhandled"), *version, *common]
            )
            return
        try:
            response_body = json.dumps(result.value).encode()
        except (TypeError, ValueError) as error:
            marshal_error = {
                "errorMessage": f"Unable to marshal response: {error}",
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
                "stackTrace": [],
            }
            self.send_json(200, marshal_error, [("X-Amz-Function-Error", "Unhandled"), *version, *common])
            return
        self.send_plain(200, response_body, [("Content-Type", "application/json"), *version, *common])

    def _discard_body(self) -> None:
        with contextlib.suppress(BodyTooLarge):
            self.read_body()
