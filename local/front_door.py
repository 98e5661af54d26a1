"""The HTTP API front door: template routes -> API Gateway HTTP API payload 2.0 events -> handlers.

It reproduces what a client and a handler notice of API Gateway HTTP API:
- route selection: the most specific route wins (literal segment > `{param}` > `{proxy+}`,
  an exact method > ANY), then `$default`; no match, for any method (TRACE and made-up ones
  included), is 404 `{"message":"Not Found"}`;
- the JWT authorizer runs before the handler: 401 `{"message":"Unauthorized"}` otherwise;
- the payload 2.0 event (lower-cased headers, comma-joined duplicates, cookies, base64 bodies
  for non-text content types, requestContext with the JWT claims as strings);
- the response mapping of payload 2.0, including the "no statusCode" shortcut;
- CORS as the API's CorsConfiguration says: a preflight goes to the route that matches it (an
  explicit OPTIONS route or an ANY one, whose function answers) and is answered by the gateway only
  when none does; for an allowed origin the configured headers replace the function's own;
- the gateway's own errors: 413 over 10 MB, 500 when the function fails, 503 when the
  integration times out, 429 when the function is throttled (at its concurrency limit), and
  JSON (never HTML) for requests too malformed to route.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.functions import FunctionRuntime, Throttled
from local.http_server import BackgroundServer, BodyTooLarge, LocalRequestHandler
from local.jwt_auth import (
    Forbidden,
    JwtSettings,
    Unauthorized,
    check_scopes,
    claims_as_strings,
    token_scopes,
    verify_token,
)
from local.template import LOCAL_ACCOUNT_ID, CorsSpec, HttpRoute, Template

logger = logging.getLogger(__name__)

HTTP_API_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
API_ID = "local"
STAGE = "$default"

NOT_FOUND = {"message": "Not Found"}
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "Forbidden"}
TOO_LARGE = {"message": "Request Entity Too Large"}
INTERNAL_ERROR = {"message": "Internal Server Error"}
SERVICE_UNAVAILABLE = {"message": "Service Unavailable"}
TOO_MANY_REQUESTS = {"message": "Too Many Requests"}

_TEXT_SUBTYPE_HINTS = ("json", "xml", "javascript", "yaml", "graphql", "csv")

_LITERAL, _PARAMETER, _GREEDY = 0, 1, 2
_FRAMING_HEADERS = {"content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class RouteMatch:
    route: HttpRoute
    path_parameters: dict[str, str]


class Router:
    """Route selection of API Gateway HTTP API."""

    def __init__(self, routes: Iterable[HttpRoute]):
        self.routes = [route for route in routes if route.path != "$default"]
        defaults = [route for route in routes if route.path == "$default"]
        self.default_route = defaults[0] if defaults else None

    @staticmethod
    def _segments(path: str) -> list[str]:
        return path.split("/")[1:] if path.startswith("/") else path.split("/")

    @staticmethod
    def _match_path(route_path: str, segments: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
        route_segments = Router._segments(route_path)
        ranks: list[int] = []
        parameters: dict[str, str] = {}
        for index, pattern in enumerate(route_segments):
            if pattern.startswith("{") and pattern.endswith("+}"):
                rest = segments[index:]
                if not rest or rest == [""]:
                    return None
                parameters[pattern[1:-2]] = "/".join(rest)
                ranks.append(_GREEDY)
                return tuple(ranks), parameters
            if index >= len(segments):
                return None
            if pattern.startswith("{") and pattern.endswith("}"):
                if segments[index] == "":
                    return None
                parameters[pattern[1:-1]] = segments[index]
                ranks.append(_PARAMETER)
            elif pattern == segments[index]:
                ranks.append(_LITERAL)
            else:
                return None
        if len(route_segments) != len(segments):
            return None
        return tuple(ranks), parameters

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        segments = [unquote(segment) for segment in self._segments(raw_path)]
        candidates = []
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            matched = self._match_path(route.path, segments)
            if matched is None:
                continue
            ranks, parameters = matched
            candidates.append(((ranks, route.method == "ANY"), route, parameters))
        if candidates:
            _, route, parameters = min(candidates, key=lambda candidate: candidate[0])
            return RouteMatch(route, parameters)
        if self.default_route is not None:
            return RouteMatch(self.default_route, {})
        return None


@dataclass
class IncomingRequest:
    method: str
    target: str
    header_items: list[tuple[str, str]]
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.header_items if key.lower() == name.lower()]
        return ",".join(values) if values else None


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
        return cls(status, [("Content-Type", "application/json"), *headers], json.dumps(payload).encode())


def is_text_content(content_type: str | None) -> bool:
    """HTTP API passes these bodies as text; everything else (forms included) is base64."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith("text/"):
        return True
    return any(hint in media_type for hint in _TEXT_SUBTYPE_HINTS)


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def build_event(
    request: IncomingRequest,
    match: RouteMatch,
    *,
    claims: dict[str, Any] | None,
    request_id: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for `request`."""
    now = now or datetime.now(UTC)
    split = urlsplit(request.target)
    raw_path, raw_query = split.path or "/", split.query

    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.header_items:
        name = name.lower()
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    host = headers.get("host", "127.0.0.1")
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-port", host.rsplit(":", 1)[1] if ":" in host else "80")
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-amzn-trace-id", _trace_id())

    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    route = match.route
    request_context: dict[str, Any] = {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": host.split(":", 1)[0].split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": STAGE,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if claims is not None:
        scopes = token_scopes(claims) if route.authorization_scopes else None
        request_context["authorizer"] = {"jwt": {"claims": claims_as_strings(claims), "scopes": scopes}}

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    event["requestContext"] = request_context

    is_base64 = False
    if request.body:
        text = None
        if is_text_content(headers.get("content-type")):
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            is_base64 = True
        else:
            event["body"] = text
    event["isBase64Encoded"] = is_base64
    return event


class InvalidLambdaResponse(Exception):
    """The handler's return value cannot be turned into an HTTP response."""


def response_from_result(result: Any) -> HttpResponse:
    """Map a handler's return value as HTTP API does for payload format 2.0."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: the whole return value is a JSON body with status 200.
        try:
            body = json.dumps(result)
        except (TypeError, ValueError) as error:
            raise InvalidLambdaResponse(f"return value is not JSON serializable: {error}") from error
        return HttpResponse(200, [("Content-Type", "application/json")], body.encode())

    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError) as error:
        raise InvalidLambdaResponse(f"statusCode {result['statusCode']!r} is not a number") from error
    if not 100 <= status <= 599:
        raise InvalidLambdaResponse(f"statusCode {status} is not an HTTP status")

    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), _header_value(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), _header_value(value)) for value in values)
    # The gateway frames the response itself.
    headers = [(name, value) for name, value in headers if name.lower() not in _FRAMING_HEADERS]
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])

    body = result.get("body")
    if body is None:
        payload = b""
    elif result.get("isBase64Encoded") in (True, "true"):
        try:
            payload = base64.b64decode(body, validate=True)
        except (binascii.Error, TypeError) as error:
            raise InvalidLambdaResponse("isBase64Encoded is true but body is not base64") from error
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    else:
        payload = json.dumps(body).encode("utf-8")
    return HttpResponse(status, headers, payload)


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FrontDoor:
    """Serves the template's HttpApi routes on host:port."""

    def __init__(
        self,
        template: Template,
        runtime: FunctionRuntime,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        jwt_settings: JwtSettings | None = None,
    ):
        self.template = template
        self.runtime = runtime
        self.router = Router(template.routes)
        self.jwt_settings = jwt_settings or JwtSettings.from_env()
        self.server = BackgroundServer("HTTP API front door", _FrontDoorRequestHandler, self, host, port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def handle(self, request: IncomingRequest) -> HttpResponse:
        request_id = base64.b64encode(uuid.uuid4().bytes[:10]).decode().rstrip("=")
        cors = self.template.cors
        origin = request.header("origin")
        preflight = request.method == "OPTIONS" and bool(request.header("access-control-request-method"))
        path = urlsplit(request.target).path or "/"
        # API Gateway's "Configure CORS for HTTP APIs": "If you configure CORS for an API, API
        # Gateway automatically sends a response to preflight OPTIONS requests, even if there
        # isn't an OPTIONS route configured for your API. For a CORS request, API Gateway adds the
        # configured CORS headers to the response from an integration." and "API Gateway ignores
        # CORS headers returned from your backend integration." So a preflight that a route
        # matches (OPTIONS, ANY, $default) goes through that route, its authorizer and function;
        # only one no route matches is the gateway's own 204.
        if cors is not None and preflight and self.router.match("OPTIONS", path) is None:
            response = HttpResponse(204, _preflight_headers(cors, origin))
        else:
            response = self._handle(request, request_id)
            if cors is not None and origin and cors.allows(origin):
                response.headers = [
                    (name, value)
                    for name, value in response.headers
                    if not name.lower().startswith("access-control-")
                ]
                added = _preflight_headers(cors, origin) if preflight else _cors_headers(cors, origin)
                response.headers.extend(added)
        response.headers.append(("Apigw-Requestid", request_id))
        return response

    def _handle(self, request: IncomingRequest, request_id: str) -> HttpResponse:
        path = urlsplit(request.target).path or "/"
        match = self.router.match(request.method, path)
        if match is None:
            return HttpResponse.json(404, NOT_FOUND)
        route = match.route

        claims = None
        if route.auth_required:
            try:
                claims = verify_token(request.header(route.identity_header), self.jwt_settings)
                check_scopes(claims, route.authorization_scopes)
            except Unauthorized as error:
                logger.info("%s %s -> 401 (%s)", request.method, path, error)
                return HttpResponse.json(401, UNAUTHORIZED, [("WWW-Authenticate", "Bearer")])
            except Forbidden as error:
                logger.info("%s %s -> 403 (%s)", request.method, path, error)
                return HttpResponse.json(403, FORBIDDEN)

        event = build_event(request, match, claims=claims, request_id=request_id)
        function = self.template.functions.get(route.function_id)
        if function is None:
            logger.error(
                "route %s points at %s, which is not served locally", route.route_key, route.function_id
            )
            return HttpResponse.json(500, INTERNAL_ERROR)

        integration_timeout_s = route.timeout_ms / 1000
        try:
            result = self.runtime.invoke(
                route.function_id,
                event,
                wait_s=integration_timeout_s,
                trace_id=event["headers"].get("x-amzn-trace-id"),
            )
        except Throttled as throttled:
            logger.warning("%s -> 429 (%s)", route.route_key, throttled)
            return HttpResponse.json(429, TOO_MANY_REQUESTS)
        if result.timed_out:
            if integration_timeout_s < function.timeout_s:
                return HttpResponse.json(503, SERVICE_UNAVAILABLE)
            return HttpResponse.json(500, INTERNAL_ERROR)
        if result.error is not None:
            # The traceback is already in the stack's log; the client sees only the gateway's text.
            return HttpResponse.json(500, INTERNAL_ERROR)
        try:
            return response_from_result(result.value)
        except InvalidLambdaResponse as error:
            logger.error("%s returned an invalid response: %s", route.function_id, error)
            return HttpResponse.json(500, INTERNAL_ERROR)


def _cors_headers(cors: CorsSpec, origin: str) -> list[tuple[str, str]]:
    headers = [("Access-Control-Allow-Origin", "*" if "*" in cors.allow_origins else origin)]
    if cors.allow_credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if cors.expose_headers:
        headers.append(("Access-Control-Expose-Headers", ",".join(cors.expose_headers)))
    return headers


def _preflight_headers(cors: CorsSpec, origin: str | None) -> list[tuple[str, str]]:
    """A preflight from an origin the configuration does not allow gets no CORS headers."""
    if not origin or not cors.allows(origin):
        return []
    headers = _cors_headers(cors, origin)
    if cors.allow_methods:
        headers.append(("Access-Control-Allow-Methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        headers.append(("Access-Control-Allow-Headers", ",".join(cors.allow_headers)))
    if cors.max_age is not None:
        headers.append(("Access-Control-Max-Age", str(cors.max_age)))
    return headers


class _FrontDoorRequestHandler(LocalRequestHandler):
    max_body_bytes = HTTP_API_MAX_PAYLOAD_BYTES

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method without a do_<METHOD> with an HTML 501; the gateway routes
        # every method (an ANY route, else its JSON 404), so every method goes to _dispatch.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line or chunk, an over-long or
        over-many header) in the gateway's JSON shape, never its HTML page."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        logger.info("request refused before routing -> %s (%s)", code, message or phrase)
        # http.server treats an unparsable request line as HTTP/0.9 and would answer with a bare
        # body; the gateway always answers with a status line.
        if not self.request_version.startswith("HTTP/1."):
            self.request_version = self.protocol_version
        self.close_connection = True
        self.send_json(code, {"message": phrase}, [("Connection", "close")])

    def reply_too_large(self) -> None:
        self.close_connection = True
        self.send_json(413, TOO_LARGE, [("Connection", "close")])

    def _dispatch(self) -> None:
        started = time.monotonic()
        # Logged without the query: a QPay callback URL carries its HMAC token there.
        logged_path = urlsplit(self.path).path
        try:
            body = self.read_body()
        except BodyTooLarge as error:
            logger.info("%s %s -> 413 (%s)", self.command, logged_path, error)
            self.reply_too_large()
            return
        except ValueError:
            # A chunk size that is not hexadecimal: the framing is broken, so is the connection.
            self.send_error(400, "malformed chunked body")
            return
        request = IncomingRequest(
            method=self.command,
            target=self.path,
            header_items=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        front_door: FrontDoor = self.server.app
        try:
            response = front_door.handle(request)
        except Exception:
            logger.exception("front door failed on %s %s", self.command, logged_path)
            response = HttpResponse.json(500, INTERNAL_ERROR)
        self.send_plain(response.status, response.body, response.headers)
        logger.info(
            "%s %s -> %s (%.0f ms)",
            self.command,
            logged_path,
            response.status,
            (time.monotonic() - started) * 1000,
        )
